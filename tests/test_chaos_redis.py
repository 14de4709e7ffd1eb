"""Chaos: Redis killed and restarted mid-crawl, and Redis gone for 30 s.

The test's own redis-server runs with AOF (`appendfsync everysec`). Killed with SIGKILL it loses
up to a second of writes: a settle or a commit in that second is undone, so its URL is back in
flight under a lease nobody holds, is reaped and crawled again. It is re-crawled, never dropped
(commits are one script: seen set, admissions, page record and the settle go together).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisServer, free_port
from tests.chaos import Fleet, check_invariants, wait_for
from tests.processes import SiteProcess, cli

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


def _start(
    tmp_path: Path, site: SiteProcess, redis: RedisServer, name: str, metrics_port: int
) -> tuple[Fleet, list[str]]:
    store = ["--redis", redis.url, "--crawl", name]
    produced = cli(
        "produce",
        *store,
        *(f"http://{h}/" for h in site.hosts),
        "--rate",
        "20",
        "--burst",
        "4",
        "--per-domain-inflight",
        "8",
        "--max-attempts",
        "10",
        env=ENV,
    )
    assert produced.returncode == 0, produced.stderr
    fleet = Fleet(
        tmp_path,
        store,
        env=ENV,
        args={
            "crawl": ["--allow-private", "--concurrency", "8"],
            "summarize": ["--summarizer", "extractive"],
        },
    )
    first = fleet.start("crawl")
    fleet.args["crawl"] = [*fleet.args["crawl"], "--metrics-port", str(metrics_port)]
    fleet.start("crawl")
    fleet.start("summarize")
    assert first.alive
    return fleet, store


def _healthy(port: int) -> bool:
    return cli("health", "--metrics-port", str(port), "--timeout", "2").returncode == 0


def _finish(fleet: Fleet, store: list[str], hosts: list[str], out: Path, scenario: str) -> None:
    try:
        fleet.wait(timeout=180)
    finally:
        fleet.kill_all()
    assert fleet.exit_codes() == [0] * len(fleet.workers), fleet.exit_codes()
    logs = fleet.logs()
    assert "store_unavailable" in logs  # the workers did see the outage
    expected = {f"http://{h}/" for h in hosts} | {
        f"http://{h}/p/{i}.html" for h in hosts for i in range(PAGES_PER_HOST)
    }
    figures = check_invariants(
        scenario,
        store,
        out,
        expected=expected,
        summaries=True,
        logs=logs,
        faults=1,
        max_rss_mb=fleet.peak_rss_mb(),
    )
    assert figures.done == figures.admitted == 2 * PAGES_PER_HOST + 2, figures


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
def start_fleet(
    site: SiteProcess, aof_redis: RedisServer, tmp_path: Path
) -> Iterator[Callable[[str, int], tuple[Fleet, list[str]]]]:
    """Produce the crawl and start its workers; whatever happens, none outlives the test."""
    fleets: list[Fleet] = []

    def start(name: str, metrics_port: int) -> tuple[Fleet, list[str]]:
        fleet, store = _start(tmp_path, site, aof_redis, name, metrics_port)
        fleets.append(fleet)
        return fleet, store

    yield start
    for fleet in fleets:
        fleet.kill_all()


def test_redis_killed_and_restarted_mid_crawl(
    site: SiteProcess,
    aof_redis: RedisServer,
    tmp_path: Path,
    start_fleet: Callable[[str, int], tuple[Fleet, list[str]]],
) -> None:
    redis, port = aof_redis, free_port()
    fleet, store = start_fleet("redis-kill", port)
    wait_for("a third of the pages", lambda: _progress(store) > PAGES_PER_HOST * 2 // 3, 60)
    redis.stop(kill=True)  # SIGKILL: the last second of writes may be lost
    time.sleep(1.5)
    redis.start(persist=True)
    _finish(fleet, store, site.hosts, tmp_path / "export", "redis SIGKILL + restart (AOF everysec)")


def test_redis_gone_for_30_seconds(
    site: SiteProcess,
    aof_redis: RedisServer,
    tmp_path: Path,
    start_fleet: Callable[[str, int], tuple[Fleet, list[str]]],
) -> None:
    redis, port = aof_redis, free_port()
    fleet, store = start_fleet("redis-gone", port)
    wait_for("a third of the pages", lambda: _progress(store) > PAGES_PER_HOST * 2 // 3, 60)
    wait_for("the worker's /healthz", lambda: _healthy(port), 30)
    redis.stop()  # SIGTERM: Redis writes its AOF and exits
    down_at = time.monotonic()
    wait_for("/healthz to report Redis gone", lambda: not _healthy(port), 20)
    while time.monotonic() - down_at < 30:
        assert all(w.alive for w in fleet.workers), fleet.exit_codes()  # they wait
        time.sleep(1)
    redis.start(persist=True)
    wait_for("/healthz to recover", lambda: _healthy(port), 30)
    _finish(fleet, store, site.hosts, tmp_path / "export", "redis down 30 s")
