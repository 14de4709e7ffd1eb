"""The summarizer's pure parts: shared buckets (both stores), AIMD limit, budget, cost, profiles."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.docsqueue import DocOp, DocResult, DocsQueue
from common.errors import ConfigError
from common.keys import CrawlKeys
from common.scripts import ScriptRunner
from common.settings import LLMSettings
from summarizer.budget import token_counter
from summarizer.cache import SummaryCache
from summarizer.cost import cost_usd
from summarizer.limiter import AdaptiveLimit, SharedRateLimiter
from summarizer.profiles import Profiles
from tests.helpers import FakeClock, feed_docs, make_docs


def _limiter(store: Redis, keys: CrawlKeys, clock: FakeClock, rpm: int, tpm: int = 0
             ) -> SharedRateLimiter:
    return SharedRateLimiter(ScriptRunner(store), keys, rpm, tpm, clock=clock)


async def test_request_bucket_holds_the_limit_in_every_minute(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    a = _limiter(store, crawl_keys, clock, rpm=120)
    b = _limiter(store, crawl_keys, clock, rpm=120)  # a second process: same buckets
    sent = 0
    for _ in range(60 * 20):  # one minute in 50 ms steps, both "processes" asking
        for limiter in (a, b):
            while await limiter.try_take(10) == 0:
                sent += 1
        clock.advance(50)
    assert 115 <= sent <= 120  # burst 2 + 118 per minute, shared by both


async def test_a_one_second_window_is_never_exceeded(store: Redis, crawl_keys: CrawlKeys) -> None:
    """A provider counting 600 rpm per second (10 in any 1 s): told so, the bucket (burst 1,
    refill 9/s) keeps every sliding second at or under 10 and sends about 9/s."""
    clock = FakeClock()
    limiter = SharedRateLimiter(ScriptRunner(store), crawl_keys, 600, 0, clock=clock,
                                window_s=1)
    sent_at: list[int] = []
    for step in range(10 * 100):  # ten seconds in 10 ms steps
        while await limiter.try_take(1) == 0:
            sent_at.append(step * 10)
        clock.advance(10)
    worst = max(sum(1 for t in sent_at if s <= t < s + 1000) for s in range(0, 9000, 10))
    assert worst <= 10
    assert len(sent_at) >= 80  # 1 + 9/s, less the 10 ms steps of this clock


async def test_token_bucket_and_corrections(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    limiter = _limiter(store, crawl_keys, clock, rpm=0, tpm=6000)  # burst 100, 98/s refill
    assert await limiter.try_take(80) == 0
    wait = await limiter.try_take(80)
    assert wait == pytest.approx(60 / 5900 * 60, abs=0.02)  # 60 tokens short at 5900/min
    await limiter.correct(estimated=80, actual=20)  # the call used fewer: give 60 back
    assert await limiter.try_take(80) == 0


async def test_a_request_larger_than_the_burst_goes_when_the_bucket_is_full(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    limiter = _limiter(store, crawl_keys, clock, rpm=0, tpm=600)  # burst 10
    assert await limiter.try_take(500) == 0  # never starves...
    assert await limiter.try_take(5) > 40  # ...but the debt is paid before anything else


async def test_pause_holds_everyone(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    a = _limiter(store, crawl_keys, clock, rpm=600)
    b = _limiter(store, crawl_keys, clock, rpm=600)
    await a.pause(5)
    assert await b.try_take(1) == pytest.approx(5.0)
    clock.advance(5000)
    assert await b.try_take(1) == 0


async def test_adaptive_limit_cuts_on_congestion_and_recovers() -> None:
    limit = AdaptiveLimit(64, initial=32)
    for _ in range(50):
        limit.on_success(0.2)
    grown = limit.limit
    assert grown > 32
    limit.on_congestion()
    assert limit.limit == pytest.approx(grown * 0.7)
    limit.on_congestion()  # a burst of 429s within a second cuts once
    assert limit.limit == pytest.approx(grown * 0.7)
    limit.on_success(5.0)  # latency far above the baseline counts as congestion...
    assert limit.limit == pytest.approx(grown * 0.7)  # ...but not twice in one second
    for _ in range(500):
        limit.on_success(0.2)
    assert limit.limit == 64


async def test_adaptive_limit_bounds_concurrency() -> None:
    limit = AdaptiveLimit(64, initial=3)
    active = peak = 0

    async def job() -> None:
        nonlocal active, peak
        async with limit:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    await asyncio.gather(*(job() for _ in range(30)))
    assert peak == 3


def test_truncation_keeps_the_beginning_on_a_word_boundary() -> None:
    counter = token_counter("no-such-model")
    text = " ".join(f"w{i}" for i in range(5000))
    cut, was_cut = counter.truncate(text, 100)
    assert was_cut
    assert text.startswith(cut)
    assert counter.count(cut) <= 100
    assert not cut.endswith(" ")
    assert counter.truncate("short", 100) == ("short", False)


def test_cost_uses_the_price_table_and_model_families() -> None:
    prices = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.5, 10.0)}
    assert cost_usd(prices, "gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert cost_usd(prices, "gpt-4o-mini-2024-07-18", 0, 1_000_000) == pytest.approx(0.60)
    assert cost_usd(prices, "gpt-4o-2024-08-06", 1000, 1000) == pytest.approx(0.0125)
    assert cost_usd(prices, "llama-3", 1000, 1000) == 0.0


def test_profiles_match_hosts_in_order(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps([
        {"match": "*.example.org", "model": "big", "max_tokens": 400},
        {"match": "news.*", "prompt": "News: {title}\n{text}"},
    ]))
    profiles = Profiles.from_settings(LLMSettings(model="small", profiles_file=str(path)))
    assert profiles.for_host("docs.example.org").model == "big"
    assert profiles.for_host("docs.example.org").max_tokens == 400
    assert profiles.for_host("news.site.com").prompt.startswith("News:")
    assert profiles.for_host("news.site.com").model == "small"
    assert profiles.for_host("other.com") is profiles.default


@pytest.mark.parametrize(
    ("content", "message"),
    [("{}", "expected a JSON list"), ('[{"model": "x"}]', "'match' string"),
     ('[{"match": "*", "colour": 1}]', "unknown field"),
     ('[{"match": "*", "prompt": "no text slot"}]', "must contain {text}"),
     ('[{"match": "*", "prompt": "{text} {oops}"}]', "bad prompt template"),
     ("not json", "cannot read profiles file")],
)
def test_bad_profiles_are_config_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Profiles.from_settings(LLMSettings(profiles_file=str(path)))


async def test_a_late_answer_for_a_reaped_doc_attempt_is_stale(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    queue = DocsQueue(store, crawl_keys, clock=clock)
    await feed_docs(store, crawl_keys, make_docs(1))
    [first] = await queue.claim("w", 1, lease_s=5)
    clock.advance(5_000)
    assert await queue.reap() == (1, 0)
    [second] = await queue.claim("w", 1, lease_s=5)
    assert second.attempt == 2
    late = DocOp("summarized", first.fp, attempt=first.attempt)
    assert await queue.settle("w", [late]) == [DocResult.STALE]
    current = DocOp("summarized", second.fp, attempt=second.attempt)
    assert await queue.settle("w", [current]) == [DocResult.SETTLED]
    stats = await queue.stats()
    assert (stats.summarized, stats.pending, stats.balanced) == (1, 0, True)


async def test_single_flight_across_two_caches_computes_once(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """Two caches on one store (as two processes would be): one computes, the other waits for
    its summary; the lock is gone afterwards and a later lookup is a hit."""
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        return "the summary"

    first, second = SummaryCache(store, crawl_keys), SummaryCache(store, crawl_keys)
    results = await asyncio.gather(first.single_flight("k1", compute),
                                   second.single_flight("k1", compute))
    assert calls == 1
    assert sorted(results) == [("the summary", False), ("the summary", True)]
    assert not await store.exists(crawl_keys.summary_lock("k1"))
    assert await second.single_flight("k1", compute) == ("the summary", True)


async def test_a_failed_computation_releases_the_lock(store: Redis, crawl_keys: CrawlKeys) -> None:
    async def broken() -> str:
        raise RuntimeError("API down")

    cache = SummaryCache(store, crawl_keys)
    with pytest.raises(RuntimeError):
        await cache.single_flight("k2", broken)
    assert not await store.exists(crawl_keys.summary_lock("k2"))
    assert await cache.get("k2") is None
