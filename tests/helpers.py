"""Frontier helpers shared by tests: an explicit clock, a frontier with its admitter."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.spec import CrawlSpec
from crawler.admission import Admitter
from crawler.frontier import Frontier, FrontierStats


@dataclass
class FakeClock:
    """Explicit time in ms for frontier scripts: tests decide when time passes."""

    now: int = 1_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


async def make_frontier(
    redis: Redis, keys: CrawlKeys, spec: CrawlSpec, clock: FakeClock | None = None
) -> tuple[Frontier, Admitter]:
    frontier = Frontier(redis, keys, clock=clock)
    await frontier.init(spec)
    return frontier, Admitter(frontier, spec)


def assert_balanced(stats: FrontierStats) -> None:
    assert stats.admitted == stats.done + stats.failed + stats.skipped + stats.pending, stats
