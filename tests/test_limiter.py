"""The LLM limits: shared reservation buckets (both stores, explicit time) and the AIMD limit."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

import pytest
from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.scripts import ScriptRunner
from summarizer.limiter import AdaptiveLimit, SharedRateLimiter
from tests.helpers import FakeClock

# Epoch ms, as the Redis server's clock gives: stored times need all their digits (see the script).
EPOCH_MS = 1_712_345_678_901


def _limiter(
    store: Redis,
    keys: CrawlKeys,
    clock: FakeClock,
    rpm: int,
    tpm: int = 0,
    window_s: float = 60.0,
    **hooks: Any,
) -> SharedRateLimiter:
    """A limiter on ``clock``; ``hooks``: its ``sleep`` and ``on_wait``."""
    return SharedRateLimiter(
        ScriptRunner(store), keys, rpm, tpm, clock=clock, window_s=window_s, **hooks
    )


async def _send_at_slots(
    limiters: list[SharedRateLimiter], clock: FakeClock, waiters: int, span_ms: int
) -> list[int]:
    """Simulate ``waiters`` callers per limiter, each booking its next request as soon as it has
    sent the previous one, and sending exactly at the booked time; the send times in ms (those
    before ``span_ms`` from the start)."""
    end = clock.now + span_ms
    callers = [lim for lim in limiters for _ in range(waiters)]
    ready = [(clock.now, i) for i in range(len(callers))]  # (next booking time, caller)
    sent: list[int] = []
    while True:
        at, i = heapq.heappop(ready)
        clock.now = at  # the heap's order keeps the clock monotonic
        slot = at + round(await callers[i].reserve(1) * 1000)
        if slot >= end:
            return sent
        sent.append(slot)
        heapq.heappush(ready, (slot, i))


def _busiest(stamps: list[int], window_ms: int) -> int:
    """The most stamps in any half-open window ``[s, s + window_ms)``."""
    stamps = sorted(stamps)
    first = 0
    most = 0
    for last, t in enumerate(stamps):
        while stamps[first] <= t - window_ms:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_a_one_second_window_is_met_to_the_interval(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """50/s counted per second (burst 1, refill 49/s): two processes with 8 callers each
    never put 51 in any sliding second, and send at least 95% of 50/s."""
    clock = FakeClock(EPOCH_MS)
    limiters = [_limiter(store, crawl_keys, clock, 3000, window_s=1) for _ in range(2)]
    sent = await _send_at_slots(limiters, clock, waiters=8, span_ms=10_000)
    assert _busiest(sent, 1000) <= 50
    assert len(sent) >= 0.95 * 50 * 10


async def test_a_sixty_second_window_is_never_exceeded(store: Redis, crawl_keys: CrawlKeys) -> None:
    """600 rpm counted per minute (burst 10, refill 590/min) over two and a half minutes."""
    clock = FakeClock(EPOCH_MS)
    limiters = [_limiter(store, crawl_keys, clock, 600) for _ in range(2)]
    sent = await _send_at_slots(limiters, clock, waiters=4, span_ms=150_000)
    assert _busiest(sent, 60_000) <= 600
    assert len(sent) >= 0.95 * 600 * 2.5


async def test_two_processes_share_the_budget(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    a = _limiter(store, crawl_keys, clock, rpm=120)  # burst 2, one more every 60/118 s
    b = _limiter(store, crawl_keys, clock, rpm=120)  # a second process: the same buckets
    interval = 60 / 118
    assert await a.reserve(1) == 0
    assert await b.reserve(1) == 0
    assert await a.reserve(1) == pytest.approx(interval, abs=0.001)
    assert await b.reserve(1) == pytest.approx(2 * interval, abs=0.001)
    other = _limiter(store, CrawlKeys(crawl_keys.crawl + "-other"), clock, rpm=120)
    assert await other.reserve(1) == 0  # another crawl's buckets are its own


async def test_token_bucket_and_corrections(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    limiter = _limiter(store, crawl_keys, clock, rpm=0, tpm=6000)  # burst 100, 5900/min
    per_token = 60 / 5900
    assert await limiter.reserve(80) == 0
    await limiter.correct(estimated=80, actual=20)  # the call used fewer: 60 back, 80 left
    assert await limiter.reserve(80) == 0  # 0.61 s later without the correction
    await limiter.correct(estimated=80, actual=140)  # it used more: 60 in debt
    assert await limiter.reserve(10) == pytest.approx(70 * per_token, abs=0.001)
    assert await limiter.reserve(10) == pytest.approx(80 * per_token, abs=0.001)


async def test_a_request_larger_than_the_burst_goes_when_the_bucket_is_full(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    limiter = _limiter(store, crawl_keys, clock, rpm=0, tpm=600)  # burst 10, 590/min
    per_token = 60 / 590
    assert await limiter.reserve(5) == 0
    # never starves, but waits for the whole burst: the 5 tokens taken come back first
    assert await limiter.reserve(500) == pytest.approx(5 * per_token, abs=0.001)
    # and the debt is paid before anything else goes
    assert await limiter.reserve(5) == pytest.approx(500 * per_token, abs=0.001)


async def test_pause_holds_everyone(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    a = _limiter(store, crawl_keys, clock, rpm=600)
    b = _limiter(store, crawl_keys, clock, rpm=600)
    await a.pause(5)
    clock.advance(1000)
    for _ in range(10):  # the burst, at the pause's end, not now
        assert await b.reserve(1) == pytest.approx(4.0)
    # then the refill, counted from the pause's end (the slots inside the pause never existed)
    assert await b.reserve(1) == pytest.approx(4.0 + 60 / 590, abs=0.001)
    clock.advance(4000 + 2000)
    assert await b.reserve(1) == 0


async def test_a_pause_learned_while_asleep_books_again(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """A slot booked before this process saw a 429 is not sent into the pause: it books again,
    after the pause, and the wait is counted once."""
    clock = FakeClock()
    naps: list[float] = []
    waits: list[None] = []
    limiter: SharedRateLimiter

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:  # meanwhile another call of this process gets a 429
            await limiter.pause(3)
        clock.advance(round(seconds * 1000))

    limiter = _limiter(
        store, crawl_keys, clock, 600, sleep=sleep, on_wait=lambda: waits.append(None)
    )
    for _ in range(10):  # the burst
        await limiter.acquire(1)
    start = clock.now
    await limiter.acquire(1)
    assert naps[0] == pytest.approx(60 / 590, abs=0.001)  # its slot, inside the pause...
    assert clock.now >= start + 3000  # ...was not used: it went after the pause
    assert len(naps) == 2
    assert len(waits) == 1


async def test_acquire_sleeps_once_and_counts_waits(store: Redis, crawl_keys: CrawlKeys) -> None:
    clock = FakeClock()
    naps: list[float] = []
    waits: list[None] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.advance(round(seconds * 1000))

    limiter = _limiter(
        store, crawl_keys, clock, 120, sleep=sleep, on_wait=lambda: waits.append(None)
    )
    for _ in range(4):
        await limiter.acquire(1)
    assert len(naps) == len(waits) == 2  # the burst (2) went at once, then one nap per call
    assert naps == pytest.approx([60 / 118] * 2, abs=0.001)


class _CountingRunner(ScriptRunner):
    """Counts the script calls it runs."""

    calls = 0

    async def run(self, name: str, keys: list[str], args: list[str | int | float]) -> Any:
        self.calls += 1
        return await super().run(name, keys, args)


async def test_unlimited_makes_no_script_call(store: Redis, crawl_keys: CrawlKeys) -> None:
    runner = _CountingRunner(store)
    limiter = SharedRateLimiter(runner, crawl_keys, 0, 0)
    assert not limiter.enabled
    await limiter.acquire(10_000)
    await limiter.correct(estimated=10, actual=20)
    await limiter.pause(5)
    assert await limiter.reserve(10) == 0
    assert runner.calls == 0
    await SharedRateLimiter(runner, crawl_keys, 0, 6000).acquire(1)  # the control
    assert runner.calls == 1


async def test_adaptive_limit_cuts_on_congestion_and_recovers() -> None:
    limit = AdaptiveLimit(64, initial=16)
    for _ in range(10):
        limit.on_success(0.2)
    grown = limit.limit
    assert grown == 26  # slow start: one per success
    limit.on_congestion()
    assert limit.limit == pytest.approx(grown * 0.7)
    limit.on_congestion()  # a burst of 429s within a second cuts once
    assert limit.limit == pytest.approx(grown * 0.7)
    limit.on_success(5.0)  # latency far above the baseline counts as congestion...
    assert limit.limit == pytest.approx(grown * 0.7)  # ...but not twice in one second
    for _ in range(500):
        limit.on_success(0.2)
    assert limit.limit == 64


async def test_adaptive_limit_slow_start_then_additive_increase() -> None:
    limit = AdaptiveLimit(64, initial=8)
    for n in range(1, 61):
        limit.on_success(0.2)
        assert limit.limit == min(64, 8 + n)  # doubling every round trip, up to the bound
    limit.on_congestion()
    assert limit.limit == pytest.approx(64 * 0.7)
    for _ in range(10):  # additive now: about 4/limit per success, not 1
        before = limit.limit
        limit.on_success(0.2)
        assert limit.limit == pytest.approx(before + 4 / before)
    assert limit.limit < 64 * 0.7 + 1


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


async def test_adaptive_limit_hands_slots_over_in_order_and_survives_cancellation() -> None:
    limit = AdaptiveLimit(8, initial=2)
    order: list[int] = []
    release = asyncio.Event()

    async def job(n: int) -> None:
        async with limit:
            order.append(n)
            await release.wait()

    holders = [asyncio.create_task(job(n)) for n in range(2)]
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(job(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    assert order == [0, 1]
    assert limit.active == 2
    waiting[0].cancel()  # a waiter cancelled before its turn takes no slot with it
    await asyncio.sleep(0)
    limit.on_success(0.2)  # the slow start raises the limit to 3: the next waiter goes now
    await asyncio.sleep(0)
    assert order == [0, 1, 3]
    assert limit.active == 3
    release.set()
    await asyncio.gather(*holders, *waiting[1:])
    assert order == [0, 1, 3, 4, 5]  # first come, first served
    assert limit.active == 0
