"""Security: secrets (the LLM API key, the Redis password in the URL) never leak.

A crawl runs against a password-protected redis-server with an API key for the mock LLM; then
every output a user or an operator can see is collected (each command's stdout and stderr, the
workers' logs, both /metrics pages, `status --json`, `top --once`, the heartbeats in Redis, the
exported files) together with the failures (wrong password, wrong key, unreachable Redis,
a bad setting) and grepped for both secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisServer, free_port
from tests.chaos import Fleet, wait_for
from tests.processes import MockProcess, SiteProcess, cli, scrape_metrics

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(180)]

PASSWORD = "pw-Sup3rSecret-redis-71"
API_KEY = "sk-live-SECRETKEY-0123456789abcdef"


def test_no_secret_in_any_output(site_factory: Callable[..., SiteProcess], tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", None, "--requirepass", PASSWORD)
    redis.start()
    mock = MockProcess("--api-key", API_KEY, "--latency", "0.02")
    site = site_factory("--addresses", "127.0.0.1", "--pages", "30", "--page-delay", "0.05")
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"
    store = ["--redis", url, "--crawl", "secrets"]
    env = {
        "OPENAI_API_KEY": API_KEY,
        "DISTCRAWL_LLM__BASE_URL": mock.base_url,
        "DISTCRAWL_LLM__MODEL": "mock-model",
        "DISTCRAWL_LOG_LEVEL": "DEBUG",
    }
    seen: list[str] = []

    def run(*args: str, **extra: str) -> int:
        proc = cli(*args, env={**env, **extra})
        seen.extend([proc.stdout, proc.stderr])
        return proc.returncode

    try:
        assert run("produce", *store, f"http://{site.hosts[0]}/", "--rate", "5") == 0
        ports = {"crawl": free_port(), "summarize": free_port()}
        fleet = Fleet(
            tmp_path,
            store,
            env=env,
            args={role: ["--metrics-port", str(port)] for role, port in ports.items()},
        )
        fleet.args["crawl"] += ["--allow-private"]
        try:
            fleet.start("crawl")
            fleet.start("summarize")
            wait_for("both /metrics pages", lambda: all(_try_scrape(p) for p in ports.values()), 30)
            seen.extend(scrape_metrics(p) for p in ports.values())
            seen.append(_redis_dump(url))  # heartbeats, spec, records: all of Redis
            assert run("status", *store, "--json") == 0
            assert run("top", *store, "--once") == 0
            fleet.wait(timeout=120)
        finally:
            fleet.kill_all()
        seen.append(fleet.logs())
        assert run("export", *store, "--out", str(tmp_path / "out")) == 0
        seen.extend(p.read_text() for p in (tmp_path / "out").iterdir())

        # Failures print the URL or the setting they are about: redacted.
        wrong = f"redis://:{PASSWORD}x@127.0.0.1:{redis.port}/0"
        assert run("status", "--redis", wrong) == 2
        closed = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
        assert run("status", "--redis", closed) == 3
        assert run("crawl", "--redis", url, "--concurrency", "-5") == 2
        second = ["--redis", url, "--crawl", "secrets-2"]  # docs waiting, and a revoked key
        assert run("produce", *second, f"http://{site.hosts[0]}/p/1.html", "--max-depth", "0") == 0
        assert run("crawl", *second, "--drain", "--allow-private") == 0
        # (another model: the first crawl's answer for this page, in the summary cache that the
        # crawls on a Redis share, must not spare the call)
        revoked = {"OPENAI_API_KEY": API_KEY + "-revoked", "DISTCRAWL_LLM__MODEL": "mock-model-2"}
        assert run("summarize", *second, "--drain", **revoked) == 2
    finally:
        mock.stop()
        redis.stop()

    text = "\n".join(seen)
    assert "HTTP 401" in text or "credentials" in text  # the failures did happen...
    assert "WRONGPASS" in text or "invalid" in text.lower()
    leaks = [s for s in (PASSWORD, API_KEY[3:]) if s in text]
    assert not leaks, [text[max(0, text.find(s) - 200) : text.find(s) + 50] for s in leaks]


def _try_scrape(port: int) -> bool:
    try:
        return bool(scrape_metrics(port))
    except OSError:
        return False


def _redis_dump(url: str) -> str:
    import redis as redis_py

    client: redis_py.Redis = redis_py.Redis.from_url(url, decode_responses=False)
    try:
        out = []
        for key in client.scan_iter(count=1000):
            raw_kind = client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            readers: dict[str, Callable[[bytes], object]] = {
                "string": client.get,
                "hash": client.hgetall,
                "set": client.smembers,
                "list": lambda k: client.lrange(k, 0, -1),
                "zset": lambda k: client.zrange(k, 0, -1),
            }
            read: Callable[[bytes], object] = readers.get(kind) or _nothing
            out.append(f"{key!r} {read(key)!r}")
        return "\n".join(out)
    finally:
        client.close()


def _nothing(_: bytes) -> object:
    return b""
