"""Concurrency and rate limits for LLM calls.

``SharedRateLimiter``: requests/minute and tokens/minute buckets in Redis, shared by every
summarizer process, so the provider sees the configured limits whatever the number of
processes; a 429 pauses all of them. ``AdaptiveLimit``: a per-process concurrency limit inside
the configured bound, grown additively while calls are healthy and cut multiplicatively on 429s,
timeouts or rising latency (AIMD).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner

__all__ = ["AdaptiveLimit", "SharedRateLimiter"]


class SharedRateLimiter:
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
        # One waiter per process polls Redis; the others queue behind it in order (asyncio.Lock
        # is FIFO). Without it, every waiter wakes at each refill and all but one poll in vain.
        self._gate = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.rpm > 0 or self.tpm > 0

    async def _run(self, *args: str | int) -> int:
        return int(str(await self._scripts("llm_acquire", args)))

    async def try_take(self, tokens: int) -> float:
        """Take one request and ``tokens`` if the buckets allow; else the seconds to wait."""
        wait_ms = await self._run(
            "take", tokens, self._rrate, self._trate, self._rburst, self._tburst
        )
        return wait_ms / 1000

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` estimated tokens may be sent."""
        if not self.enabled:
            return
        async with self._gate:
            while (wait := await self.try_take(tokens)) > 0:
                if self._on_wait is not None:
                    self._on_wait()
                # a little jitter spreads the processes' head waiters (one per process, thanks
                # to the gate) over the next token's interval without slowing the refill down
                await asyncio.sleep(wait + random.uniform(0, min(wait * 0.1, 0.01)))

    async def correct(self, estimated: int, actual: int) -> None:
        """Settle a request's token cost once its ``usage`` is known."""
        if self.tpm > 0 and actual != estimated:
            await self._run("adjust", estimated - actual)

    async def pause(self, seconds: float) -> None:
        """Hold every process back (the provider said 429 with this Retry-After)."""
        await self._run("pause", int(seconds * 1000))


def _bucket(limit_per_min: int, window_s: float) -> tuple[int, int]:
    """(burst, refill per minute) for a provider limit counted in windows of ``window_s``."""
    if limit_per_min <= 0:
        return 1, 0
    per_window = limit_per_min * window_s / 60
    burst = max(1, int(per_window / 60))
    rate = max(1, int((per_window - burst) * 60 / window_s))
    return burst, rate


class AdaptiveLimit:
    """An adjustable concurrency limit with AIMD; ``async with limit:`` holds one slot."""

    def __init__(self, maximum: int, *, initial: int | None = None, minimum: int = 1) -> None:
        self.maximum = maximum
        self.minimum = minimum
        # Start at half the bound: a slow start from a handful wastes the first seconds of
        # every run, and a congested API cuts it within a second anyway.
        self.limit = float(initial or max(minimum, maximum // 2))
        self._active = 0
        self._cond = asyncio.Condition()
        self._baseline_s: float | None = None
        self._last_cut = 0.0

    @property
    def active(self) -> int:
        return self._active

    async def __aenter__(self) -> AdaptiveLimit:
        async with self._cond:
            await self._cond.wait_for(lambda: self._active < int(self.limit))
            self._active += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def on_success(self, latency_s: float) -> None:
        if self._baseline_s is None or latency_s < self._baseline_s:
            self._baseline_s = latency_s
        else:  # let the baseline drift up slowly, so a permanently slower API is accepted
            self._baseline_s += (latency_s - self._baseline_s) * 0.01
        if latency_s > 3 * self._baseline_s + 0.05:
            self.on_congestion()
            return
        self._grow(4.0 / max(1.0, self.limit))

    def on_congestion(self) -> None:
        """429, timeout or latency well above the baseline: cut, at most once per second."""
        now = asyncio.get_running_loop().time()
        if now - self._last_cut < 1.0:
            return
        self._last_cut = now
        self.limit = max(float(self.minimum), self.limit * 0.7)

    def _grow(self, step: float) -> None:
        # Waiters re-check the limit whenever a slot is released, which is when it matters.
        self.limit = min(float(self.maximum), self.limit + step)
