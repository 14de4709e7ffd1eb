"""Frontier behaviour on both stores: dedupe, claim order, settle, domain controls."""

from __future__ import annotations

import random

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.spec import CrawlSpec
from crawler.frontier import Outcome, SettleOp, SettleResult
from tests.helpers import FakeClock, assert_balanced, make_frontier


def _variants(i: int, rng: random.Random) -> list[str]:
    """Ten spellings of one URL: case, default port, fragment, query order, tracking params."""
    host = f"site{i % 7}.test"
    path = f"/p/{i}/Page"
    return [
        f"http://{host}{path}?a={i}&b=2",
        f"HTTP://{host.upper()}{path}?b=2&a={i}",
        f"http://{host}:80{path}?a={i}&b=2#top",
        f"http://{host}{path}?utm_source=x&a={i}&b=2",
        f"http://{host}{path}?b=2&utm_medium=y&a={i}&utm_campaign=z",
        f"http://{host}{path}?a={i}&b=2&fbclid=abc{rng.random()}",
        f"http://{host}/p/./{i}/Page?a={i}&b=2",
        f"http://{host}/p/x/../{i}/Page?b=2&a={i}#frag{rng.random()}",
        f"  http://{host}{path}?a={i}&b=2  ",
        f"http://{host}.{path}?a={i}&b=2",
    ]


