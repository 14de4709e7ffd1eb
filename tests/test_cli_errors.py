"""Bad input gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from distcrawl.redis_server import RedisServer, free_port
from tests.processes import cli


def _one_line_error(proc_stderr: str) -> str:
    lines = [line for line in proc_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc_stderr
    assert "Traceback" not in proc_stderr
    assert lines[0].startswith("distcrawl: error: ")
    return lines[0]


def test_unreachable_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = cli("status", "--redis", url, "--crawl", "x")
    assert proc.returncode == 3
    assert "Redis unreachable" in _one_line_error(proc.stderr)


def test_redis_password_is_not_echoed() -> None:
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    proc = cli("status", "--redis", url)
    assert proc.returncode == 3
    line = _one_line_error(proc.stderr)
    assert "hunter2" not in line
    assert "***" in line


@pytest.mark.parametrize(
    "seed",
    ["ht!tp://example.com", "mailto:someone@example.com", "http://", "http://exa mple.com:99999/"],
)
def test_malformed_seed(seed: str) -> None:
    proc = cli("run", seed, "--no-progress")
    assert proc.returncode == 2
    assert "invalid seed #1" in _one_line_error(proc.stderr)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["run", "--no-such-flag", "http://example.com/"],
            "unrecognized arguments: --no-such-flag",
        ),
        (["run", "http://example.com/", "--rate", "-1"], "rate must be > 0"),
        (["run", "http://example.com/", "--burst", "0"], "burst must be >= 1"),
        (["run", "http://example.com/", "--concurrency", "0"], "crawler.concurrency"),
        (["run", "http://example.com/", "--rate", "fast"], "invalid float"),
        (["crawl"], "needs --redis"),
        (["run", "http://example.com/", "--warc-gzip-level", "12"], "warc.gzip_level"),
        (["status", "--redis", "http://localhost:6379"], "invalid Redis URL"),
        (["status", "--redis", "redis://127.0.0.1:1", "--crawl", "bad name"], "invalid crawl name"),
    ],
    ids=[
        "unknown-flag",
        "negative-rate",
        "zero-burst",
        "zero-concurrency",
        "rate-not-a-number",
        "crawl-without-redis",
        "warc-gzip-level",
        "redis-url-scheme",
        "crawl-name",
    ],
)
def test_a_bad_invocation_is_one_error_line(args: list[str], needle: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert needle in _one_line_error(proc.stderr)


def test_bad_environment_value() -> None:
    proc = cli("run", "http://example.com/", env={"DISTCRAWL_FETCH__MAX_BODY_BYTES": "tiny"})
    assert proc.returncode == 2
    assert "fetch.max_body_bytes" in _one_line_error(proc.stderr) or "fetch" in proc.stderr


def test_wrong_redis_password_is_a_config_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth", None, "--requirepass", "right-password")
    server.start()
    try:
        url = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
        proc = cli("status", "--redis", url)
    finally:
        server.stop()
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert "refused the credentials" in line
    assert "wrong-password" not in proc.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"DISTCRAWL_LLM__BASE_URL": "nonsense"},
        {"DISTCRAWL_LLM__BASE_URL": "ftp://llm.example/v1"},
        {"OPENAI_BASE_URL": "http://"},
    ],
    ids=["no-scheme", "ftp", "openai-env-no-host"],
)
def test_a_bad_llm_base_url_stops_before_any_work(env: dict[str, str], tmp_path: Path) -> None:
    proc = cli(
        "run",
        f"http://127.0.0.1:{free_port()}/",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        env={"OPENAI_API_KEY": "sk-test-key", **env},
    )
    assert proc.returncode == 2
    assert "is not an http(s) URL" in _one_line_error(proc.stderr)


def test_readers_of_a_crawl_that_does_not_exist_name_the_ones_that_do(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A typo in --crawl: status, top and export answer one line naming the crawls there are
    (a sharded crawl's shard copies are not crawls), and exit 2."""
    store = ["--redis", redis_server.url]
    suffix = tmp_path.name[-6:]
    for name, shards in ((f"news{suffix}", "1"), (f"blogs{suffix}", "4")):
        made = cli("produce", *store, "--crawl", name, "http://a.test/", "--shards", shards)
        assert made.returncode == 0, made.stderr
    for command in (["status"], ["top", "--once"], ["export", "--out", str(tmp_path)]):
        proc = cli(*command, *store, "--crawl", f"nwes{suffix}")
        assert proc.returncode == 2, proc.stderr
        line = _one_line_error(proc.stderr)
        assert f"no crawl named 'nwes{suffix}'" in line
        assert f"news{suffix}" in line
        assert f"blogs{suffix}" in line
        assert f"blogs{suffix}:0" not in line
    assert not (tmp_path / "pages.jsonl").exists()
