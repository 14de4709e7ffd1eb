"""Replaying dead letters (`distcrawl requeue`): the scripts on every store, the loop, the CLI.

The scripts are checked on the real server, the embedded store and a real cluster (``store``),
one shard and four; the commands end to end against a test site that is down for a while and a
mock LLM that answers 503 for a while.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from common.deadletters import Requeued, requeue_all
from common.docsqueue import DocKind, DocOp, DocsQueue, DocsStats
from common.keys import CrawlKeys
from common.serde import Doc, encode_doc
from common.spec import CrawlSpec
from crawler.admission import Admitter
from crawler.frontier import Frontier, Lease, Outcome, SettleOp, SettleResult
from distcrawl.sample_docs import feed_docs, make_docs
from summarizer.retry import passing_trouble
from tests.helpers import FakeClock, assert_balanced, make_frontier


def _spec(**changes: Any) -> CrawlSpec:
    """A spec whose politeness never holds a claim back."""
    return CrawlSpec(rate=1000.0, burst=1000, per_domain_inflight=1000, **changes)


async def _claim_all(
    frontier: Frontier, admitter: Admitter, clock: FakeClock, urls: Sequence[str]
) -> dict[str, Lease]:
    """Admit ``urls`` and claim every one of them; the leases by URL."""
    report = await admitter.admit(urls, depth=0)
    assert len(report.admitted) == len(urls)
    return await _claim(frontier, clock, len(urls))


async def _claim(frontier: Frontier, clock: FakeClock, n: int) -> dict[str, Lease]:
    """Claim until ``n`` URLs are leased (bounded); the leases by URL."""
    leases: dict[str, Lease] = {}
    for _ in range(40):
        leases |= {x.url: x for x in (await frontier.claim("w", 100)).leases}
        if len(leases) >= n:
            return leases
        clock.advance(1000)
        await asyncio.sleep(0.05)  # (a sharded frontier asks an empty shard again after 50 ms)
    raise AssertionError(f"claimed {len(leases)} of {n}")


async def _kill(
    frontier: Frontier, leases: dict[str, Lease], reasons: dict[str, str]
) -> list[SettleResult]:
    """Retry each URL with its reason: with max_attempts 1, a dead letter."""
    ops = [SettleOp.retry(leases[url].fp, reason) for url, reason in reasons.items()]
    return await frontier.settle("w", ops)


def _docs_balanced(stats: DocsStats) -> None:
    assert stats.queued == stats.summarized + stats.failed + stats.pending, stats


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 4])
async def test_dead_urls_go_back_to_their_queues_with_fresh_attempts(
    store: Redis, crawl_keys: CrawlKeys, shards: int
) -> None:
    clock = FakeClock()
    spec = _spec(shards=shards, max_attempts=1, max_domain_pages=5)
    frontier, admitter = await make_frontier(store, crawl_keys, spec, clock)
    down = [f"http://down.test/{i}" for i in range(4)]
    slow = ["http://slow.test/0", "http://slow.test/1"]
    gone, fine = "http://ok.test/gone", "http://ok.test/fine"
    leases = await _claim_all(frontier, admitter, clock, [*down, *slow, gone, fine])
    reasons = {u: "http_503" for u in down} | {slow[0]: "timeout", slow[1]: "http_500"}
    assert await _kill(frontier, leases, reasons) == [SettleResult.DEAD] * 6
    await frontier.ack("w", leases[gone].fp, Outcome.FAILED, "http_404", record='{"u":1}')
    await frontier.ack("w", leases[fine].fp, Outcome.DONE, record='{"u":2}')
    stats = await frontier.stats()
    assert (stats.failed, stats.dead_letters, stats.pending) == (7, 6, 0)
    assert_balanced(stats)

    assert await frontier.requeue(reason="http_503") == Requeued(4, {"http_503": 4})
    stats = await frontier.stats()
    assert (stats.admitted, stats.failed, stats.dead_letters, stats.queued) == (8, 3, 2, 4)
    assert stats.reasons("failed") == {"timeout": 1, "http_500": 1, "http_404": 1}
    assert (stats.count("dead_letters"), stats.count("requeued")) == (2, 4)
    assert_balanced(stats)
    records = {fp async for fp, _ in frontier.page_records()}
    assert records == {leases[u].fp for u in [gone, fine, *slow]}  # pending again: no record

    requeued = await frontier.requeue(domain="slow.test")
    assert requeued == Requeued(2, {"timeout": 1, "http_500": 1})
    assert await frontier.requeue() == Requeued()  # the final failure is no dead letter
    stats = await frontier.stats()
    assert (stats.failed, stats.dead_letters, stats.queued) == (1, 0, 6)
    assert_balanced(stats)

    again = await _claim(frontier, clock, 6)
    assert sorted(again) == sorted([*down, *slow])
    assert {x.attempt for x in again.values()} == {1}  # fresh attempts
    ops = [SettleOp.ack(x.fp, Outcome.DONE) for x in again.values()]
    assert await frontier.settle("w", ops) == [SettleResult.SETTLED] * 6
    stats = await frontier.stats()
    assert (stats.admitted, stats.done, stats.failed, stats.pending) == (8, 7, 1, 0)
    assert_balanced(stats)
    for shard in await frontier.shards():
        assert_balanced(await shard.stats())
    # the per-domain cap still counts the requeued URLs once: one more fits, then none
    report = await admitter.admit(["http://down.test/5", "http://down.test/6"], depth=0)
    assert (report.admitted, dict(report.rejected)) == (
        ["http://down.test/5"],
        {"max_domain_pages": 1},
    )


async def test_requeue_looks_at_each_dead_letter_once_in_bounded_calls(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(store, crawl_keys, _spec(max_attempts=1), clock)
    urls = [f"http://d{i % 3}.test/{i}" for i in range(60)]
    leases = await _claim_all(frontier, admitter, clock, urls)
    reasons = {u: "timeout" if i % 2 else "http_503" for i, u in enumerate(urls)}
    assert await _kill(frontier, leases, reasons) == [SettleResult.DEAD] * 60
    before = await frontier.dead_letters()

    requeued = await frontier.requeue(reason="timeout", domain="d1.test", batch=7)
    assert requeued == Requeued(10, {"timeout": 10})
    requeued = await frontier.requeue(reason="timeout", batch=7)
    assert requeued == Requeued(20, {"timeout": 20})
    # every other dead letter is still there, once, in its order
    assert await frontier.dead_letters() == [d for d in before if d.reason != "timeout"]
    stats = await frontier.stats()
    assert (stats.failed, stats.queued, stats.reasons("failed")) == (30, 30, {"http_503": 30})
    assert_balanced(stats)


async def test_the_loop_stops_after_one_pass_over_the_list() -> None:
    """requeue_all asks for at most the list's length at the first call, in batches."""
    asked: list[int] = []
    answers: list[list[Any]] = [[23, 10, 4, 0, "a", 4], [23, 10, 0, 0], [23, 3, 1, 0, "b", 1]]

    async def call(limit: int) -> list[Any]:
        asked.append(limit)
        return answers[len(asked) - 1]

    assert await requeue_all(call, batch=10) == Requeued(5, {"a": 4, "b": 1})
    assert asked == [10, 10, 3]

    async def empty(limit: int) -> list[Any]:
        asked.append(limit)
        return [0, 0, 0, 0]

    asked.clear()
    assert await requeue_all(empty, batch=10) == Requeued()
    assert asked == [10]


