"""Chaos: workers killed (SIGKILL) or stopped (SIGTERM) at random during a distributed crawl.

3 crawl and 2 summarize processes work through a 2,004-page local site; every 1.5 to 3 s a
random worker (crawl and summarize in turn) gets the signal and a new one of the same role
starts. Leases are short (4 s), so
a killed worker's URLs and docs are reaped and done by the others. The run ends in the full
invariant check.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisClusterServer, RedisServer
from tests.chaos import Fleet, check_invariants, concurrency
from tests.processes import MockProcess, SiteProcess, produce

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]

HOSTS = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"
PAGES_PER_HOST = 500  # + 4 roots = 2,004 pages
HITS = 8
FAST_LEASES = {
    "DISTCRAWL_FRONTIER__LEASE_S": "4",
    # Like --max-attempts 10 below, for docs: a doc may lose its summarizer 8 times here.
    "DISTCRAWL_FRONTIER__MAX_DOC_LEASES": "10",
    "DISTCRAWL_LLM__LEASE_S": "4",
    "DISTCRAWL_WORKER__REAP_INTERVAL_S": "1",
    "DISTCRAWL_WORKER__HEARTBEAT_S": "1",
    "DISTCRAWL_WORKER__GRACE_S": "3",
    "DISTCRAWL_LOG_FORMAT": "json",
}


@pytest.fixture
def mock_llm() -> Iterator[MockProcess]:
    # 0.2 s per call: with pages done at about 100/s, each summarizer holds about ten docs at
    # any moment, so a kill always lands on leased docs (at 0.03 s it often found none).
    mock = MockProcess("--api-key", "sk-chaos", "--latency", "0.2")
    yield mock
    mock.stop()


@pytest.mark.parametrize(
    ("sig", "backend"),
    [(signal.SIGKILL, "redis_server"), (signal.SIGTERM, "redis_server"),
     (signal.SIGKILL, "redis_cluster")],
    ids=["sigkill", "sigterm", "sigkill-cluster"],
)  # fmt: skip
def test_workers_hit_at_random_lose_nothing(
    sig: signal.Signals,
    backend: str,
    request: pytest.FixtureRequest,
    site_factory: Callable[..., SiteProcess],
    tmp_path: Path,
    mock_llm: MockProcess,
) -> None:
    """On one redis-server, and on a real three-master Redis Cluster (same URL form)."""
    server: RedisServer | RedisClusterServer = request.getfixturevalue(backend)
    site = site_factory("--addresses", HOSTS, "--pages", str(PAGES_PER_HOST), "--page-delay", "0.1")
    store = ["--redis", server.url, "--crawl", f"chaos-{sig.name}-{tmp_path.name[-6:]}"]
    # 25 pages/s per host: the crawl lasts about 20 s, so every hit lands mid-crawl.
    produce(store, site.roots, rate=25, burst=5, inflight=8, max_attempts=10, env=FAST_LEASES)
    fleet = Fleet(
        tmp_path,
        store,
        env={**FAST_LEASES, **mock_llm.worker_env("sk-chaos")},
        args=concurrency(crawl=8, summarize=16),
    )
    rng = random.Random(f"chaos-{sig.name}")
    try:
        for role in ("crawl", "crawl", "crawl", "summarize", "summarize"):
            fleet.start(role)
        while fleet.signals_sent < HITS and fleet.alive():
            time.sleep(rng.uniform(1.5, 3.0))
            # the roles take turns, so both kinds of lease are hit (a random pick could spare
            # the summarizers, and the docs_reaped check below would then fail by chance)
            role = ("crawl", "summarize")[fleet.signals_sent % 2]
            # a worker that holds leases (its heartbeat says so), so every hit takes work away
            fleet.hit(rng, sig, role=role, among=fleet.holding(role))
        fleet.wait(timeout=180)
    finally:
        fleet.kill_all()
    codes = fleet.exit_codes()
    if sig == signal.SIGKILL:
        assert codes.count(-signal.SIGKILL) == fleet.signals_sent, codes
        assert all(c in (0, -signal.SIGKILL) for c in codes), codes
    else:  # a stopped worker drains, releases what it holds and exits 0; one hit while still
        # importing (before its handlers exist, so before it claimed anything) dies of SIGTERM
        early = [w for w in fleet.workers if w.proc.returncode == -signal.SIGTERM]
        assert all("worker_started" not in w.log.read_text() for w in early), codes
        assert all(c in (0, -signal.SIGTERM) for c in codes), codes

    expected = {f"http://{h}/" for h in site.hosts} | {
        f"http://{h}/p/{i}.html" for h in site.hosts for i in range(PAGES_PER_HOST)
    }
    figures = check_invariants(
        f"workers {sig.name}",
        store,
        tmp_path / "export",
        expected=expected,
        summaries=True,
        logs=fleet.logs(),
        faults=fleet.signals_sent,
        max_rss_mb=fleet.peak_rss_mb(),
    )
    assert figures.admitted == len(expected)
    if isinstance(server, RedisClusterServer):  # the crawl's 16 shards spread over the masters
        per_master = server.keys_per_master(f"distcrawl:{{{store[-1]}:*")
        assert len(per_master) == 3
        assert all(n > 0 for n in per_master.values()), per_master
    assert figures.done == len(expected), figures  # max attempts 10: no page runs out of tries
    assert figures.summarized == figures.done, figures
    if sig == signal.SIGKILL:
        # The kills landed while work was in flight: leases were reaped and redone.
        assert figures.extra["reaped"] > 0, figures
        assert figures.extra["docs_reaped"] > 0, figures
