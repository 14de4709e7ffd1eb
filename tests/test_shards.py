"""Sharded crawls: keys, routing, the shard schedule, and a whole lifecycle on every store.

A crawl of S shards keeps shard k of its frontier and docs queue under its own hash tag; the
Frontier and DocsQueue facades split admissions by domain, claim over the shards, route settles
to the leasing shard and sum what they read. These tests run the facades on the real
redis-server, the embedded store's server and a real three-master Redis Cluster.
"""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from common.docsqueue import DocKind, DocOp, DocResult, DocsQueue
from common.errors import ConfigError
from common.keys import CrawlKeys, shard_of
from common.shards import FIRST_RECHECK_S, RECHECK_S, ShardSchedule
from common.spec import CrawlSpec
from common.store import open_store
from crawler.admission import Admitter
from crawler.frontier import Frontier, Outcome, SettleOp, SettleResult
from distcrawl.redis_server import RedisClusterServer
from tests.helpers import FakeClock, assert_balanced, make_frontier

# -- units ------------------------------------------------------------------------------------


def test_domains_spread_over_shards_and_stay_put() -> None:
    domains = [f"site{i}.example.org" for i in range(1600)]
    per_shard = Counter(shard_of(d, 16) for d in domains)
    assert set(per_shard) == set(range(16))
    assert min(per_shard.values()) > 60, per_shard
    assert max(per_shard.values()) < 140, per_shard
    assert shard_of("a.test:8080", 16) == zlib.crc32(b"a.test:8080") % 16  # stable everywhere
    assert {shard_of(d, 1) for d in domains} == {0}


