"""Revisit state in the frontier (docs/revisits.md), on every store: sleep, wake, passes,
sitemap hints, dead letters and gone pages; and the adaptive interval."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from common.errors import ConfigError
from common.keys import CrawlKeys
from common.protocol import REVISIT_FORGET
from common.serde import Revisit, UrlEntry, encode_url_entry
from common.spec import CrawlSpec
from crawler.admission import Admitter
from crawler.frontier import Frontier, Lease, Outcome, SettleOp, SettleResult
from crawler.revisit import Change, RevisitPolicy
from tests.helpers import FakeClock, assert_balanced, make_frontier

FAST = {"rate": 1000.0, "burst": 100, "per_domain_inflight": 50}


def _keep(lease: Lease, interval_ms: int, text_hash: str = "h0") -> SettleOp:
    payload = encode_url_entry(
        UrlEntry(u=lease.url, d=lease.depth, r=Revisit(h=text_hash, e='"e1"', i=interval_ms))
    )
    return SettleOp.ack(
        lease.fp, Outcome.DONE, attempt=lease.attempt, revisit_ms=interval_ms, revisit=payload
    )


async def _crawl(
    store: Redis, keys: CrawlKeys, urls: list[str], interval_ms: int = 0, **spec: object
) -> tuple[Frontier, Admitter, FakeClock]:
    """A crawl whose ``urls`` were all visited once and kept for revisits."""
    clock = FakeClock()
    frontier, admitter = await make_frontier(store, keys, CrawlSpec(**{**FAST, **spec}), clock)  # type: ignore[arg-type]
    await admitter.admit(urls, depth=0)
    leases = (await frontier.claim("w", len(urls))).leases
    assert len(leases) == len(urls)
    results = await frontier.settle("w", [_keep(lease, interval_ms) for lease in leases])
    assert set(results) == {SettleResult.SETTLED}
    return frontier, admitter, clock


async def test_a_kept_url_sleeps_until_its_interval_has_passed(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    frontier, _, clock = await _crawl(store, crawl_keys, ["http://a.test/1"], interval_ms=5000)
    stats = await frontier.stats()
    assert (stats.revisit_known, stats.asleep, stats.due_now, stats.pending) == (1, 1, 0, 0)
    claim = await frontier.claim("w", 10)
    assert claim.leases == []
    assert claim.wait_s == pytest.approx(5.0, abs=0.01)  # claims sleep until the revisit
    clock.advance(5000)
    (lease,) = (await frontier.claim("w", 10)).leases
    assert lease.url == "http://a.test/1"
    assert lease.attempt == 1  # fresh attempts
    assert lease.entry.r == Revisit(h="h0", e='"e1"', i=5000)  # what the last visit found
    stats = await frontier.stats()
    assert (stats.admitted, stats.count("revisits"), stats.in_flight) == (2, 1, 1)
    assert_balanced(stats)


async def test_a_new_pass_wakes_every_url_once_and_can_be_repeated(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    urls = [f"http://d{i % 3}.test/{i}" for i in range(30)]
    frontier, _, clock = await _crawl(store, crawl_keys, urls)
    assert (await frontier.claim("w", 100)).leases == []  # no schedule: they wait for a pass
    assert await frontier.pass_no() == 1
    clock.advance(1000)
    assert await frontier.next_pass() == 2
    assert await frontier.wake() == 30
    clock.advance(1000)
    leases = (await frontier.claim("w", 10)).leases
    assert {lease.pass_no for lease in leases} == {2}
    await frontier.settle("w", [_keep(lease, 0) for lease in leases])
    clock.advance(1000)
    assert await frontier.wake() == 0  # repeated (a crash in the wake-up): nobody twice
    stats = await frontier.stats()
    assert (stats.pending, stats.asleep, stats.count("revisits")) == (20, 10, 30)
    assert_balanced(stats)


async def test_sitemap_lastmod_wakes_modified_pages_and_holds_the_others(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    old, new = "http://a.test/old", "http://a.test/new"
    frontier, admitter, clock = await _crawl(store, crawl_keys, [old, new])
    visited_s = clock() / 1000
    clock.advance(60_000)
    await frontier.next_pass()
    report = await admitter.admit(
        [old, new], depth=0, lastmod={old: visited_s - 30, new: visited_s + 30}
    )
    assert report.admitted == []  # both known
    assert await frontier.wake() == 1  # the modified one; the other sleeps through the pass
    (lease,) = (await frontier.claim("w", 10)).leases
    assert lease.url == new
    stats = await frontier.stats()
    assert (stats.count("sitemap_modified"), stats.count("sitemap_unmodified")) == (1, 1)
    assert stats.asleep == 1


async def test_gone_pages_are_forgotten_and_dead_letters_sleep_again(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    urls = ["http://a.test/gone", "http://a.test/down"]
    frontier, _, clock = await _crawl(store, crawl_keys, urls, interval_ms=1000, max_attempts=1)
    clock.advance(1000)
    down, gone = sorted((await frontier.claim("w", 10)).leases, key=lambda lease: lease.url)
    ops = [
        SettleOp.ack(gone.fp, Outcome.FAILED, Change.GONE, revisit_ms=REVISIT_FORGET),
        SettleOp.retry(down.fp, "http_503"),  # its last attempt: a dead letter
    ]
    assert await frontier.settle("w", ops) == [SettleResult.SETTLED, SettleResult.DEAD]
    stats = await frontier.stats()
    assert (stats.revisit_known, stats.asleep) == (1, 1)  # the site's outage is not the end
    clock.advance(1000)
    (lease,) = (await frontier.claim("w", 10)).leases
    assert lease.url == "http://a.test/down"
    assert_balanced(await frontier.stats())


async def test_max_pages_counts_pages_not_revisits(store: Redis, crawl_keys: CrawlKeys) -> None:
    frontier, admitter, clock = await _crawl(
        store, crawl_keys, ["http://a.test/1"], interval_ms=1000, max_pages=2
    )
    clock.advance(1000)
    assert len((await frontier.claim("w", 10)).leases) == 1  # a revisit: admitted again
    report = await admitter.admit(["http://a.test/2", "http://a.test/3"], depth=1)
    assert len(report.admitted) == 1  # one more page, not zero


def test_the_interval_halves_on_change_and_doubles_when_unchanged_within_bounds() -> None:
    spec = CrawlSpec(revisit_after_s=60, revisit_min_s=20, revisit_max_s=200)
    assert spec.next_interval_ms(None, changed=True) == 60_000  # a new page
    assert spec.next_interval_ms(60_000, changed=True) == 30_000
    assert spec.next_interval_ms(30_000, changed=True) == 20_000  # the minimum
    assert spec.next_interval_ms(60_000, changed=False) == 120_000
    assert spec.next_interval_ms(120_000, changed=False) == 200_000  # the maximum
    assert CrawlSpec().next_interval_ms(60_000, changed=True) == 0  # no schedule: passes only
    assert CrawlSpec(revisit_after_s=8).revisit_bounds_ms == (2000, 128_000)
    with pytest.raises(ConfigError, match="revisit min must be <= revisit max"):
        CrawlSpec(revisit_after_s=8, revisit_min_s=10, revisit_max_s=5)
    with pytest.raises(ConfigError, match="need --revisit-after"):
        CrawlSpec(revisit_min_s=10)


def test_a_revisit_keeps_the_validators_it_was_not_sent_again() -> None:
    policy = RevisitPolicy(CrawlSpec(revisit_after_s=10))
    first = UrlEntry(u="http://a.test/", r=Revisit(h="abc", e='"v1"', m="Mon", i=10_000))
    assert RevisitPolicy.judge(first, "abc") is Change.UNCHANGED
    assert RevisitPolicy.judge(first, "xyz") is Change.CHANGED
    assert RevisitPolicy.judge(UrlEntry(u="http://a.test/"), "abc") is Change.NEW
    assert RevisitPolicy.judge(first, "", not_modified=True) is Change.UNCHANGED
    interval, payload = policy.keep(
        first, Change.UNCHANGED, text_hash="", etag=None, last_modified=None
    )
    assert interval == 20_000
    assert '"h":"abc"' in payload
    assert '"e":"\\"v1\\""' in payload
    assert RevisitPolicy.gone(first, 410)
    assert not RevisitPolicy.gone(UrlEntry(u="http://a.test/"), 404)  # a first visit just fails