async def test_ten_thousand_variants_of_a_thousand_urls_admit_exactly_a_thousand(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    rng = random.Random(7)
    frontier, admitter = await make_frontier(store, crawl_keys, CrawlSpec())
    urls = [v for i in range(1000) for v in _variants(i, rng)]
    rng.shuffle(urls)
    admitted = 0
    for start in range(0, len(urls), 500):
        report = await admitter.admit(urls[start : start + 500], depth=0)
        admitted += len(report.admitted)
    stats = await frontier.stats()
    assert admitted == 1000
    assert stats.admitted == 1000
    assert stats.queued == 1000
    assert stats.count("rejected:duplicate") == 9000
    assert_balanced(stats)


async def test_path_case_is_kept_apart(store: Redis, crawl_keys: CrawlKeys) -> None:
    _, admitter = await make_frontier(store, crawl_keys, CrawlSpec())
    report = await admitter.admit(["http://a.test/Page", "http://a.test/page"], depth=0)
    assert len(report.admitted) == 2


async def test_fifo_per_domain_and_lease_fields(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(
        store, crawl_keys, CrawlSpec(rate=100, burst=10, per_domain_inflight=10), clock
    )
    await admitter.admit([f"http://a.test/{i}" for i in range(5)], depth=2, parent="http://p/")
    claim = await frontier.claim("w1", 3)
    assert [lease.url for lease in claim.leases] == [f"http://a.test/{i}" for i in range(3)]
    assert {(lease.domain, lease.depth, lease.attempt) for lease in claim.leases} == {
        ("a.test", 2, 1)
    }
    assert claim.leases[0].entry.p == "http://p/"


async def test_settle_outcomes_and_stale_acks(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(
        store, crawl_keys, CrawlSpec(rate=100, burst=10, per_domain_inflight=10), clock
    )
    await admitter.admit([f"http://a.test/{i}" for i in range(4)], depth=0)
    a, b, c, d = (await frontier.claim("w1", 4)).leases
    record = '{"url":"x"}'
    assert await frontier.ack("w1", a.fp, Outcome.DONE, record=record) is SettleResult.SETTLED
    assert await frontier.ack("w1", b.fp, Outcome.FAILED, "http_404") is SettleResult.SETTLED
    assert await frontier.ack("w1", c.fp, Outcome.SKIPPED, "robots") is SettleResult.SETTLED
    # Only the lease holder may settle; a second ack of the same lease changes nothing.
    assert await frontier.ack("w2", d.fp, Outcome.DONE) is SettleResult.STALE
    assert await frontier.ack("w1", a.fp, Outcome.DONE) is SettleResult.STALE
    stats = await frontier.stats()
    assert (stats.done, stats.failed, stats.skipped, stats.in_flight) == (1, 1, 1, 1)
    assert stats.reasons("failed") == {"http_404": 1}
    assert stats.reasons("skipped") == {"robots": 1}
    assert_balanced(stats)
    records = {fp: rec async for fp, rec in frontier.page_records()}
    assert records == {a.fp: '{"url":"x"}'}


async def test_retry_with_delay_and_dead_letter(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(
        store, crawl_keys, CrawlSpec(rate=100, burst=10, max_attempts=2), clock
    )
    await admitter.admit(["http://a.test/x"], depth=0)
    lease = (await frontier.claim("w", 1)).leases[0]
    assert await frontier.retry("w", lease.fp, "http_500", delay_s=2) is SettleResult.REQUEUED
    claim = await frontier.claim("w", 1)
    assert claim.leases == []
    assert claim.wait_s == 2.0  # sleeps until the retry is due, instead of polling
    clock.advance(2000)
    lease = (await frontier.claim("w", 1)).leases[0]
    assert lease.attempt == 2
    result = await frontier.retry("w", lease.fp, "http_500", record='{"outcome":"failed"}')
    assert result is SettleResult.DEAD
    stats = await frontier.stats()
    assert (stats.failed, stats.dead_letters, stats.pending) == (1, 1, 0)
    [dead] = await frontier.dead_letters()
    assert (dead.url, dead.attempts, dead.reason) == ("http://a.test/x", 2, "http_500")
    assert_balanced(stats)


async def test_claim_reports_nothing_queued(store: Redis, crawl_keys: CrawlKeys) -> None:
    frontier, _ = await make_frontier(store, crawl_keys, CrawlSpec())
    claim = await frontier.claim("w", 4)
    assert claim.leases == []
    assert claim.wait_s is None


async def test_release_returns_lease_untouched_to_the_head(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(store, crawl_keys, CrawlSpec(rate=100), clock)
    await admitter.admit(["http://a.test/1", "http://a.test/2"], depth=0)
    first = (await frontier.claim("w", 1)).leases[0]
    await frontier.release("w", [first.fp])
    again = (await frontier.claim("w", 1)).leases[0]
    assert (again.url, again.attempt) == (first.url, 1)


async def test_backoff_and_crawl_delay(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(
        store, crawl_keys, CrawlSpec(rate=100, burst=10, per_domain_inflight=10), clock
    )
    await admitter.admit([f"http://a.test/{i}" for i in range(10)], depth=0)
    await frontier.back_off("a.test", 30)
    claim = await frontier.claim("w", 1)
    assert claim.leases == []
    assert claim.wait_s == 30.0
    clock.advance(30_000)
    assert len((await frontier.claim("w", 5)).leases) == 5
    await frontier.set_delay("a.test", 5)  # robots.txt Crawl-delay: 5, read before a fetch
    assert (await frontier.claim("w", 5)).leases == []
    clock.advance(4_999)
    assert (await frontier.claim("w", 5)).leases == []
    clock.advance(1)
    assert len((await frontier.claim("w", 5)).leases) == 1
    clock.advance(4_999)
    assert (await frontier.claim("w", 5)).leases == []
    clock.advance(1)
    assert len((await frontier.claim("w", 5)).leases) == 1


async def test_retry_after_pushes_the_whole_domain(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(
        store, crawl_keys, CrawlSpec(rate=100, burst=10, per_domain_inflight=10), clock
    )
    await admitter.admit([f"http://a.test/{i}" for i in range(3)], depth=0)
    lease = (await frontier.claim("w", 1)).leases[0]
    await frontier.retry("w", lease.fp, "http_429", retry_after_s=7)
    claim = await frontier.claim("w", 1)
    assert claim.leases == []
    assert claim.wait_s == 7.0


async def test_scope_and_limits_at_admission(store: Redis, crawl_keys: CrawlKeys) -> None:
    spec = CrawlSpec(
        allowed_domains=["a.test"],
        exclude=[r"/private/"],
        max_depth=2,
        max_pages=3,
    )
    frontier, admitter = await make_frontier(store, crawl_keys, spec)
    report = await admitter.admit(
        [
            "http://a.test/1",
            "http://sub.a.test/2",
            "http://b.test/3",
            "http://a.test/private/4",
            "mailto:x@a.test",
            "http://a.test/5",
            "http://a.test/6",
        ],
        depth=1,
    )
    assert report.admitted == ["http://a.test/1", "http://sub.a.test/2", "http://a.test/5"]
    assert report.rejected == {"off_domain": 1, "excluded": 1, "invalid": 1, "max_pages": 1}
    deep = await admitter.admit(["http://a.test/deep"], depth=3)
    assert deep.rejected == {"max_depth": 1}
    stats = await frontier.stats()
    assert stats.admitted == 3
    assert stats.count("rejected:off_domain") == 1
    assert stats.count("rejected:max_pages") == 1


async def test_per_domain_page_cap(store: Redis, crawl_keys: CrawlKeys) -> None:
    _frontier, admitter = await make_frontier(store, crawl_keys, CrawlSpec(max_domain_pages=2))
    report = await admitter.admit(
        ["http://a.test/1", "http://a.test/2", "http://a.test/3", "http://b.test/1"], depth=0
    )
    assert len(report.admitted) == 3
    assert report.rejected == {"max_domain_pages": 1}


async def test_spec_is_written_once(store: Redis, crawl_keys: CrawlKeys) -> None:
    frontier, _ = await make_frontier(store, crawl_keys, CrawlSpec(rate=3))
    assert (await frontier.init(CrawlSpec(rate=9))).rate == 3
    spec = await frontier.spec()
    assert spec is not None
    assert spec.rate == 3


async def test_a_late_answer_for_a_reaped_attempt_is_stale(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """A hung task's ack must not end the newer attempt of the same URL, same worker or not."""
    clock = FakeClock()
    frontier, admitter = await make_frontier(store, crawl_keys, CrawlSpec(lease_s=5), clock)
    await admitter.admit(["http://a.test/x"], depth=0)
    first = (await frontier.claim("w", 1)).leases[0]
    clock.advance(5_000)
    assert await frontier.reap() == (1, 0)
    clock.advance(1_000)
    second = (await frontier.claim("w", 1)).leases[0]
    assert second.attempt == 2
    late = SettleOp.ack(first.fp, Outcome.DONE, attempt=first.attempt)
    assert await frontier.settle("w", [late]) == [SettleResult.STALE]
    current = SettleOp.ack(second.fp, Outcome.DONE, attempt=second.attempt)
    assert await frontier.settle("w", [current]) == [SettleResult.SETTLED]
    stats = await frontier.stats()
    assert (stats.done, stats.pending) == (1, 0)


async def test_a_dead_letter_without_reason_counts_no_empty_reason(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    frontier, admitter = await make_frontier(store, crawl_keys, CrawlSpec(max_attempts=1))
    await admitter.admit(["http://a.test/x"], depth=0)
    lease = (await frontier.claim("w", 1)).leases[0]
    assert await frontier.retry("w", lease.fp, "") is SettleResult.DEAD
    assert "failed:" not in (await frontier.stats()).counts


async def test_reap_every_lease_returns_live_leases_and_keeps_the_domain_ready(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """What `run` does on its own store when it starts: the previous process is dead, so its
    leases go back at once, not after lease_s; the domain's schedule keeps the real clock."""
    clock = FakeClock()
    frontier, admitter = await make_frontier(store, crawl_keys, CrawlSpec(lease_s=600), clock)
    await admitter.admit([f"http://a.test/{i}" for i in range(3)], depth=0)
    held = (await frontier.claim("dead", 2)).leases
    assert len(held) == 2
    assert await frontier.reap() == (0, 0)  # not expired
    assert await frontier.reap(1, every_lease=True) == (1, 0)  # the limit holds
    assert await frontier.reap(every_lease=True) == (1, 0)
    assert await frontier.reap(every_lease=True) == (0, 0)
    clock.advance(1_000)
    again = (await frontier.claim("new", 3)).leases
    held_fps = {lease.fp for lease in held}
    assert sorted((lease.fp in held_fps, lease.attempt) for lease in again) == [
        (False, 1),
        (True, 2),
        (True, 2),
    ]
    stats = await frontier.stats()
    assert (stats.in_flight, stats.pending) == (3, 3)
    assert_balanced(stats)
