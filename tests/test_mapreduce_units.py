"""Long pages, the parts without I/O: chunking, the plan under --llm-max-doc-tokens, reduce
groups, the schema-aware merge, the per-doc budget."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re

import pytest

from common.errors import ConfigError, PermanentError
from common.settings import LLMSettings, build_settings
from crawler.produce import build_spec
from summarizer.budget import token_counter
from summarizer.engines import DocFailed, Summary
from summarizer.mapreduce import (
    DOC_FAILED,
    MAX_DOC_TOKENS,
    DocBudget,
    Shape,
    gather_all,
    merge,
    pack,
    plan,
    resolve,
    worst_cost,
)

COUNTER = token_counter("no-such-model")  # the 4-characters-per-token estimate
WORDS = [f"w{i:05d}" for i in range(3000)]
TEXT = " ".join(WORDS)  # 20,999 characters, 5,250 estimated tokens


def test_chunks_fit_the_size_overlap_and_cover_the_text_in_order() -> None:
    chunks = COUNTER.split(TEXT, 500, 50)
    assert len(chunks) == 12  # 5,250 tokens in steps of about 450
    assert all(COUNTER.count(c) <= 500 for c in chunks)
    seen = [w for c in chunks for w in c.split()]
    assert all(re.fullmatch(r"w\d{5}", w) for w in seen)  # no word split at a border
    assert list(dict.fromkeys(seen)) == WORDS  # every word, in order
    for before, after in itertools.pairwise(chunks):
        shared = set(before.split()) & set(after.split())
        assert 20 <= len(shared) <= 34  # about 50 tokens: 200 characters, 7 per word
        assert after.split()[0] in shared
    assert COUNTER.split("short text", 500, 50) == ["short text"]
    with pytest.raises(ValueError, match="overlap"):
        COUNTER.split(TEXT, 100, 100)


SHAPE = Shape(
    room=480, map_frame=20, reduce_frame=30, max_input=500, max_tokens=50, extraction=False
)


def test_the_plan_keeps_the_chunks_whose_worst_cost_fits_the_cap() -> None:
    chunks = COUNTER.split(TEXT, SHAPE.room, 50)
    full = worst_cost(SHAPE, [COUNTER.count(c) for c in chunks])
    assert plan(SHAPE, chunks, COUNTER, full) == (chunks, False)
    kept, truncated = plan(SHAPE, chunks, COUNTER, full - 1)
    assert truncated
    assert kept == chunks[: len(kept)]
    assert len(kept) == len(chunks) - 1
    small, _ = plan(SHAPE, chunks, COUNTER, 2000)
    assert worst_cost(SHAPE, [COUNTER.count(c) for c in small]) <= 2000
    assert worst_cost(SHAPE, [COUNTER.count(c) for c in chunks[: len(small) + 1]]) > 2000
    assert plan(SHAPE, chunks, COUNTER, 1) == (chunks[:1], True)  # one call at least


def test_worst_cost_counts_every_reduce_level() -> None:
    # 56 tokens per answer and its label: (500 - 30) // 56 = 8 summaries per reduce call
    one_level = worst_cost(SHAPE, [100] * 8) - 8 * (20 + 100 + 50)
    assert one_level == 30 + 8 * 56 + 50
    two_levels = worst_cost(SHAPE, [100] * 9) - 9 * (20 + 100 + 50)
    assert two_levels == 2 * (30 + 50) + 9 * 56 + (30 + 2 * 56 + 50)
    extraction = dataclasses.replace(SHAPE, extraction=True)  # one reduce call
    assert worst_cost(extraction, [100] * 9) == 9 * 170 + 30 + 9 * 56 + 50


def test_reduce_groups_fit_and_keep_the_order() -> None:
    parts = [f"summary {i} " + "x" * 80 for i in range(11)]  # 24 tokens + 6 for the label
    groups = pack(parts, COUNTER, 100)
    assert [p for g in groups for p in g] == parts
    assert [len(g) for g in groups] == [3, 3, 3, 2]
    assert [len(g) for g in pack(parts[:10], COUNTER, 100)] == [3, 3, 3, 1]
    assert all(sum(COUNTER.count(p) + 6 for p in g) <= 100 for g in groups)
    # a part too big for the room still goes two to a group (every level shrinks)
    assert [len(g) for g in pack(["y" * 800] * 5, COUNTER, 100)] == [2, 2, 1]


def test_merge_concatenates_arrays_merges_objects_and_finds_disagreeing_scalars() -> None:
    chunks = [
        {"title": "A", "tags": ["x", "y"], "price": None, "seller": {"name": "S", "id": 1}},
        {"title": "A", "tags": ["y", "z"], "price": 9.5, "seller": {"id": 2, "city": "Oslo"}},
        {"title": "B", "tags": [{"k": 1}], "price": 9.5, "seller": {"id": 1}, "note": ""},
    ]
    merged = merge(chunks)
    assert merged.value == {
        "title": "A",
        "tags": ["x", "y", "z", {"k": 1}],
        "price": 9.5,  # the chunks that had it agree (null is "not found here")
        "seller": {"name": "S", "id": 1, "city": "Oslo"},
        "note": "",
    }
    assert merged.conflicts == {"/title": ["A", "B"], "/seller/id": [1, 2]}
    assert merge([{"a": [1, {"b": 2}]}, {"a": [{"b": 2}, 1, 3]}]).value == {"a": [1, {"b": 2}, 3]}
    assert merge([{"a": 1}, {"a": "1"}]).conflicts == {"/a": [1, "1"]}  # types disagree
    assert merge([{"a/b": 1}, {"a/b": 2}]).conflicts == {"/a~1b": [1, 2]}


def test_resolve_takes_the_reduce_answer_only_where_chunks_disagreed() -> None:
    merged = merge([{"t": "A", "n": {"id": 1}, "tags": ["x"]}, {"t": "B", "n": {"id": 2}}])
    answer = {"t": "A and B", "n": {"id": 7}, "tags": ["made up"]}
    assert resolve(merged, answer) == {"t": "A and B", "n": {"id": 7}, "tags": ["x"]}
    assert resolve(merged, {"t": "C"}) == {"t": "C", "n": {"id": 1}, "tags": ["x"]}


def test_the_doc_budget_books_before_and_counts_what_was_served() -> None:
    budget = DocBudget(1000)
    budget.book(600)
    with pytest.raises(DocFailed) as refused:
        budget.book(401)  # 600 booked: a second call of 401 could pass the cap
    assert refused.value.reason == MAX_DOC_TOKENS
    budget.settle(600, Summary("s", "m", prompt_tokens=300, completion_tokens=50, calls=1))
    budget.book(650)  # 350 spent, the booking gone
    budget.settle(650, None)  # a call that failed spends nothing
    assert (budget.spent, budget.prompt_tokens, budget.completion_tokens) == (350, 300, 50)
    with pytest.raises(DocFailed) as over:
        budget.book(651)
    assert (over.value.spent.prompt_tokens, over.value.spent.completion_tokens) == (300, 50)


def test_the_doc_cap_must_hold_one_call_and_defaults_to_five_input_budgets() -> None:
    llm = LLMSettings(max_input_tokens=1000)
    assert (llm.doc_token_cap, llm.doc_tokens) == (5000, 5000)
    cut = LLMSettings(max_input_tokens=1000, long_pages="cut", max_doc_tokens=9000)
    assert (cut.doc_token_cap, cut.doc_tokens) == (9000, 1000)  # docs carry one call's text
    with pytest.raises(ConfigError, match=r"max_doc_tokens \(1200\) must be at least"):
        build_settings(llm={"max_input_tokens": 1000, "max_doc_tokens": 1200})
    with pytest.raises(ConfigError, match="chunk_overlap_tokens"):
        build_settings(llm={"max_input_tokens": 1000, "chunk_overlap_tokens": 600})


def test_a_crawl_spec_keeps_the_text_its_summarizers_may_read() -> None:
    """The producer sets the crawl's doc_max_chars: 6 characters per token of the doc cap with
    map-reduce, of one call's input with cut."""
    assert build_spec(build_settings(), ["http://a.test/"]).doc_max_chars == 6 * 15_000
    raised = build_settings(llm={"max_doc_tokens": 40_000})
    assert build_spec(raised, ["http://a.test/"]).doc_max_chars == 6 * 40_000
    cut = build_settings(llm={"long_pages": "cut", "max_doc_tokens": 40_000})
    assert build_spec(cut, ["http://a.test/"]).doc_max_chars == 6 * 3000


async def test_after_a_failure_calls_not_sent_stop_and_the_real_error_is_raised() -> None:
    budget = DocBudget(10_000)
    order: list[str] = []

    async def call(name: str, delay: float, fail: bool = False) -> str:
        await asyncio.sleep(delay)
        if fail:
            order.append(f"{name} failed")
            raise PermanentError("bad answer", reason="invalid_output")
        budget.book(10)  # a call about to be sent
        budget.settle(10, Summary(name, "m", 1, 1, 1))
        order.append(name)
        return name

    assert await gather_all([call("a", 0), call("b", 0)], budget.close) == ["a", "b"]
    with pytest.raises(PermanentError) as failed:
        await gather_all([call("c", 0), call("d", 0.01, fail=True), call("e", 0.05)], budget.close)
    assert failed.value.reason == "invalid_output"  # not the doc_failed of the call stopped
    assert order == ["a", "b", "c", "d failed"]
    assert budget.closed
    with pytest.raises(DocFailed) as stopped:
        budget.check()
    assert stopped.value.reason == DOC_FAILED