def test_each_shard_has_its_own_slot_and_one_shard_is_the_crawl() -> None:
    keys = CrawlKeys("news")
    assert keys.shard_keys(1) == [keys]
    shards = keys.shard_keys(16)
    assert shards[0].prefix.startswith("distcrawl:{news:0-")
    assert shards[1].prefix.startswith("distcrawl:{news:1-")
    slots = [key_slot(k.spec.encode()) for k in shards]
    # each shard in its sixteenth of the slot space: spread evenly over any masters that own
    # equal contiguous ranges (three masters: 5 or 6 shards each)
    assert [slot * 16 // 16384 for slot in slots] == list(range(16))
    thirds = Counter(slot * 3 // 16384 for slot in slots)
    assert sorted(thirds.values()) == [5, 5, 6]
    assert key_slot(keys.spec.encode()) not in slots
    for k in shards:  # every key of one shard in that shard's slot
        names = [*k.all_fixed(), k.queue("a.test"), k.domain("a.test")]
        assert len({key_slot(n.encode()) for n in names}) == 1


def test_crawl_wide_bounds_are_split_and_page_caps_need_one_shard() -> None:
    spec = CrawlSpec(shards=8, max_docs_backlog=1000, seen_capacity=1_000_000)
    part = spec.for_shard()
    assert (part.max_docs_backlog, part.seen_capacity) == (125, 125_000)
    assert CrawlSpec().for_shard() == CrawlSpec()
    with pytest.raises(ConfigError, match="max pages needs a one-shard crawl"):
        CrawlSpec(shards=4, max_pages=100)
    with pytest.raises(ConfigError, match="shards must be"):
        CrawlSpec(shards=0)


def test_schedule_rotates_and_backs_off_empty_shards() -> None:
    now = [100.0]
    schedule = ShardSchedule(3, clock=lambda: now[0])
    assert schedule.due() == [0, 1, 2]
    assert schedule.due() == [1, 2, 0]  # a different first shard every time
    schedule.note(0, got=True)
    schedule.note(1, got=False)  # nothing, no known time: asked again soon...
    schedule.note(2, got=False, wait_s=30.0)  # ...or when its work is due (at most RECHECK_S)
    assert schedule.due() == [0]
    now[0] += FIRST_RECHECK_S
    assert sorted(schedule.due()) == [0, 1]
    schedule.note(1, got=False)  # still empty: the wait doubles
    now[0] += FIRST_RECHECK_S
    assert 1 not in schedule.due()
    now[0] += RECHECK_S
    assert sorted(schedule.due()) == [0, 1, 2]
    schedule.note(1, got=False)
    schedule.wake(1)  # a lease of shard 1 settled here
    assert 1 in schedule.due()


# -- a sharded crawl on every store -------------------------------------------------------------

SHARDS = 4
DOMAINS = [f"d{i}.test" for i in range(30)]


async def test_a_sharded_crawl_settles_everything_once(store: Redis, crawl_keys: CrawlKeys) -> None:
    """Admit over 4 shards, claim everything, settle it in every way (ack with a doc, retry,
    release, and acks sent through another Frontier object that did not claim), reap what was
    left: the equation holds in every shard and in the sum, and the docs all come out once."""
    clock = FakeClock()
    spec = CrawlSpec(shards=SHARDS, rate=100, burst=10, per_domain_inflight=10, lease_s=30)
    frontier, admitter = await make_frontier(store, crawl_keys, spec, clock)
    urls = [f"http://{d}/p{i}" for d in DOMAINS for i in range(4)]
    report = await admitter.admit(urls, depth=0)
    assert len(report.admitted) == 120
    # another worker (no local cache) admits them again: the shards' seen sets refuse them all
    again = await Admitter(Frontier(store, crawl_keys, clock=clock), spec).admit(urls, depth=0)
    assert (len(again.admitted), again.rejected["duplicate"]) == (0, 120)
    shards = await frontier.shards()
    assert len(shards) == SHARDS
    per_shard = [await s.stats() for s in shards]
    assert all(s.admitted > 0 for s in per_shard), [s.admitted for s in per_shard]
    assert sum(s.admitted for s in per_shard) == 120

    leases = []
    for _ in range(50):
        claim = await frontier.claim("w", 16)
        leases += claim.leases
        if len(leases) == 120:
            break
        clock.advance(1000)
    assert sorted(lease.url for lease in leases) == sorted(urls)
    assert {shard_of(lease.domain, SHARDS) for lease in leases} == set(range(SHARDS))

    acked, retried, released, foreign = leases[:60], leases[60:70], leases[70:80], leases[80:100]
    ops = [SettleOp.ack(x.fp, Outcome.DONE, record="{}", doc=f"{x.fp}\t0\t{{}}") for x in acked]
    ops += [SettleOp.retry(x.fp, "timeout", delay_s=0) for x in retried]
    ops += [SettleOp.release(x.fp) for x in released]
    results = await frontier.settle("w", ops)
    assert results.count(SettleResult.SETTLED) == 60
    assert results.count(SettleResult.REQUEUED) == 20
    other = Frontier(store, crawl_keys, clock=clock)  # knows no lease: settles go everywhere
    results = await other.settle(
        "w", [SettleOp.ack(x.fp, Outcome.SKIPPED, "robots") for x in foreign]
    )
    assert results == [SettleResult.SETTLED] * 20
    assert await other.renew("w", [x.fp for x in leases[100:]]) == 20
    stats = await frontier.stats()
    assert_balanced(stats)
    assert (stats.done, stats.skipped, stats.in_flight, stats.queued) == (60, 20, 20, 20)

    clock.advance(31_000)  # the last 20 leases expire
    assert await frontier.reap() == (20, 0)
    while (claim := await frontier.claim("w2", 50)).leases or await frontier.pending():
        await frontier.settle("w2", [SettleOp.ack(x.fp, Outcome.DONE) for x in claim.leases])
        clock.advance(1000)
    stats = await frontier.stats()
    assert_balanced(stats)
    assert (stats.admitted, stats.done, stats.skipped, stats.pending) == (120, 100, 20, 0)
    for shard in await frontier.shards():
        assert_balanced(await shard.stats())

    docs = DocsQueue(store, crawl_keys, clock=clock)
    got = []
    for _ in range(20):
        got += await docs.claim("s", 25, lease_s=30)
    assert sorted(d.fp for d in got) == sorted(x.fp for x in acked)
    settled = await DocsQueue(store, crawl_keys, clock=clock).settle(
        "s", [DocOp(DocKind.SUMMARIZED, d.fp, record="{}") for d in got]
    )
    assert settled == [DocResult.SETTLED] * 60
    d = await docs.stats()
    assert (d.queued, d.summarized, d.pending) == (60, 60, 0)
    assert d.balanced
    assert len([fp async for fp, _ in frontier.page_records()]) == 60


async def test_a_clusters_masters_each_hold_part_of_a_crawl(
    redis_cluster: RedisClusterServer, crawl_keys: CrawlKeys
) -> None:
    redis = await open_store(redis_cluster.url)
    try:
        frontier, admitter = await make_frontier(redis, crawl_keys, CrawlSpec(shards=16))
        await admitter.admit([f"http://site{i}.test/" for i in range(200)], depth=0)
        assert (await frontier.stats()).admitted == 200
        assert isinstance(redis, RedisCluster)
        per_node = redis_cluster.keys_per_master(f"distcrawl:{{{crawl_keys.crawl}:*")
        assert len(per_node) == 3
        assert all(n > 0 for n in per_node.values()), per_node
    finally:
        await redis.aclose()
