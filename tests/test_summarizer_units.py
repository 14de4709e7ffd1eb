"""The summarizer's parts: budget, cost, profiles, stale answers, the summary cache."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
import redis.exceptions
from redis.asyncio import Redis

from common.docsqueue import CacheWrite, DocKind, DocOp, DocResult, DocsQueue
from common.errors import ConfigError
from common.keys import CrawlKeys
from common.serde import encode_doc
from common.settings import LLMSettings, build_settings
from distcrawl.sample_docs import feed_docs, make_docs
from summarizer.budget import token_counter
from summarizer.cache import SummaryCache, content_key
from summarizer.cost import cost_usd
from summarizer.profiles import Profiles
from summarizer.schema import InvalidAnswer, load_schema
from tests.helpers import FakeClock


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
    path.write_text(
        json.dumps(
            [
                {"match": "*.example.org", "model": "big", "max_tokens": 400},
                {"match": "news.*", "prompt": "News: {title}\n{text}"},
            ]
        )
    )
    profiles = Profiles.from_settings(LLMSettings(model="small", profiles_file=str(path)))
    assert profiles.for_host("docs.example.org").model == "big"
    assert profiles.for_host("docs.example.org").max_tokens == 400
    assert profiles.for_host("news.site.com").prompt.startswith("News:")
    assert profiles.for_host("news.site.com").model == "small"
    assert profiles.for_host("other.com") is profiles.default


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "expected a JSON list"),
        ('[{"model": "x"}]', "'match' string"),
        ('[{"match": "*", "colour": 1}]', "unknown field"),
        ('[{"match": "*", "prompt": "no text slot"}]', "must contain {text}"),
        ('[{"match": "*", "prompt": "{text} {oops}"}]', "bad prompt template"),
        ("not json", "cannot read profiles file"),
    ],
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
    late = DocOp(DocKind.SUMMARIZED, first.fp, attempt=first.attempt)
    assert await queue.settle("w", [late]) == [DocResult.STALE]
    current = DocOp(DocKind.SUMMARIZED, second.fp, attempt=second.attempt)
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
    results = await asyncio.gather(
        first.single_flight("k1", compute), second.single_flight("k1", compute)
    )
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


async def test_a_deferred_cache_write_lands_with_the_settle_even_when_stale(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """The worker's path: the summary is stored (and the lock dropped) by the settle script, not
    by the cache; a waiter in another process sees the key locked until then, and a stale lease
    does not throw the computed summary away."""
    clock = FakeClock()
    queue = DocsQueue(store, crawl_keys, clock=clock)
    await feed_docs(store, crawl_keys, make_docs(1))
    [lease] = await queue.claim("w", 1, lease_s=5)
    writes: list[CacheWrite] = []

    async def compute() -> str:
        return "the summary"

    cache = SummaryCache(store, crawl_keys)
    assert await cache.single_flight("k3", compute, deferred=writes) == ("the summary", False)
    assert writes == [CacheWrite("k3", "the summary", unlock=True)]
    assert await cache.get("k3") is None  # not stored yet...
    assert await store.exists(crawl_keys.summary_lock("k3"))  # ...and others still wait
    clock.advance(5_000)
    assert await queue.reap() == (1, 0)  # the lease is gone: this settle will be stale
    op = DocOp(DocKind.SUMMARIZED, lease.fp, attempt=lease.attempt, cache=writes[0])
    assert await queue.settle("w", [op]) == [DocResult.STALE]
    assert await cache.get("k3") == "the summary"
    assert not await store.exists(crawl_keys.summary_lock("k3"))


async def test_a_dead_doc_keeps_its_text_in_docs_dead_only(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """After its last attempt a doc is failed (lease_expired) with a summary record, and
    docs-dead keeps fp, attempts, reason, URL and the doc as it was queued (for `requeue
    --docs`; up to a bound, tests/test_requeue.py): no other key of the crawl keeps its text."""
    clock = FakeClock()
    queue = DocsQueue(store, crawl_keys, clock=clock)
    [doc] = make_docs(1, text="a sentence of page text. " * 200)
    await feed_docs(store, crawl_keys, [doc])
    for _ in range(3):  # the crawl's max_doc_leases (3 by default)
        assert len(await queue.claim("w", 1, lease_s=5)) == 1
        clock.advance(5_000)
        await queue.reap()
    stats = await queue.stats()
    assert (stats.failed, stats.pending, stats.dead, stats.balanced) == (1, 0, 1, True)
    assert await store.lrange(crawl_keys.docs_dead, 0, -1) == [
        f"{doc.fp}\t3\tlease_expired\t{doc.url}\t{encode_doc(doc)}"
    ]
    record = json.loads(await store.hget(crawl_keys.summaries, doc.fp) or "{}")
    assert (record["url"], record["outcome"], record["reason"]) == (
        doc.url,
        "failed",
        "lease_expired",
    )
    packed = json.loads(encode_doc(doc))["tz"][:40].encode()  # the text as it was queued
    for key in [k async for k in store.scan_iter(match=crawl_keys.prefix + "*")]:
        dump = await store.dump(key) or b""
        if key != crawl_keys.docs_dead:
            assert packed not in dump, key
        assert b"a sentence of page text" not in dump, key


async def test_reap_every_doc_lease_returns_live_leases(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    queue = DocsQueue(store, crawl_keys, clock=FakeClock())
    await feed_docs(store, crawl_keys, make_docs(2))
    assert len(await queue.claim("dead", 2, lease_s=600)) == 2
    assert await queue.reap() == (0, 0)
    assert await queue.reap(every_lease=True) == (2, 0)
    again = await queue.claim("new", 2, lease_s=600)
    assert [doc.attempt for doc in again] == [2, 2]


async def test_docs_settle_refuses_an_unknown_kind_before_writing(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """A typo'd kind is an error, never a new counter, and nothing of the batch is written."""
    queue = DocsQueue(store, crawl_keys)
    await feed_docs(store, crawl_keys, make_docs(1))
    [lease] = await queue.claim("w", 1, lease_s=60)
    good = DocOp(DocKind.SUMMARIZED, lease.fp, attempt=lease.attempt)
    typo = dataclasses.replace(good, kind="summarised")  # type: ignore[arg-type]
    with pytest.raises(redis.exceptions.ResponseError, match="unknown kind summarised"):
        await queue.settle("w", [good, typo])
    stats = await queue.stats()
    assert (stats.summarized, stats.in_flight) == (0, 1)
    assert "docs_summarised" not in stats.counts


