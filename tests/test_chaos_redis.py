"""Chaos: Redis killed and restarted mid-crawl, and Redis gone for 30 s.

The test's own redis-server runs with AOF (`appendfsync everysec`). Killed with SIGKILL it loses
up to a second of writes: a settle or a commit in that second is undone, so its URL is back in
flight under a lease nobody holds, is reaped and crawled again. It is re-crawled, never dropped
(commits are one script: seen set, admissions, page record and the settle go together).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisServer, free_port
from tests.chaos import Fleet, check_invariants, wait_for
from tests.processes import SiteProcess, cli, produce

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]

PAGES_PER_HOST = 300
ENV = {
    "DISTCRAWL_FRONTIER__LEASE_S": "4",
    "DISTCRAWL_LLM__LEASE_S": "4",
    "DISTCRAWL_WORKER__REAP_INTERVAL_S": "1",
    "DISTCRAWL_WORKER__HEARTBEAT_S": "1",
    "DISTCRAWL_LOG_FORMAT": "json",
}


def _progress(store: list[str]) -> int:
    import json

    run = cli("status", *store, "--json", timeout=30)
    return int(json.loads(run.stdout)["done"]) if run.returncode == 0 else -1


@dataclass
class MidCrawl:
    """A crawl on the test's redis-server, a third done, its workers running."""

    fleet: Fleet
    store: list[str]
    metrics_port: int  # one crawler's
    hosts: list[str]
    out: Path

    def finish(self, scenario: str) -> None:
        """Wait for the workers (each must exit 0, having seen the outage), then the full
        invariant check: every page done and summarized once."""
        try:
            self.fleet.wait(timeout=180)
        finally:
            self.fleet.kill_all()
        assert self.fleet.exit_codes() == [0] * len(self.fleet.workers), self.fleet.exit_codes()
        logs = self.fleet.logs()
        assert "store_unavailable" in logs  # the workers did see the outage
        expected = {f"http://{h}/" for h in self.hosts} | {
            f"http://{h}/p/{i}.html" for h in self.hosts for i in range(PAGES_PER_HOST)
        }
        figures = check_invariants(
            scenario,
            self.store,
            self.out,
            expected=expected,
            summaries=True,
            logs=logs,
            faults=1,
            max_rss_mb=self.fleet.peak_rss_mb(),
        )
        assert figures.done == figures.admitted == 2 * PAGES_PER_HOST + 2, figures


def _start(tmp_path: Path, site: SiteProcess, redis: RedisServer, name: str) -> MidCrawl:
    store = ["--redis", redis.url, "--crawl", name]
    produce(store, site.roots, rate=20, burst=4, inflight=8, max_attempts=10, env=ENV)
    fleet = Fleet(
        tmp_path,
        store,
        env=ENV,
        args={
            "crawl": ["--allow-private", "--concurrency", "8"],
            "summarize": ["--summarizer", "extractive"],
        },
    )
    crawl = MidCrawl(fleet, store, free_port(), site.hosts, tmp_path / "export")
    first = fleet.start("crawl")
    fleet.args["crawl"] = [*fleet.args["crawl"], "--metrics-port", str(crawl.metrics_port)]
    fleet.start("crawl")
    fleet.start("summarize")
    assert first.alive
    wait_for("a third of the pages", lambda: _progress(store) > PAGES_PER_HOST * 2 // 3, 60)
    return crawl


def _healthy(port: int) -> bool:
    return cli("health", "--metrics-port", str(port), "--timeout", "2").returncode == 0


@pytest.fixture
def site(site_factory: Callable[..., SiteProcess]) -> SiteProcess:
    return site_factory(
        "--addresses", "127.0.0.1,127.0.0.2", "--pages", str(PAGES_PER_HOST), "--page-delay", "0.05"
    )


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis")
    redis.start(persist=True)
    yield redis
    redis.stop()


@pytest.fixture
def start_crawl(
    site: SiteProcess, aof_redis: RedisServer, tmp_path: Path
) -> Iterator[Callable[[str], MidCrawl]]:
    """Produce the crawl ``name`` on ``aof_redis``, start its workers and wait until a third of
    the pages are done; whatever happens, no worker outlives the test."""
    fleets: list[Fleet] = []

    def start(name: str) -> MidCrawl:
        crawl = _start(tmp_path, site, aof_redis, name)
        fleets.append(crawl.fleet)
        return crawl

    yield start
    for fleet in fleets:
        fleet.kill_all()


def test_redis_killed_and_restarted_mid_crawl(
    aof_redis: RedisServer, start_crawl: Callable[[str], MidCrawl]
) -> None:
    crawl = start_crawl("redis-kill")
    aof_redis.stop(kill=True)  # SIGKILL: the last second of writes may be lost
    time.sleep(1.5)
    aof_redis.start(persist=True)
    crawl.finish("redis SIGKILL + restart (AOF everysec)")


def test_redis_gone_for_30_seconds(
    aof_redis: RedisServer, start_crawl: Callable[[str], MidCrawl]
) -> None:
    crawl = start_crawl("redis-gone")
    port = crawl.metrics_port
    wait_for("the worker's /healthz", lambda: _healthy(port), 30)
    aof_redis.stop()  # SIGTERM: Redis writes its AOF and exits
    down_at = time.monotonic()
    wait_for("/healthz to report Redis gone", lambda: not _healthy(port), 20)
    while time.monotonic() - down_at < 30:
        assert all(w.alive for w in crawl.fleet.workers), crawl.fleet.exit_codes()  # they wait
        time.sleep(1)
    aof_redis.start(persist=True)
    wait_for("/healthz to recover", lambda: _healthy(port), 30)
    crawl.finish("redis down 30 s")
