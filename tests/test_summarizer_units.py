"""The summarizer's parts: budget, cost, profiles, stale answers, the summary cache."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path

import pytest
import redis.exceptions
from redis.asyncio import Redis

from common.docsqueue import DocKind, DocOp, DocResult, DocsQueue
from common.errors import ConfigError
from common.keys import CrawlKeys, summary_cache_key, summary_lock_key
from common.serde import encode_doc
from common.settings import LLMSettings, build_settings
from distcrawl.sample_docs import feed_docs, make_docs
from summarizer.budget import token_counter
from summarizer.cache import SummaryCache, content_key
from summarizer.client import OpenAIEngine
from summarizer.cost import cost_usd
from summarizer.engines import CallableEngine, ExtractiveEngine, Request
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


TTL_S = 3600.0


def _key(label: str) -> str:
    """A content key of its own (the cache is shared by every test's crawl on a server)."""
    return content_key(("test-model", label, uuid.uuid4().hex), "some page text")


async def test_single_flight_across_two_caches_computes_once(store: Redis) -> None:
    """Two caches on one store (as two processes would be): one computes, the other waits for
    its summary; the lock is gone afterwards and a later lookup is a hit."""
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        return "the summary"

    key = _key("k1")
    first, second = SummaryCache(store, ttl_s=TTL_S), SummaryCache(store, ttl_s=TTL_S)
    results = await asyncio.gather(
        first.single_flight(key, compute), second.single_flight(key, compute)
    )
    assert calls == 1
    assert sorted(results) == [("the summary", False), ("the summary", True)]
    assert not await store.exists(summary_lock_key(key))
    assert await second.single_flight(key, compute) == ("the summary", True)


async def test_a_failed_computation_releases_the_lock(store: Redis) -> None:
    async def broken() -> str:
        raise RuntimeError("API down")

    key = _key("k2")
    cache = SummaryCache(store, ttl_s=TTL_S)
    with pytest.raises(RuntimeError):
        await cache.single_flight(key, broken)
    assert not await store.exists(summary_lock_key(key))
    assert await cache.get_many([key]) == [None]


async def test_the_answer_is_cached_before_the_doc_settles(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    """The cache is not in the doc's slot: single_flight stores the answer (and drops the lock)
    itself, before the worker settles the doc. A worker that dies before its settle leaves the
    answer cached: the doc's next attempt is a hit, and a late settle is stale as ever."""
    clock = FakeClock()
    queue = DocsQueue(store, crawl_keys, clock=clock)
    await feed_docs(store, crawl_keys, make_docs(1))
    [lease] = await queue.claim("w", 1, lease_s=5)
    key = _key("k3")

    async def compute() -> str:
        return "the summary"

    cache = SummaryCache(store, ttl_s=TTL_S)
    assert await cache.single_flight(key, compute) == ("the summary", False)
    assert await cache.get_many([key]) == ["the summary"]  # stored, no settle yet...
    assert not await store.exists(summary_lock_key(key))  # ...and nobody waits for it
    clock.advance(5_000)  # the worker died here: its lease expires
    assert await queue.reap() == (1, 0)
    [again] = await queue.claim("w2", 1, lease_s=5)
    other = SummaryCache(store, ttl_s=TTL_S)  # another process
    assert await other.single_flight(key, compute) == ("the summary", True)
    late = DocOp(DocKind.SUMMARIZED, lease.fp, attempt=lease.attempt)
    assert await queue.settle("w", [late]) == [DocResult.STALE]
    done = DocOp(DocKind.SUMMARIZED, again.fp, attempt=again.attempt)
    assert await queue.settle("w2", [done]) == [DocResult.SETTLED]


async def test_entries_expire_and_a_hit_starts_their_time_again(store: Redis) -> None:
    """An entry lives ttl_s after its write; a hit (single flight or get_many) sets it back to
    ttl_s; ttl_s 0 writes entries that never expire."""
    cache = SummaryCache(store, ttl_s=TTL_S)
    ttl_ms = int(TTL_S * 1000)
    key, batched = _key("ttl"), _key("ttl-batch")

    async def compute() -> str:
        return "the summary"

    await cache.single_flight(key, compute)
    await cache.put_many({batched: "a batch answer"})
    for name in (summary_cache_key(key), summary_cache_key(batched)):
        assert ttl_ms - 60_000 < await store.pttl(name) <= ttl_ms
        await store.pexpire(name, 5_000)  # as if most of its time had passed
    assert await cache.single_flight(key, compute) == ("the summary", True)
    assert await cache.get_many([batched, _key("missing")]) == ["a batch answer", None]
    for name in (summary_cache_key(key), summary_cache_key(batched)):
        assert await store.pttl(name) > 5_000, name
    forever = SummaryCache(store, ttl_s=0)
    lasting = _key("forever")
    await forever.single_flight(lasting, compute)
    await forever.put_many({batched: "a batch answer"})
    assert await store.pttl(summary_cache_key(lasting)) == -1
    assert await store.pttl(summary_cache_key(batched)) == -1
    assert await forever.single_flight(lasting, compute) == ("the summary", True)
    assert await store.pttl(summary_cache_key(lasting)) == -1


async def test_clear_deletes_the_cache_and_nothing_else(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    await feed_docs(store, crawl_keys, make_docs(2))
    before = {k async for k in store.scan_iter(match=crawl_keys.prefix + "*")}
    cache = SummaryCache(store, ttl_s=TTL_S)
    keys = [_key(f"c{i}") for i in range(40)]
    await cache.put_many(dict.fromkeys(keys, "x"))
    assert await cache.clear() >= 40
    assert await cache.get_many(keys) == [None] * 40
    assert {k async for k in store.scan_iter(match=crawl_keys.prefix + "*")} == before


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


def test_the_content_key_is_the_identity_and_the_text() -> None:
    base = content_key(("m", "p"), "text")
    assert content_key(("m", "p"), "text") == base
    others = [
        content_key(("m", "p"), "text!"),
        content_key(("m2", "p"), "text"),
        content_key(("m", "p", "schema"), "text"),
        content_key(("m", "p\x00"), "text"),
        content_key(("m",), "p\x00text"),
    ]
    assert len({base, *others}) == 1 + len(others)
    assert len(base) == 32
    assert set(base) <= set("0123456789abcdef")


def _identity(llm: LLMSettings, host: str = "a.test") -> tuple[str, ...]:
    profiles = Profiles.from_settings(llm)
    engine = OpenAIEngine(None, llm, None, None, lambda *_: None)  # type: ignore[arg-type]
    return engine.cache_identity(Request("http://a.test/", "T", "text", profiles.for_host(host)))


def test_every_setting_that_shapes_an_answer_is_in_its_identity(tmp_path: Path) -> None:
    """The API engine's identity changes with each setting that changes the request or the
    answer (and so does the content key), and with nothing else (not the rate limits)."""
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}}))
    profiles = tmp_path / "p.json"
    profiles.write_text(json.dumps([{"match": "b.test", "max_tokens": 99}]))
    base = LLMSettings()
    identity = _identity(base)
    assert identity[0] == base.model  # the name a cached answer's record gives
    changed = [
        {"model": "other-model"},
        {"prompt": "Summarize: {text}"},
        {"max_output_tokens": 100},
        {"max_input_tokens": 2000},
        {"long_pages": "cut"},
        {"max_doc_tokens": 20_000},
        {"chunk_overlap_tokens": 50},
        {"reduce_prompt": "Combine: {text}"},
        {"schema_file": str(schema)},
    ]
    seen = {identity}
    for change in changed:
        other = _identity(LLMSettings(**change))  # type: ignore[arg-type]
        assert other not in seen, change
        seen.add(other)
    extract = LLMSettings(schema_file=str(schema))
    assert _identity(extract) != _identity(
        extract.model_copy(update={"response_format": "json_object"})
    )
    assert _identity(LLMSettings(profiles_file=str(profiles)), "b.test") != identity
    assert _identity(LLMSettings(rpm=10, tpm=1000, concurrency=3, timeout_s=5)) == identity
    # cut pages: the map-reduce settings do not matter
    cut = LLMSettings(long_pages="cut")
    assert _identity(cut) == _identity(cut.model_copy(update={"reduce_prompt": "R {text}"}))


def test_a_user_summarizer_is_a_new_identity_when_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "cachesum.py"
    plugin.write_text("def summarize(text, *, title, url):\n    return text[:10]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request = Request("http://a.test/", "T", "text", Profiles.from_settings(LLMSettings()).default)
    first = CallableEngine("cachesum:summarize").cache_identity(request)
    assert first[0] == "cachesum:summarize"
    plugin.write_text("def summarize(text, *, title, url):\n    return text[:20]\n")
    assert CallableEngine("cachesum:summarize").cache_identity(request) != first
    assert ExtractiveEngine().cache_identity(request)[0] == "extractive"


def test_a_schema_from_the_command_line_keeps_the_extraction_prompt(tmp_path: Path) -> None:
    """build_settings merges flags over the environment without marking every default as
    chosen: the summary prompt is used for extraction only when the user set one."""
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {}}))
    flags = build_settings(llm={"schema_file": str(schema), "max_input_tokens": 500})
    assert Profiles.from_settings(flags.llm).default.prompt == flags.llm.extract_prompt
    chosen = build_settings(llm={"schema_file": str(schema), "prompt": "Mine: {text}"})
    assert Profiles.from_settings(chosen.llm).default.prompt == "Mine: {text}"
