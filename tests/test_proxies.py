"""The proxy pool against real proxies: proxy.py (HTTP) and pproxy (SOCKS5) on loopback ports,
the test site behind them, crawl workers as processes.

Behaviour is read from the logs: each proxy's own log (what it carried), the site's access log
(what it saw, when), the workers' JSON logs (events) and the exported page records.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from redis.asyncio import Redis

from common.errors import ConfigError
from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner
from crawler.classify import ProxyFailed
from crawler.proxies import crawl_pool, parse_proxy_url
from crawler.proxypool import ProxyHealth, ProxyPool, Route, preference
from distcrawl.redis_server import RedisServer, free_port
from tests.chaos import Fleet, check_invariants, wait_for
from tests.processes import SiteProcess, assert_no_traceback, cli, log_events, produce
from tests.proxies import HttpProxy, SocksProxy

pytestmark = [pytest.mark.timeout(240)]

JSON_LOGS = {"DISTCRAWL_LOG_FORMAT": "json", "DISTCRAWL_WORKER__HEARTBEAT_S": "1"}
WORKER_FLAGS = ["--allow-private", "--allow-private-proxy", "--concurrency", "8"]
HTTP_PASSWORD = "s3cret-http-pw"
SOCKS_PASSWORD = "s3cret-socks-pw"


@pytest.fixture
def proxies() -> Iterator[list[HttpProxy | SocksProxy]]:
    """Started proxies, stopped after the test (append to the list to have them stopped)."""
    started: list[HttpProxy | SocksProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def hosts_one_per_proxy(names: list[str], count: int = 3) -> list[str]:
    """Loopback addresses that prefer a different proxy each (the pool's own rendezvous
    ranking), so that every proxy carries a site."""
    chosen: dict[str, str] = {}
    for i in range(1, 200):
        host = f"127.0.0.{i}"
        best = max(names, key=lambda n: preference(n, host))
        chosen.setdefault(best, host)
        if len(chosen) == count:
            return [chosen[n] for n in names[:count]]
    raise AssertionError("no addresses spread over the proxies")


def expected_pages(site: SiteProcess, pages: int) -> set[str]:
    return set(site.roots) | {f"http://{h}/p/{i}.html" for h in site.hosts for i in range(pages)}


def busiest(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max(sum(1 for t in stamps[i:] if t < s + window) for i, s in enumerate(stamps))


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1:21", "use http://, https:// or socks5://"),
        ("127.0.0.1:3128", "use http://, https:// or socks5://"),
        ("http://u:pw-in-clear@127.0.0.1", "give the port"),
        ("http://u:pw-in-clear@127.0.0.1:99999", "Port out of range"),
        ("socks5://u:pw-in-clear@:1080", "no host"),
        ("http://127.0.0.1:3128/path", "no path or query"),
        ("http://127.0.0.1:3128#bad name!", "a #name is"),
    ],
)
def test_a_bad_proxy_url_is_one_error_line(tmp_path: Path, url: str, message: str) -> None:
    proxy_file = tmp_path / "proxies.txt"
    proxy_file.write_text(f"# the pool\n\n{url}\n")
    run = cli("produce", "--redis", "redis://127.0.0.1:1/0", "http://a.test/", "--proxy-file",
              str(proxy_file))  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"distcrawl: error: invalid proxy {proxy_file}:3 ("), lines
    assert message in lines[0]
    assert "pw-in-clear" not in run.stderr
    assert_no_traceback(run.stderr)


def test_a_password_on_the_command_line_is_refused() -> None:
    run = cli("produce", "--redis", "redis://127.0.0.1:1/0", "http://a.test/",
              "--proxy", "http://user:pw-in-clear@127.0.0.1:3128")  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "distcrawl: error: --proxy #1 carries a password: put the URL in --proxy-file F or "
        "DISTCRAWL_PROXY__URLS (a command line is visible to every user of the host)"
    ]


def test_a_worker_brings_the_passwords_of_the_crawls_pool() -> None:
    spec = ["http://u:***@10.0.0.1:3128#eu", "socks5://10.0.0.2:1080"]
    mine = [parse_proxy_url("http://u:pw@10.0.0.1:3128#eu", 0)]
    pool = crawl_pool(spec, mine)
    assert [(p.name, p.url) for p in pool] == [
        ("eu", "http://u:pw@10.0.0.1:3128"),
        ("p1", "socks5://10.0.0.2:1080"),
    ]
    assert "pw" not in repr(pool)
    assert all("pw" not in p.redacted for p in pool)
    with pytest.raises(ConfigError, match=r"proxy eu \(http://u:\*\*\*@10.0.0.1:3128#eu\) of "):
        crawl_pool(spec, [])
    with pytest.raises(ConfigError, match="is not in the crawl's proxy pool"):
        crawl_pool(spec[1:], mine)


# -- shared health --------------------------------------------------------------------------


async def test_health_backs_a_proxy_off_once_per_outage(
    server_store: Redis, crawl_keys: CrawlKeys
) -> None:
    now = [1_000_000]
    health = ProxyHealth(CrawlScripts(ScriptRunner(server_store), crawl_keys, lambda: now[0]))
    fails, wait_s, counted = await health.fail("eu")
    assert (fails, counted) == (1, True)
    assert 0.5 <= wait_s <= 2.0  # the crawler's curve after one failure: base 2 s, half jitter
    # Other fetches failing during the back-off are the same outage: not counted again.
    assert (await health.fail("eu"))[::2] == (1, False)
    now[0] += int(wait_s * 1000) + 1
    fails, wait_s, counted = await health.fail("eu")  # failed again once it was let back in
    assert (fails, counted) == (2, True)
    assert 1.0 <= wait_s <= 4.0
    assert await health.read() == {"eu": (2, wait_s)}
    assert await health.report_down() is True
    assert await health.report_down() is False  # the pool's death is reported once
    await health.ok("eu")  # a success forgets the failures and the report
    assert await health.read() == {}
    assert await health.report_down() is True


async def test_statuses_to_rotate_on(server_store: Redis, crawl_keys: CrawlKeys) -> None:
    async with aiohttp.ClientSession() as session:
        route = Route(parse_proxy_url("http://10.0.0.1:3128#eu", 0), session, None)
        health = ProxyHealth(CrawlScripts(ScriptRunner(server_store), crawl_keys))
        pool = ProxyPool([route], health, rotate_on=frozenset({403}))
        pool.status_failure(route, 404, None)  # not the proxy's doing
        with pytest.raises(ProxyFailed) as caught:
            pool.status_failure(route, 403, None)
        assert (caught.value.proxy, caught.value.unsent, caught.value.auth) == ("eu", False, False)
        with pytest.raises(ProxyFailed) as caught:
            pool.status_failure(route, 407, None)
        assert (caught.value.unsent, caught.value.auth) == (True, True)
        await pool.failed(route, caught.value)  # this worker's only proxy refused it
        assert pool.fatal is not None
        assert pool.usable() == []


# -- crawling through the pool --------------------------------------------------------------


@pytest.mark.slow
def test_three_workers_three_proxies(
    redis_server: RedisServer,
    site_factory: Callable[..., SiteProcess],
    proxies: list[HttpProxy | SocksProxy],
    tmp_path: Path,
) -> None:
    """All pages fetched through the pool; each proxy's log shows the requests it carried, each
    site went through one proxy only, the site saw the configured rate, no password leaked."""
    names = ["plain", "authed", "socks"]
    pages, rate, burst = 30, 6.0, 2
    site = site_factory("--addresses", ",".join(hosts_one_per_proxy(names)), "--pages", str(pages))
    plain = HttpProxy(tmp_path / "plain.log")
    authed = HttpProxy(tmp_path / "authed.log", auth=f"crawler:{HTTP_PASSWORD}")
    socks = SocksProxy(tmp_path / "socks.log", auth=f"sockuser:{SOCKS_PASSWORD}")
    proxies += [plain, authed, socks]
    proxy_file = tmp_path / "proxies.txt"
    proxy_file.write_text(
        f"http://127.0.0.1:{plain.port}#plain\n"
        f"http://crawler:{HTTP_PASSWORD}@127.0.0.1:{authed.port}#authed\n"
        f"socks5://sockuser:{SOCKS_PASSWORD}@127.0.0.1:{socks.port}#socks\n"
    )
    crawl = f"proxies-{tmp_path.name[-8:]}"
    warc_dir = tmp_path / "warc"
    store = ["--redis", redis_server.url, "--crawl", crawl]
    pool = ("--no-summarize", "--proxy-file", str(proxy_file))
    produce(store, site.roots, *pool, rate=rate, burst=burst, inflight=4)
    fleet = Fleet(
        tmp_path,
        store,
        env=JSON_LOGS,
        args={"crawl": [*WORKER_FLAGS, "--proxy-file", str(proxy_file), "--warc", str(warc_dir)]},
    )
    try:
        for _ in range(3):
            fleet.start("crawl")
        fleet.wait(timeout=150)
    finally:
        fleet.kill_all()
    assert fleet.exit_codes() == [0, 0, 0], fleet.logs()[-3000:]
    expected = expected_pages(site, pages)
    figures = check_invariants(
        "proxies: 3 workers, 3 proxies", store, tmp_path / "export", expected=expected,
        logs=fleet.logs(),
    )  # fmt: skip
    assert figures.done == len(expected), figures

    seen = site.requests()
    # Each site went through exactly one proxy, and each proxy carried one site.
    assert [p.hosts() for p in (plain, authed, socks)] == [{h.split(":")[0]} for h in site.hosts]
    # The HTTP proxies' logs list every request of their site, as the site logged them.
    for proxy, host in ((plain, site.hosts[0]), (authed, site.hosts[1])):
        at_site = {f"http://{r['host']}{r['path']}" for r in seen if r["host"] == host}
        assert set(proxy.requests()) == at_site
        assert proxy.requests().total() == sum(1 for r in seen if r["host"] == host)
    assert socks.connections()[site.hosts[2].split(":")[0]] >= 1
    # Politeness per site across 3 workers and 3 proxies: the token bucket's bound holds at the
    # site (+1: robots.txt is fetched under its first page's token; +1: requests claimed apart
    # may arrive closer together). Three times the rate (a bucket per proxy or per worker)
    # would put some 27 requests in one second here.
    for host in site.hosts:
        stamps = [r["t"] for r in seen if r["host"] == host]
        assert len(stamps) == pages + 2  # robots.txt, /, the pages: each once
        for window in (1.0, 3.0):
            assert busiest(stamps, window) <= burst + rate * window + 2, (host, window)
    # No password anywhere: the spec in Redis, the health hash, logs, status, exported records.
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = CrawlKeys(crawl)
    spec = client.hget(keys.spec, "json")
    assert spec is not None
    assert f"http://crawler:***@127.0.0.1:{authed.port}#authed" in spec
    status = cli("status", *store, "--json").stdout
    exported = (tmp_path / "export" / "pages.jsonl").read_text()
    # WARC request records keep the request's headers, but not the proxy's credentials
    warc = b"".join(gzip.decompress(f.read_bytes()) for f in warc_dir.glob("*.warc.gz"))
    assert warc.count(b"WARC-Type: request") >= len(expected)
    assert b"proxy-authorization" not in warc.lower()
    basic = base64.b64encode(f"crawler:{HTTP_PASSWORD}".encode())
    assert basic not in warc
    for text in (spec, json.dumps(client.hgetall(keys.proxies)), fleet.logs(), status, exported):
        assert HTTP_PASSWORD not in text
        assert SOCKS_PASSWORD not in text
    client.close()


@pytest.mark.slow
def test_a_proxy_killed_mid_crawl_is_rotated_away_from(
    redis_server: RedisServer,
    site_factory: Callable[..., SiteProcess],
    proxies: list[HttpProxy | SocksProxy],
    tmp_path: Path,
) -> None:
    names = ["first", "second", "third"]
    pages = 40
    site = site_factory("--addresses", ",".join(hosts_one_per_proxy(names)), "--pages", str(pages))
    http = [HttpProxy(tmp_path / f"{name}.log") for name in names]
    proxies += http
    proxy_file = tmp_path / "proxies.txt"
    proxy_file.write_text(
        "".join(f"http://127.0.0.1:{p.port}#{n}\n" for p, n in zip(http, names, strict=True))
    )
    store = ["--redis", redis_server.url, "--crawl", f"proxy-kill-{tmp_path.name[-8:]}"]
    produce(store, site.roots, "--no-summarize", "--proxy-file", str(proxy_file), rate=8, burst=2)
    fleet = Fleet(
        tmp_path,
        store,
        env=JSON_LOGS,
        args={"crawl": [*WORKER_FLAGS, "--proxy-file", str(proxy_file)]},
    )
    victim, host = http[0], site.hosts[0]
    try:
        fleet.start("crawl")
        fleet.start("crawl")
        wait_for(
            "the first site half crawled",
            lambda: sum(1 for r in site.requests() if r["host"] == host) >= pages // 3,
            timeout=60,
            interval=0.05,
        )
        victim.kill()
        killed_at = time.time()
        fleet.wait(timeout=150)
    finally:
        fleet.kill_all()
    assert fleet.exit_codes() == [0, 0], fleet.logs()[-3000:]
    expected = expected_pages(site, pages)
    figures = check_invariants(
        "proxies: one killed mid-crawl", store, tmp_path / "export", expected=expected,
        logs=fleet.logs(),
    )  # fmt: skip
    assert figures.done == len(expected), figures  # nothing lost, every page exported once
    # The rest of the first site went through another proxy, which its log shows.
    after = {f"http://{r['host']}{r['path']}" for r in site.requests()
             if r["host"] == host and r["t"] > killed_at}  # fmt: skip
    assert after
    carried = set(http[1].requests()) | set(http[2].requests())
    assert after <= carried
    assert not set(victim.requests()) & after
    failed = log_events(fleet.logs(), "proxy_failed")
    assert {e["proxy"] for e in failed} == {"first"}, failed


@pytest.mark.slow
def test_a_dead_pool_pauses_the_crawl_and_resumes(
    redis_server: RedisServer,
    site_factory: Callable[..., SiteProcess],
    proxies: list[HttpProxy | SocksProxy],
    tmp_path: Path,
) -> None:
    """The only proxy is down: reported once crawl-wide, workers pause (nothing fails), and
    the crawl finishes once the proxy answers."""
    pages = 10
    site = site_factory("--pages", str(pages))
    port = free_port()  # nothing listens there yet
    store = ["--redis", redis_server.url, "--crawl", f"proxy-dead-{tmp_path.name[-8:]}"]
    produce(
        store, site.roots, "--no-summarize", "--proxy", f"http://127.0.0.1:{port}#only", rate=20
    )
    fleet = Fleet(tmp_path, store, env=JSON_LOGS, args={"crawl": WORKER_FLAGS})
    try:
        fleet.start("crawl")
        fleet.start("crawl")
        wait_for(
            "both workers paused",
            lambda: len({e["worker"] for e in _paused(fleet.logs())}) == 2,
            timeout=60,
        )
        assert site.requests() == []
        proxies.append(HttpProxy(tmp_path / "late.log", port=port))
        fleet.wait(timeout=120)
    finally:
        fleet.kill_all()
    assert fleet.exit_codes() == [0, 0], fleet.logs()[-3000:]
    logs = fleet.logs()
    figures = check_invariants(
        "proxies: dead pool", store, tmp_path / "export", expected=expected_pages(site, pages),
        logs=logs,
    )  # fmt: skip
    assert (figures.done, figures.failed) == (pages + 1, 0), figures
    down = log_events(logs, "proxy_pool_down")
    assert [e["level"] for e in down].count("warning") == 1, down  # reported once, crawl-wide
    assert len(log_events(logs, "worker_resumed")) >= 2


def _paused(logs: str) -> list[dict[str, Any]]:
    return [e for e in log_events(logs, "worker_paused") if e["reason"] == "proxies_down"]


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_wrong_proxy_credentials_are_one_error_line(
    redis_server: RedisServer,
    site_factory: Callable[..., SiteProcess],
    proxies: list[HttpProxy | SocksProxy],
    tmp_path: Path,
    kind: str,
) -> None:
    site = site_factory("--pages", "3")
    if kind == "http":
        proxy: HttpProxy | SocksProxy = HttpProxy(tmp_path / "p.log", auth="crawler:right-pw")
    else:
        proxy = SocksProxy(tmp_path / "p.log", auth="crawler:right-pw")
    proxies.append(proxy)
    proxy_file = tmp_path / "proxies.txt"
    proxy_file.write_text(f"{kind}://crawler:wrong-pw@127.0.0.1:{proxy.port}\n")
    store = ["--redis", redis_server.url, "--crawl", f"proxy-auth-{kind}-{tmp_path.name[-6:]}"]
    produce(store, site.roots, "--no-summarize", "--proxy-file", str(proxy_file))
    run = cli("crawl", *store, "--drain", *WORKER_FLAGS, "--proxy-file", str(proxy_file),
              "--log-level", "ERROR", timeout=60)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"distcrawl: error: proxy p0 ({kind}://crawler:***@127.0.0.1:{proxy.port}) refused the "
        "credentials: check the proxy URLs in --proxy-file or DISTCRAWL_PROXY__URLS"
    ]
    assert site.requests() == []
    status = json.loads(cli("status", *store, "--json").stdout)
    assert (status["pending"], status["failed"]) == (1, 0), status  # the seed waits, unharmed


def test_a_proxy_on_a_private_address_needs_the_flag(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = ["--redis", redis_server.url, "--crawl", f"proxy-private-{tmp_path.name[-6:]}"]
    produce(store, ["http://a.test/"], "--no-summarize", "--proxy", "http://127.0.0.1:3128")
    run = cli("crawl", *store, "--drain", "--proxy", "http://127.0.0.1:3128", timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "distcrawl: error: proxy p0 (http://127.0.0.1:3128) is on a non-public address "
        "(127.0.0.1): give --allow-private-proxy to use it"
    )
