"""Concurrency and rate limits for LLM calls.

``SharedRateLimiter``: requests/minute and tokens/minute buckets in Redis, shared by every
summarizer process, so the provider sees the configured limits whatever the number of
processes; each request reserves its own send time in one script call, and a 429 pauses all
of them. ``AdaptiveLimit``: a per-process concurrency limit inside the configured bound, opened
by a slow start until the first sign of congestion, then grown additively while calls are
healthy and cut multiplicatively on 429s, timeouts or rising latency (AIMD).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable

from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner

__all__ = ["AdaptiveLimit", "SharedRateLimiter"]


class SharedRateLimiter:
    """Request and token buckets shared through Redis, by reservation (GCRA).

    ``acquire`` makes one script call that books the earliest send time both buckets allow
    (and no pause holds), charged as if the request were sent then, and sleeps until it: no
    polling, so the provider's limit is met to the interval, and concurrent waiters, in this
    process or others, get distinct, properly spaced slots because the script is atomic.

    The reservation horizon is not bounded: waiters reserve only when they are about to call,
    so the horizon is the queue in front of them (256 waiters at 50/s book up to ~5 s ahead),
    the same time they would wait anyway. A waiter cancelled while asleep (shutdown) wastes its
    slot: the limit is then underused for that one interval, never exceeded.

    ``clock`` (ms) replaces both the Redis server's clock and this process's own (for pause
    deadlines), and ``sleep`` replaces ``asyncio.sleep``: tests use them to make time explicit.
    """

    def __init__(
        self,
        scripts: ScriptRunner,
        keys: CrawlKeys,
        rpm: int,
        tpm: int,
        *,
        clock: Callable[[], int] | None = None,
        on_wait: Callable[[], None] | None = None,
        window_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._scripts = CrawlScripts(scripts, keys, clock)
        self.rpm = rpm
        self.tpm = tpm
        # A bucket refilled at r/minute with burst b lets b + r*W/60 through in any window of
        # W seconds. The provider allows limit*W/60 per window (W = 60 s for most APIs): so the
        # burst is a sixtieth of that and the refill the rest, and no window of the provider's
        # can exceed the configured limit.
        self._rburst, self._rrate = _bucket(rpm, window_s)
        self._tburst, self._trate = _bucket(tpm, window_s)
        self._on_wait = on_wait
        self._local_ms: Callable[[], float] = clock or _monotonic_ms
        self._sleep = sleep or asyncio.sleep
        # The latest pause deadline this process knows of (its own pause() calls), in local ms.
        self._paused_until = -math.inf

    @property
    def enabled(self) -> bool:
        return self.rpm > 0 or self.tpm > 0

    async def _run(self, *args: str | int) -> int:
        return int(str(await self._scripts("llm_acquire", args)))

    async def reserve(self, tokens: int) -> float:
        """Book the next send time for one request of ``tokens``; the seconds until it."""
        if not self.enabled:
            return 0.0
        wait_ms = await self._run(
            "reserve", tokens, self._rrate, self._trate, self._rburst, self._tburst
        )
        return wait_ms / 1000

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` estimated tokens may be sent."""
        if not self.enabled:
            return
        waited = False
        while True:
            wait = await self.reserve(tokens)
            slot = self._local_ms() + wait * 1000
            if wait > 0:
                if not waited and self._on_wait is not None:
                    self._on_wait()
                waited = True
                await self._sleep(wait)
            # A 429 that this process saw after booking (another of its calls' pause()) may
            # cover the slot: book again, after the pause (the script knows of it by now). A
            # pause set by another process is not known here; its slots booked before it go.
            if self._paused_until <= slot:
                return

    async def correct(self, estimated: int, actual: int) -> None:
        """Settle a request's token cost once its ``usage`` is known.

        Slots already booked stay where they are: a request that used more than estimated is
        paid for by the requests booked after the correction.
        """
        if self.tpm > 0 and actual != estimated:
            await self._run("adjust", estimated - actual, self._trate)

    async def pause(self, seconds: float) -> None:
        """Hold every process back (the provider said 429 with this Retry-After)."""
        if not self.enabled:
            return
        # Known locally before the script runs, so a booking whose reply races with this call
        # is re-checked, and one made after it (at or after the shared deadline) is not.
        ms = math.ceil(seconds * 1000)
        self._paused_until = max(self._paused_until, self._local_ms() + ms)
        await self._run("pause", ms)


def _monotonic_ms() -> float:
    return time.monotonic() * 1000


def _bucket(limit_per_min: int, window_s: float) -> tuple[int, int]:
    """(burst, refill per minute) for a provider limit counted in windows of ``window_s``."""
    if limit_per_min <= 0:
        return 1, 0
    per_window = limit_per_min * window_s / 60
    burst = max(1, int(per_window / 60))
    rate = max(1, int((per_window - burst) * 60 / window_s))
    return burst, rate


class AdaptiveLimit:
    """An adjustable concurrency limit; ``async with limit:`` holds one slot.

    Like TCP's congestion window: a slow start grows the limit by one per successful call
    (doubling it every round trip) until the first congestion signal; from then on it grows
    additively, by about four slots per round trip, and every congestion signal (at most one a
    second) cuts it to 0.7 of itself.
    """

    def __init__(self, maximum: int, *, initial: int | None = None, minimum: int = 1) -> None:
        self.maximum = maximum
        self.minimum = minimum
        # Start at half the bound: the slow start reaches the bound within one round trip,
        # and a congested API cuts it within a second anyway.
        self.limit = float(initial or max(minimum, maximum // 2))
        self._active = 0
        # Waiters in arrival order; a freed slot is handed to the first one directly. (A
        # Condition with notify_all woke every waiter per released slot, and the one that could
        # go was often the last to get the lock: a slot sat idle for a dozen loop turns.)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._baseline_s: float | None = None
        self._last_cut = -math.inf
        self._slow_start = True

    @property
    def active(self) -> int:
        return self._active

    async def __aenter__(self) -> AdaptiveLimit:
        if not self._waiters and self._active < int(self.limit):
            self._active += 1
            return self
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake counted the slot as ours before resolving this
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot, then cancelled
                self._release()
            else:
                self._waiters.remove(waiter)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        self._active -= 1
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the waiters, first come first served."""
        while self._waiters and self._active < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                waiter.set_result(None)

    def on_success(self, latency_s: float) -> None:
        if self._baseline_s is None or latency_s < self._baseline_s:
            self._baseline_s = latency_s
        else:  # let the baseline drift up slowly, so a permanently slower API is accepted
            self._baseline_s += (latency_s - self._baseline_s) * 0.01
        if latency_s > 3 * self._baseline_s + 0.05:
            self.on_congestion()
            return
        self._grow(1.0 if self._slow_start else 4.0 / max(1.0, self.limit))

    def on_congestion(self) -> None:
        """429, timeout or latency well above the baseline: cut, at most once per second.

        The first signal also ends the slow start for good: from then on the limit probes
        upwards additively, so it stays near the level the API can take.
        """
        self._slow_start = False
        now = asyncio.get_running_loop().time()
        if now - self._last_cut < 1.0:
            return
        self._last_cut = now
        self.limit = max(float(self.minimum), self.limit * 0.7)

    def _grow(self, step: float) -> None:
        self.limit = min(float(self.maximum), self.limit + step)
        self._wake()