def test_profiles_take_schemas_from_files_next_to_them(tmp_path: Path) -> None:
    page = {"title": "page", "type": "object", "properties": {"a": {"type": "string"}}}
    (tmp_path / "page.json").write_text(json.dumps(page))
    (tmp_path / "shop.json").write_text(json.dumps({**page, "title": "shop item"}))
    path = tmp_path / "profiles.json"
    path.write_text(
        json.dumps(
            [
                {"match": "shop.*", "schema": "shop.json"},
                {"match": "news.*", "schema": None},
                {"match": "blog.*", "max_tokens": 50},
            ]
        )
    )
    llm = LLMSettings(schema_file=str(tmp_path / "page.json"), profiles_file=str(path))
    profiles = Profiles.from_settings(llm)
    assert profiles.extracts
    default, shop = profiles.default, profiles.for_host("shop.example")
    news, blog = profiles.for_host("news.example"), profiles.for_host("blog.example")
    assert default.schema is not None
    assert default.schema.name == "page"
    assert shop.schema is not None
    assert shop.schema.name == "shop_item"
    assert shop.schema.digest != default.schema.digest
    assert news.schema is None
    assert news.prompt == llm.prompt
    assert blog.schema is default.schema
    assert blog.prompt == llm.extract_prompt
    assert default.prompt == llm.extract_prompt
    own = Profiles.from_settings(
        LLMSettings(schema_file=str(tmp_path / "page.json"), prompt="Mine: {text}")
    )
    assert own.default.prompt == "Mine: {text}"  # a prompt the user set is kept
    assert not Profiles.from_settings(LLMSettings()).extracts


def test_answers_are_parsed_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
    )
    schema = load_schema(path)
    assert schema.parse('```json\n{"n": 3}\n```') == {"n": 3}
    with pytest.raises(InvalidAnswer, match="not JSON"):
        schema.parse('{"n": 3')
    with pytest.raises(InvalidAnswer, match=r"at \$\.n: 'x' is not of type 'integer'"):
        schema.parse('{"n": "x"}')
    assert schema.response_format("json_object") == {"type": "json_object"}
    strict = schema.response_format("json_schema")["json_schema"]
    assert (strict["name"], strict["strict"]) == ("s", True)


def test_the_content_key_separates_schemas_and_keeps_summary_keys() -> None:
    base = content_key("m", "p", "text")
    assert content_key("m", "p", "text", "") == base
    assert (
        len({base, content_key("m", "p", "text", "a1"), content_key("m", "p", "text", "b2")}) == 3
    )


def test_a_schema_from_the_command_line_keeps_the_extraction_prompt(tmp_path: Path) -> None:
    """build_settings merges flags over the environment without marking every default as
    chosen: the summary prompt is used for extraction only when the user set one."""
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {}}))
    flags = build_settings(llm={"schema_file": str(schema), "max_input_tokens": 500})
    assert Profiles.from_settings(flags.llm).default.prompt == flags.llm.extract_prompt
    chosen = build_settings(llm={"schema_file": str(schema), "prompt": "Mine: {text}"})
    assert Profiles.from_settings(chosen.llm).default.prompt == "Mine: {text}"
