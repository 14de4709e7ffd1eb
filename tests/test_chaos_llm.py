"""Chaos: the LLM API misbehaves. Real `distcrawl summarize` processes, the mock as a process.

Every doc ends summarized or failed with a reason; the worker never crashes; once the trouble
stops, docs are summarized again; under a 429 storm the adaptive limit falls, and it climbs back
when the storm passes.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from common.docsqueue import DocsQueue
from common.keys import CrawlKeys
from distcrawl.redis_server import RedisServer, free_port
from distcrawl.sample_docs import feed_docs, make_docs
from tests.chaos import Figures
from tests.processes import MockProcess, assert_no_traceback, spawn_cli

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(180)]

KEY = "sk-chaos-llm-0123456789"
REASONS = {
    "slow": "timeout",
    "reset": "connection",
    "malformed": "bad_response",
    "empty_choices": "bad_response",
    "error_200": "bad_response",
}


@pytest.fixture
def mocks() -> Iterator[list[MockProcess]]:
    started: list[MockProcess] = []
    yield started
    for mock in started:
        mock.stop()


def _configure(mock: MockProcess, **changes: Any) -> None:
    request = urllib.request.Request(
        f"{mock.server_url}/_config",
        data=json.dumps(changes).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


async def _summarize(
    store: list[str], mock: MockProcess, *args: str, **env: str
) -> tuple[int, str]:
    proc = spawn_cli(
        "summarize",
        *store,
        "--drain",
        *args,
        env={
            "OPENAI_API_KEY": KEY,
            "DISTCRAWL_LLM__BASE_URL": mock.base_url,
            "DISTCRAWL_LLM__MODEL": "mock-model",
            **env,
        },
    )
    _, err = await asyncio.to_thread(proc.communicate, timeout=150)
    return proc.returncode, err


async def _records(redis: Redis, keys: CrawlKeys) -> list[dict[str, Any]]:
    return [json.loads(v) for v in (await redis.hgetall(keys.summaries)).values()]


@pytest.mark.parametrize("mode", sorted(REASONS))
async def test_broken_answers_fail_with_a_reason_then_recover(
    mode: str,
    server_store: Redis,
    redis_server: RedisServer,
    crawl_keys: CrawlKeys,
    mocks: list[MockProcess],
) -> None:
    mock = MockProcess("--api-key", KEY, "--mode", mode, "--slow", "3")
    mocks.append(mock)
    store = ["--redis", redis_server.url, "--crawl", crawl_keys.crawl]
    queue = DocsQueue(server_store, crawl_keys)
    await feed_docs(server_store, crawl_keys, make_docs(12, host="broken.test"))
    code, err = await _summarize(
        store,
        mock,
        "--concurrency",
        "4",
        DISTCRAWL_LLM__MAX_FAILED_CALLS="2",
        DISTCRAWL_LLM__TIMEOUT_S="1",
    )
    assert code == 0, err
    assert_no_traceback(err)
    stats = await queue.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (0, 12, 0)
    assert stats.counts == {**stats.counts, f"docs_failed:{REASONS[mode]}": 12}
    records = await _records(server_store, crawl_keys)
    assert {(r["outcome"], r["reason"]) for r in records} == {("failed", REASONS[mode])}
    assert mock.stats()["requests"] == 24  # two attempts each, no more

    _configure(mock, mode="ok")  # the trouble ends: new docs go through
    await feed_docs(server_store, crawl_keys, make_docs(12, host="fixed.test"))
    code, err = await _summarize(store, mock, "--concurrency", "4")
    assert code == 0, err
    stats = await queue.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (12, 12, 0)
    assert stats.balanced
    Figures.docs_only(f"LLM {mode}", stats, faults=12).save()


def _adaptive_limit(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("distcrawl_llm_adaptive_limit "):
            return float(line.split()[1])
    return None


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
async def test_429_storm_lowers_the_adaptive_limit_and_it_recovers(
    retry_after: bool,
    server_store: Redis,
    redis_server: RedisServer,
    crawl_keys: CrawlKeys,
    mocks: list[MockProcess],
) -> None:
    # 10 requests per 2 s window: a summarizer that starts at 16 in flight is far over it.
    mock = MockProcess(
        "--api-key",
        KEY,
        "--latency",
        "0.05",
        "--rpm",
        "10",
        "--window",
        "2",
        *([] if retry_after else ["--no-retry-after"]),
    )
    mocks.append(mock)
    store = ["--redis", redis_server.url, "--crawl", crawl_keys.crawl]
    await feed_docs(server_store, crawl_keys, make_docs(300, host="storm.test"))
    port = free_port()
    proc = spawn_cli(
        "summarize",
        *store,
        "--drain",
        "--concurrency",
        "32",
        "--metrics-port",
        str(port),
        env={
            "OPENAI_API_KEY": KEY,
            "DISTCRAWL_LLM__BASE_URL": mock.base_url,
            "DISTCRAWL_LLM__MODEL": "mock-model",
        },
    )
    seen: list[float] = []
    storm_over, storm_ticks = False, 0
    while proc.poll() is None:
        value = _adaptive_limit(port)
        if value is not None:
            seen.append(value)
        if not storm_over and mock.stats()["rate_limited"] > 0:
            storm_ticks += 1
            if storm_ticks >= 60:  # about 6 s of 429s, then the storm passes
                _configure(mock, rpm=0)
                storm_over, low = True, min(seen)
        await asyncio.sleep(0.1)
    _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, err
    assert_no_traceback(err)
    stats = await DocsQueue(server_store, crawl_keys).stats()
    # 429s have their own budget per doc (24): a storm of seconds fails no doc. (When they
    # counted against the 6 attempts, 1-7 of 300 failed with http_429.)
    assert (stats.summarized, stats.failed, stats.pending) == (300, 0, 0), stats
    served = mock.stats()
    assert served["by_status"]["200"] == stats.summarized
    assert storm_over
    start = 16  # concurrency 32 starts at half (the first scrape may come after a cut)
    assert seen[0] <= start, seen
    # It fell under the storm (how far depends on how many 429s got through: with Retry-After
    # the shared pause holds most calls back, so fewer cuts) and climbed past its start after.
    assert low < start, seen
    assert max(seen[seen.index(low) :]) > start, seen
    Figures.docs_only(
        f"LLM 429 storm ({'with' if retry_after else 'without'} Retry-After)",
        stats,
        faults=int(served["rate_limited"]),
        extra={
            "adaptive_start": start,
            "adaptive_low": low,
            "adaptive_after": max(seen[seen.index(low) :]),
        },
    ).save()
