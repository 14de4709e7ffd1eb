"""Long pages by map-reduce, end to end: `distcrawl summarize` processes, the mock LLM over
loopback HTTP (its request and reply logs), a real redis-server, the docs settle path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from redis.asyncio import Redis

from common.keys import CrawlKeys
from distcrawl.sample_docs import make_docs
from summarizer.engines import DocFailed, Request
from summarizer.mapreduce import MAX_DOC_TOKENS
from summarizer.profiles import Profile
from summarizer.schema import OutputSchema
from tests.docscrawl import DocsCrawl
from tests.helpers import llm_engine
from tests.mock_llm import MockLLM
from tests.processes import MockProcess

API_KEY = "sk-test-0123456789abcdef"
MAP = "Summarize this part."
REDUCE = "Combine these part summaries."
# 2,000 distinct words of 5 characters and a space: 12,000 characters, 3,000 tokens estimated
WORDS = [f"w{i:04d}" for i in range(2000)]
LONG = " ".join(WORDS)


@pytest.fixture
def mock() -> Iterator[MockProcess]:
    server = MockProcess("--api-key", API_KEY)
    server.configure(record_requests=1000)
    yield server
    server.stop()


Json = dict[str, Any]
PROMPTS = {"prompt": "{text}\n\n" + MAP, "reduce_prompt": "{text}\n\n" + REDUCE}


async def _summarize_long(
    docs_crawl: DocsCrawl, mock: MockProcess, *args: str, **llm: str
) -> tuple[list[Json], Json]:
    """LONG, summarized by one ``summarize --drain ARGS`` with the LLM settings ``llm``: the
    mock's replies (one per call) and the doc's record."""
    await docs_crawl.feed(make_docs(1, text=LONG))
    env = mock.worker_env(API_KEY) | {f"DISTCRAWL_LLM__{k.upper()}": v for k, v in llm.items()}
    await docs_crawl.drain(env, *args)
    [record] = (await docs_crawl.records()).values()
    return mock.replies(), record


def _prompt(reply: Json) -> str:
    return str(reply["messages"][-1]["content"])


def _maps_and_reduces(replies: list[Json]) -> tuple[list[Json], list[Json]]:
    maps = [r for r in replies if _prompt(r).endswith(MAP)]
    return maps, [r for r in replies if _prompt(r).endswith(REDUCE)]


async def _check_tokens(
    record: dict[str, Any], mock: MockProcess, docs_crawl: DocsCrawl, replies: list[dict[str, Any]]
) -> None:
    """The doc's tokens are the sum of what the mock served it, and so are the counters."""
    assert record["prompt_tokens"] == sum(r["prompt_tokens"] for r in replies)
    assert record["completion_tokens"] == sum(r["completion_tokens"] for r in replies)
    await docs_crawl.assert_accounted(mock.stats())


async def test_a_page_ten_times_the_budget_is_summarized_whole(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
) -> None:
    mock.configure(summary_words=5)  # short summaries: all of them fit one reduce call
    budget = {"max_input_tokens": "300", "max_output_tokens": "40", "max_doc_tokens": "20000"}
    replies, record = await _summarize_long(docs_crawl, mock, **budget, **PROMPTS)
    maps, reduces = _maps_and_reduces(replies)
    assert len(maps) + len(reduces) == len(replies) == len(mock.requests())
    assert (record["outcome"], record["truncated"]) == ("summarized", False)
    assert record["chunks"] == len(maps) >= 10
    # the mock saw every chunk: every word of the page, and none cut by the budget
    seen = {w for r in maps for w in _prompt(r).split()}
    assert set(WORDS) <= seen
    assert all(r["prompt_tokens"] <= 300 for r in maps)
    # one reduce call, and it received every chunk's summary, in page order
    [reduce] = reduces
    places = [_prompt(reduce).find(m["content"]) for m in sorted(maps, key=_first_word)]
    assert -1 not in places
    assert places == sorted(places)
    assert record["summary"] == reduce["content"]
    await _check_tokens(record, mock, docs_crawl, replies)


def _first_word(reply: dict[str, Any]) -> str:
    return _prompt(reply).split()[0]


async def test_many_chunks_are_reduced_in_levels(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
) -> None:
    """The chunk summaries do not fit one reduce call: groups are reduced, then their
    summaries, until one is left; every summary goes into exactly one reduce call."""
    budget = {"max_input_tokens": "150", "max_output_tokens": "30", "max_doc_tokens": "40000"}
    replies, record = await _summarize_long(
        docs_crawl, mock, chunk_overlap_tokens="20", **budget, **PROMPTS
    )
    maps, reduces = _maps_and_reduces(replies)
    assert record["chunks"] == len(maps) >= 20
    final = next(r for r in reduces if r["content"] == record["summary"])
    inner = [r for r in reduces if r is not final]
    for answer in maps + inner:
        assert sum(answer["content"] in _prompt(r) for r in reduces) == 1
    # at least two levels: some reduce call combined the summaries of reduce calls
    assert any(i["content"] in _prompt(final) for i in inner)
    assert all(r["prompt_tokens"] <= 150 for r in replies)
    assert set(WORDS) <= {w for r in maps for w in _prompt(r).split()}
    await _check_tokens(record, mock, docs_crawl, replies)


SCHEMA: dict[str, Any] = {
    "title": "page",
    "type": "object",
    "properties": {
        "headline": {"type": "string", "minLength": 1},
        "topics": {"type": "array", "items": {"type": "string"}},
        "words": {"type": "integer", "minimum": 0},
    },
    "required": ["headline", "topics", "words"],
    "additionalProperties": False,
}


