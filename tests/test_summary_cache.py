"""The summary cache outlives a pass and is shared by the crawls on one Redis: `summarize`
processes against the mock OpenAI server, on a single Redis and on a Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from common.keys import SUMMARY_CACHE_MATCH, CrawlKeys
from common.serde import Doc
from common.settings import DEFAULT_CACHE_TTL_S
from common.store import open_store
from distcrawl.sample_docs import feed_docs, make_docs
from tests.processes import MockProcess, cli

API_KEY = "sk-test-0123456789abcdef"
TEXT = "An article that several crawls and every pass of one crawl read again. " * 12


def _crawl(label: str) -> CrawlKeys:
    """A crawl of its own (the cache is what the crawls of these tests share)."""
    return CrawlKeys(f"{label}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["server", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    fixture = "redis_server" if request.param == "server" else "redis_cluster"
    return str(request.getfixturevalue(fixture).url)


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[Redis]:
    redis = await open_store(store_url)
    yield redis
    await redis.aclose()


@pytest.fixture
def mock(mock_factory: type[MockProcess]) -> MockProcess:
    return mock_factory("--api-key", API_KEY)


async def _summarize(
    url: str, keys: CrawlKeys, mock: MockProcess, *args: str, env: dict[str, str] | None = None
) -> None:
    env = {
        "OPENAI_API_KEY": API_KEY,
        "DISTCRAWL_LLM__BASE_URL": mock.base_url,
        "DISTCRAWL_LLM__MODEL": "mock-model",
        **(env or {}),
    }
    argv = ["summarize", "--redis", url, "--crawl", keys.crawl, "--drain", *args]
    proc = await asyncio.to_thread(cli, *argv, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr


async def _records(redis: Redis, keys: CrawlKeys, docs: list[Doc]) -> list[dict[str, Any]]:
    raw = await redis.hmget(keys.summaries, [d.fp for d in docs])
    return [json.loads(r) for r in raw if r is not None]


async def _cache_ttls(redis: Redis) -> list[int]:
    """The time-to-live (ms) of every entry in the shared cache (no lock may be left)."""
    names = [str(k) async for k in redis.scan_iter(match=SUMMARY_CACHE_MATCH)]
    assert not [n for n in names if n.endswith(":lock")]
    return [int(await redis.pttl(n)) for n in names]


async def test_two_crawls_on_one_redis_pay_for_a_text_once(
    client: Redis, store_url: str, mock: MockProcess
) -> None:
    """A second crawl on the same Redis gets the first one's answers: no call; its hits start
    the entries' time-to-live again, at its own --llm-cache-ttl."""
    first, second = _crawl("first"), _crawl("second")
    first_docs = make_docs(3, host="one.test")
    second_docs = make_docs(3, host="two.test")  # the same three texts under other URLs
    await feed_docs(client, first, first_docs)
    await _summarize(store_url, first, mock)
    assert mock.stats()["requests"] == 3
    ttls = await _cache_ttls(client)
    assert len(ttls) == 3
    assert all((DEFAULT_CACHE_TTL_S - 600) * 1000 < t <= DEFAULT_CACHE_TTL_S * 1000 for t in ttls)

    await feed_docs(client, second, second_docs)
    await _summarize(store_url, second, mock, "--llm-cache-ttl", "1h")
    assert mock.stats()["requests"] == 3  # not one more call
    theirs, ours = (
        await _records(client, first, first_docs),
        await _records(client, second, second_docs),
    )
    assert [r["cached"] for r in ours] == [True] * 3
    assert [r["summary"] for r in ours] == [r["summary"] for r in theirs]
    assert all(r["summarizer"] == "mock-model" and r["cost_usd"] == 0 for r in ours)
    assert all(3_000_000 < t <= 3_600_000 for t in await _cache_ttls(client))


async def test_a_later_pass_summarizes_only_what_changed(
    client: Redis, store_url: str, mock: MockProcess
) -> None:
    """The same crawl meets its pages again (as a revisit pass queues them): unchanged text is
    settled from the cache, changed text costs one call."""
    keys = _crawl("passes")
    [kept, edited] = make_docs(2, text=TEXT)
    edited = Doc(
        url=edited.url, fp=edited.fp, title=edited.title, text=TEXT + " New.", fetched_at=0
    )
    await feed_docs(client, keys, [kept])
    await _summarize(store_url, keys, mock)
    assert mock.stats()["requests"] == 1

    await feed_docs(client, keys, [kept, edited])  # the next pass
    await _summarize(store_url, keys, mock)
    assert mock.stats()["requests"] == 2  # the edited page only
    records = {r["url"]: r for r in await _records(client, keys, [kept, edited])}
    assert (records[kept.url]["cached"], records[edited.url]["cached"]) == (True, False)
    counts = await client.hgetall(keys.counts)
    assert (int(counts["docs_summarized"]), int(counts["docs_summarized:cached"])) == (3, 1)


async def test_another_model_or_prompt_is_another_answer(
    client: Redis, store_url: str, mock: MockProcess
) -> None:
    """The key holds what shapes the answer: another model, prompt or output budget calls the
    API again; the first setup's answers stay cached."""
    prompt = "Sum up, for a search index: {text}"
    runs: list[tuple[str, list[str], dict[str, str], int]] = [
        ("base", [], {}, 1),
        ("model", ["--llm-model", "other-model"], {}, 2),
        ("budget", [], {"DISTCRAWL_LLM__MAX_OUTPUT_TOKENS": "100"}, 3),
        ("prompt", [], {"DISTCRAWL_LLM__PROMPT": prompt}, 4),
        ("again", [], {}, 4),  # the base setup: its answer is still cached
    ]
    for label, args, env, calls in runs:
        keys = _crawl(label)
        [doc] = make_docs(1, text=TEXT, host=f"{label}.test")
        await feed_docs(client, keys, [doc])
        await _summarize(store_url, keys, mock, *args, env=env)
        assert mock.stats()["requests"] == calls, label
    last = mock.requests()[-1]
    assert last["messages"][-1]["content"].startswith("Sum up, for a search index:")


def test_a_bad_cache_ttl_is_one_error_line() -> None:
    proc = cli(
        "summarize", "--redis", "redis://127.0.0.1:1", "--crawl", "x", "--llm-cache-ttl", "soon"
    )
    assert proc.returncode != 0
    assert "duration like 30d" in proc.stderr
    assert "Traceback" not in proc.stderr
