"""Helpers shared by tests: an explicit clock, a frontier with its admitter, an LLM engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.scripts import ScriptRunner
from common.settings import LLMSettings
from common.spec import CrawlSpec
from crawler.admission import Admitter
from crawler.frontier import Frontier, FrontierStats
from summarizer.client import OpenAIEngine, open_client
from summarizer.limiter import AdaptiveLimit, SharedRateLimiter

MOCK_KEY = "sk-test-key"
"""The API key the in-process mock LLM of the ``mock`` fixture (conftest) takes."""


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


@contextlib.asynccontextmanager
async def llm_engine(
    redis: Redis, keys: CrawlKeys, base_url: str, key: str, *, concurrency: int, **llm: Any
) -> AsyncIterator[tuple[LLMSettings, OpenAIEngine]]:
    """The summarizer's engine in this process, calling ``base_url`` with ``key`` and the LLM
    settings ``llm``; unlimited shared buckets (on ``redis``), at most ``concurrency`` calls,
    nothing observed. Closed on exit."""
    settings = LLMSettings(base_url=base_url, api_key=SecretStr(key), **llm)
    rate = SharedRateLimiter(ScriptRunner(redis), keys, 0, 0)
    engine = OpenAIEngine(
        open_client(settings, key), settings, rate, AdaptiveLimit(concurrency), lambda *_: None
    )
    try:
        yield settings, engine
    finally:
        await engine.aclose()