async def test_a_long_page_is_extracted_by_chunks_and_merged(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
) -> None:
    """Chunks answer with their own headline (a disagreeing scalar), topics (arrays) and the
    same word count: topics are concatenated, the count kept, and one reduce call, answered
    against the schema, decides the headline."""
    schema = tmp_path / "page.json"
    schema.write_text(json.dumps(SCHEMA))
    budget = {"max_input_tokens": "400", "max_output_tokens": "60", "max_doc_tokens": "20000"}
    replies, record = await _summarize_long(
        docs_crawl, mock, "--llm-schema", str(schema), extract_prompt="{text}\n\n" + MAP, **budget
    )
    maps = sorted((r for r in replies if _prompt(r).endswith(MAP)), key=_first_word)
    [reduce] = [r for r in replies if not _prompt(r).endswith(MAP)]
    assert (record["outcome"], record["chunks"], record["truncated"]) == (
        "extracted",
        len(maps),
        False,
    )
    assert len(maps) >= 8
    assert set(WORDS) <= {w for r in maps for w in _prompt(r).split()}
    chunk_data = [json.loads(r["content"]) for r in maps]
    headlines = [d["headline"] for d in chunk_data]
    assert len(set(headlines)) == len(maps)  # every chunk its own: a conflict
    reduce_input = json.loads(_prompt(reduce).split("\n\n", 1)[1])
    assert reduce_input["conflicts"] == {"/headline": headlines}
    data = record["data"]
    jsonschema.validate(data, SCHEMA)
    assert data["headline"] == json.loads(reduce["content"])["headline"]
    assert data["topics"] == list(dict.fromkeys(t for d in chunk_data for t in d["topics"]))
    assert data["words"] == chunk_data[0]["words"]
    await _check_tokens(record, mock, docs_crawl, replies)


async def test_the_doc_cap_keeps_the_chunks_that_fit_and_marks_the_record(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
) -> None:
    budget = {"max_input_tokens": "300", "max_output_tokens": "40"}
    cap = ("--llm-max-doc-tokens", "1500")
    replies, record = await _summarize_long(docs_crawl, mock, *cap, **budget, **PROMPTS)
    maps, _ = _maps_and_reduces(replies)
    assert (record["outcome"], record["truncated"]) == ("summarized", True)
    assert record["chunks"] == len(maps) == 3  # 3 x (300 + 40) + a reduce of 3 fit 1500
    seen = {w for r in maps for w in _prompt(r).split()}
    assert WORDS[0] in seen
    assert WORDS[-1] not in seen  # the beginning is kept
    assert record["prompt_tokens"] + record["completion_tokens"] <= 1500
    await _check_tokens(record, mock, docs_crawl, replies)


async def test_a_call_that_would_pass_the_cap_fails_the_doc_with_its_tokens(
    server_store: Redis, crawl_keys: CrawlKeys
) -> None:
    """The plan keeps one chunk of the page; its answer is invalid, and the repair call (which
    no plan foresees) would pass the cap: the doc fails with max_doc_tokens, carrying the
    first call's tokens."""
    async with MockLLM(api_key=API_KEY, json_fault="violating") as mock:
        limits = {"max_input_tokens": 200, "max_output_tokens": 50, "max_doc_tokens": 300}
        async with llm_engine(
            server_store, crawl_keys, mock.base_url, API_KEY, concurrency=4, **limits
        ) as (llm, engine):
            schema = OutputSchema.from_dict(SCHEMA, "p")
            profile = Profile("mock-model", llm.extract_prompt, 50, schema)
            with pytest.raises(DocFailed) as failed:
                await engine.summarize(Request("https://a.test/", "A", LONG, profile))
        assert failed.value.reason == MAX_DOC_TOKENS
        [reply] = mock.replies()  # the repair call was never sent
        assert failed.value.spent.prompt_tokens == reply["prompt_tokens"] > 0
        assert failed.value.spent.completion_tokens == reply["completion_tokens"]


async def test_a_chunk_that_fails_fails_the_doc_with_every_served_token(
    server_store: Redis, crawl_keys: CrawlKeys
) -> None:
    """One chunk's answers are invalid twice: the doc fails with invalid_output. The other
    chunks' calls, all sent at once and answered at random times up to 0.35 s, are in flight
    when it fails: they are waited for, not cancelled (the provider bills them all the same),
    and the doc carries exactly the tokens the mock served."""
    async with MockLLM(
        api_key=API_KEY,
        json_fault="violating",
        json_fault_match="w0010",
        latency_s=0.05,
        latency_jitter_s=0.3,
        seed=3,
    ) as mock:
        limits = {"max_input_tokens": 300, "max_output_tokens": 60, "max_doc_tokens": 40_000}
        schema = OutputSchema.from_dict(SCHEMA, "p")
        profile = Profile("mock-model", "{text}\n\n" + MAP, 60, schema)
        async with llm_engine(
            server_store, crawl_keys, mock.base_url, API_KEY, concurrency=64, **limits
        ) as (_, engine):
            with pytest.raises(DocFailed) as failed:
                await engine.summarize(Request("https://a.test/", "A", LONG, profile))
        assert failed.value.reason == "invalid_output"
        replies = mock.replies()
        broken = [r for r in replies if "w0010" in r["messages"][0]["content"]]
        assert len(broken) >= 2  # the first answer and the repair's
        assert len(replies) == 27 + 1  # every chunk, and the repair of the broken one
        served = mock.stats()
        assert failed.value.spent.prompt_tokens == served.prompt_tokens > 0
        assert failed.value.spent.completion_tokens == served.completion_tokens
        assert served.cancelled == 0