# -- docs ---------------------------------------------------------------------------------


async def test_dead_docs_go_back_to_the_queue_with_fresh_attempts(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    queue = DocsQueue(store, crawl_keys, clock=clock)
    down, other = make_docs(4, host="a.test"), make_docs(2, host="b.test:8080")
    await feed_docs(store, crawl_keys, down + other)
    leases = {x.fp: x for x in await queue.claim("s", 10, lease_s=30)}
    assert len(leases) == 6
    ops = [DocOp(DocKind.DEAD, d.fp, "http_503", record='{"r":1}') for d in down]
    ops += [
        DocOp(DocKind.DEAD, other[0].fp, "timeout", record='{"r":2}'),
        DocOp(DocKind.FAILED, other[1].fp, "http_400", record='{"r":3}'),
    ]
    await queue.settle("s", ops)
    stats = await queue.stats()
    assert (stats.failed, stats.dead, stats.pending, stats.counts.get("docs_dead_texts", 0)) == (
        6,
        5,
        0,
        5,
    )
    _docs_balanced(stats)

    assert await queue.requeue(reason="http_503") == Requeued(4, {"http_503": 4})
    stats = await queue.stats()
    assert (stats.failed, stats.dead, stats.waiting, stats.counts["docs_requeued"]) == (
        2,
        1,
        4,
        4,
    )
    assert "docs_failed:http_503" not in stats.counts
    _docs_balanced(stats)
    records = {fp async for fp, _ in queue.summary_records()}
    assert records == {other[0].fp, other[1].fp}  # pending again: no failed record

    assert await queue.requeue(domain="b.test:8080") == Requeued(1, {"timeout": 1})
    assert await queue.requeue() == Requeued()  # the final failure (400) is no dead letter
    again = await queue.claim("s", 10, lease_s=30)
    assert {x.fp: (x.attempt, x.payload) for x in again} == {
        d.fp: (1, encode_doc(d)) for d in [*down, other[0]]
    }
    await queue.settle("s", [DocOp(DocKind.SUMMARIZED, x.fp, record="{}") for x in again])
    stats = await queue.stats()
    assert (stats.summarized, stats.failed, stats.pending, stats.dead) == (5, 1, 0, 0)
    assert (stats.counts["docs_requeued"], stats.counts.get("docs_dead_texts", 0)) == (5, 0)
    _docs_balanced(stats)


async def test_dead_docs_keep_their_text_up_to_the_bound(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """Past --max-docs-backlog dead docs in the shard, a dead doc keeps no text (it stays
    failed; requeue says so), and requeued docs make room again. The reaper's dead docs too,
    and a dead doc of an older version (no text field) is left as it is."""
    clock = FakeClock()
    await Frontier(store, crawl_keys).init(CrawlSpec(max_docs_backlog=2, max_doc_leases=1))
    queue = DocsQueue(store, crawl_keys, clock=clock)
    docs = make_docs(3, text="a sentence of page text. " * 200)
    await feed_docs(store, crawl_keys, docs)
    assert len(await queue.claim("s", 3, lease_s=5)) == 3
    clock.advance(5_000)
    assert await queue.reap() == (0, 3)  # the summarizer died: lease_expired
    entries = await store.lrange(crawl_keys.docs_dead, 0, -1)
    assert entries == [
        f"{docs[0].fp}\t1\tlease_expired\t{docs[0].url}\t{encode_doc(docs[0])}",
        f"{docs[1].fp}\t1\tlease_expired\t{docs[1].url}\t{encode_doc(docs[1])}",
        f"{docs[2].fp}\t1\tlease_expired\t{docs[2].url}\t",
    ]
    old = "0123456789abcdef\t3\tlease_expired\thttp://docs.test/old"
    await store.rpush(crawl_keys.docs_dead, old)  # as an older version's reaper left it
    for name in ("docs_queued", "docs_failed", "docs_failed:lease_expired"):
        await store.hincrby(crawl_keys.counts, name, 1)

    assert await queue.requeue() == Requeued(2, {"lease_expired": 2}, kept_no_text=2)
    assert await store.lrange(crawl_keys.docs_dead, 0, -1) == [entries[2], old]
    stats = await queue.stats()
    assert (stats.failed, stats.waiting, stats.counts.get("docs_dead_texts", 0)) == (2, 2, 0)
    _docs_balanced(stats)
    assert len(await queue.claim("s", 3, lease_s=5)) == 2
    clock.advance(5_000)
    assert await queue.reap() == (0, 2)  # room again: both keep their text
    assert await queue.requeue() == Requeued(2, {"lease_expired": 2}, kept_no_text=2)
    _docs_balanced(await queue.stats())


async def test_dead_docs_of_a_sharded_crawl(store: Redis, crawl_keys: CrawlKeys) -> None:
    """Docs queued by the crawler's settle in 4 shards, dead-lettered by a summarizer: a
    domain's are requeued from its shard alone, the rest from all."""
    clock = FakeClock()
    spec = _spec(shards=4)
    frontier, admitter = await make_frontier(store, crawl_keys, spec, clock)
    urls = [f"http://d{i}.test/p" for i in range(12)]
    leases = await _claim_all(frontier, admitter, clock, urls)
    ops = [
        SettleOp.ack(x.fp, Outcome.DONE, doc=encode_doc(Doc(url=u, fp=x.fp, title=u, fetched_at=0)))
        for u, x in leases.items()
    ]
    await frontier.settle("w", ops)
    queue = DocsQueue(store, crawl_keys, clock=clock)
    docs = await queue.claim("s", 20, lease_s=30)
    assert len(docs) == 12
    await queue.settle("s", [DocOp(DocKind.DEAD, x.fp, "http_502") for x in docs])
    assert await queue.requeue(domain="d3.test") == Requeued(1, {"http_502": 1})
    again = await queue.claim("s", 20, lease_s=30)
    assert [x.fp for x in again] == [leases["http://d3.test/p"].fp]
    assert await queue.requeue(reason="http_502", batch=2) == Requeued(11, {"http_502": 11})
    stats = await queue.stats()
    assert (stats.failed, stats.dead, stats.pending) == (0, 0, 12)
    _docs_balanced(stats)


def test_which_doc_failures_are_dead_letters() -> None:
    """Out of retries on a passing trouble: dead (replayable); a fault of the doc: failed."""
    for reason in ("timeout", "connection", "bad_response", "http_503", "http_429", "http_408"):
        assert passing_trouble(reason), reason
    for reason in ("http_400", "http_422", "invalid_output", "max_doc_tokens", "internal_error"):
        assert not passing_trouble(reason), reason
    assert not passing_trouble("http_x")
