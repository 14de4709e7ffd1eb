"""Batch mode (``--llm-mode batch``) against the mock's Batch API, summarizers as processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import openai
import pytest

from common.docsqueue import DocsStats
from distcrawl.export import export_summaries
from distcrawl.sample_docs import make_docs
from tests.docscrawl import DocsCrawl
from tests.processes import MockProcess, log_events

API_KEY = "sk-test-0123456789abcdef"
PRICE = (1.0, 2.0)  # USD per million tokens of mock-model: input, output
BATCH_PRICE = 0.5


def _env(mock: MockProcess, **extra: str) -> dict[str, str]:
    return {
        **mock.worker_env(API_KEY),
        "DISTCRAWL_LLM__MODE": "batch",
        "DISTCRAWL_LLM__PRICES": json.dumps({"mock-model": PRICE}),
        "DISTCRAWL_LLM__BATCH_POLL_S": "0.3",
        "DISTCRAWL_LLM__BATCH_ADOPT_S": "2",
        "DISTCRAWL_LLM__BATCH_GATHER_S": "0",
        "DISTCRAWL_WORKER__HEARTBEAT_S": "1",
        "DISTCRAWL_LOG_FORMAT": "json",
        **extra,
    }


def _cost(ptok: int, ctok: int, price: float) -> float:
    return (ptok * PRICE[0] + ctok * PRICE[1]) / 1_000_000 * price


async def _wait_for_sent(docs_crawl: DocsCrawl, n: int, state: str | None = None) -> None:
    """Until ``n`` docs are in batch jobs (jobs in ``state``, when given)."""
    deadline = time.monotonic() + 60
    while True:
        jobs = await docs_crawl.batch_jobs()
        if sum(len(j.sent) for j in jobs if state in (None, j.state)) == n:
            return
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.1)


def _assert_all_summarized(stats: DocsStats, n: int) -> None:
    assert (stats.summarized, stats.failed, stats.pending) == (n, 0, 0)
    assert stats.balanced


async def test_thousand_docs_in_several_batches_at_the_batch_price(
    docs_crawl: DocsCrawl,
    mock_factory: type[MockProcess],
    tmp_path: Path,
) -> None:
    mock = mock_factory("--api-key", API_KEY, "--batch-delay", "1")
    docs = make_docs(1000)
    await docs_crawl.feed(docs)
    env = _env(mock, DISTCRAWL_LLM__BATCH_SIZE="300")
    await docs_crawl.drain(env)
    stats = await docs_crawl.stats()
    _assert_all_summarized(stats, 1000)
    served = mock.stats()
    assert served["batches"] == 4  # 300 + 300 + 300 + 100
    assert served["batch_requests"] == 1000  # every doc answered once, in a batch...
    assert mock.requests() == []  # ...and none live
    assert served["prompt_tokens"] == 0
    records = await docs_crawl.records()
    assert set(records) == {d.fp for d in docs}
    assert all(r["summary"].startswith("Summary: ") for r in records.values())
    ptok = sum(r["prompt_tokens"] for r in records.values())
    ctok = sum(r["completion_tokens"] for r in records.values())
    assert (ptok, ctok) == (served["batch_prompt_tokens"], served["batch_completion_tokens"])
    for r in records.values():
        assert r["cost_usd"] == pytest.approx(
            _cost(r["prompt_tokens"], r["completion_tokens"], BATCH_PRICE), abs=1e-8
        )
    assert stats.per_model("cost_micro_usd")["mock-model"] == pytest.approx(
        _cost(ptok, ctok, BATCH_PRICE) * 1e6, abs=1000
    )
    assert await docs_crawl.batch_jobs() == []  # finished jobs are forgotten
    await export_summaries(docs_crawl.queue, tmp_path)  # (what `distcrawl export` writes)
    lines = (tmp_path / "summaries.jsonl").read_text().splitlines()
    assert len(lines) == 1000
    assert len({json.loads(line)["url"] for line in lines}) == 1000


@pytest.mark.slow
async def test_a_sigkilled_summarizers_batches_are_finished_by_another(
    docs_crawl: DocsCrawl,
    mock_factory: type[MockProcess],
    tmp_path: Path,
) -> None:
    mock = mock_factory("--api-key", API_KEY, "--batch-delay", "6")
    docs = make_docs(1000)
    await docs_crawl.feed(docs)
    env = _env(mock, DISTCRAWL_LLM__BATCH_SIZE="250", DISTCRAWL_LLM__BATCH_IN_FLIGHT="4")
    victim = docs_crawl.spawn(env)
    await _wait_for_sent(docs_crawl, 1000, "submitted")  # all in flight at the provider
    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.communicate, timeout=10)
    assert mock.stats()["batches"] == 4
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.in_flight) == (0, 1000)  # held by the batches, not settled
    err = await docs_crawl.drain(env)
    assert len(log_events(err, "batch_adopted")) == 4
    stats = await docs_crawl.stats()
    _assert_all_summarized(stats, 1000)
    assert stats.counts.get("docs_reaped", 0) == 0  # no lease expired: the batches held them
    served = mock.stats()
    assert served["batches"] == 4  # adopted, not sent again
    assert served["batch_requests"] == 1000
    records = await docs_crawl.records()
    assert set(records) == {d.fp for d in docs}
    assert {r["attempts"] for r in records.values()} == {1}
    ptok = sum(r["prompt_tokens"] for r in records.values())
    assert ptok == served["batch_prompt_tokens"]
    assert stats.per_model("prompt_tokens") == {"mock-model": ptok}
    assert await docs_crawl.batch_jobs() == []
    await export_summaries(docs_crawl.queue, tmp_path)
    lines = (tmp_path / "summaries.jsonl").read_text().splitlines()
    urls = [json.loads(line)["url"] for line in lines]
    assert sorted(urls) == sorted(d.url for d in docs)  # one line per doc


async def test_failed_requests_go_to_later_batches_then_live(
    docs_crawl: DocsCrawl,
    mock_factory: type[MockProcess],
) -> None:
    mock = mock_factory(
        "--api-key", API_KEY, "--batch-error-rate", "0.3", "--batch-expire-share", "0.1"
    )
    docs = make_docs(200)
    await docs_crawl.feed(docs)
    env = _env(mock, DISTCRAWL_LLM__BATCH_ROUNDS="2")
    await docs_crawl.drain(env)
    stats = await docs_crawl.stats()
    _assert_all_summarized(stats, 200)
    served = mock.stats()
    assert served["batches"] == 2  # round 2 took the failed and expired requests of round 1
    # what failed in round 2 (the last) was summarized live, at the live price
    assert served["batch_failed"] > 20
    records = await docs_crawl.records()
    assert len(records) == 200
    live_records = [
        r
        for r in records.values()
        if r["cost_usd"]
        == pytest.approx(_cost(r["prompt_tokens"], r["completion_tokens"], 1.0), abs=1e-8)
    ]
    assert 0 < len(live_records) < 60
    assert served["prompt_tokens"] == sum(r["prompt_tokens"] for r in live_records)
    assert len(mock.requests()) == len(live_records)  # one live call each


async def test_schema_extraction_and_long_pages_in_batch_mode(
    docs_crawl: DocsCrawl,
    mock_factory: type[MockProcess],
    tmp_path: Path,
) -> None:
    mock = mock_factory("--api-key", API_KEY)
    schema = tmp_path / "topic.json"
    schema.write_text(
        json.dumps(
            {
                "title": "topic",
                "type": "object",
                "properties": {"topic": {"type": "string"}},
                "required": ["topic"],
                "additionalProperties": False,
            }
        )
    )
    docs = make_docs(20)
    long_doc = make_docs(1, text="word " * 2000, host="long.test")  # 2x the input budget
    await docs_crawl.feed(docs + long_doc)
    env = _env(mock, DISTCRAWL_LLM__MAX_INPUT_TOKENS="1000")
    await docs_crawl.drain(env, "--llm-schema", str(schema))
    stats = await docs_crawl.stats()
    _assert_all_summarized(stats, 21)
    records = await docs_crawl.records()
    assert all(isinstance(r["data"]["topic"], str) for r in records.values())
    assert {r["schema"] for r in records.values()} == {"topic"}
    long_record = records[long_doc[0].fp]
    assert long_record["chunks"] > 1  # map-reduce, live
    served = mock.stats()
    assert served["batch_requests"] == 20
    assert served["prompt_tokens"] == long_record["prompt_tokens"]
    # every batch request asked for the schema's JSON (response_format per request)
    client = openai.OpenAI(base_url=mock.base_url, api_key=API_KEY, max_retries=0)
    [batch] = client.batches.list().data
    lines = client.files.content(batch.input_file_id).text.splitlines()
    bodies = [json.loads(line)["body"] for line in lines]
    assert len(bodies) == 20
    assert {b["response_format"]["type"] for b in bodies} == {"json_schema"}
    assert {b["response_format"]["json_schema"]["name"] for b in bodies} == {"topic"}


async def test_a_sigtermed_summarizer_lets_go_of_its_batches_at_once(
    docs_crawl: DocsCrawl,
    mock_factory: type[MockProcess],
) -> None:
    mock = mock_factory("--api-key", API_KEY, "--batch-delay", "3")
    await docs_crawl.feed(make_docs(300))
    # adoption after a lapsed hold would take 300 s, far past the second worker's timeout
    env = _env(
        mock,
        DISTCRAWL_LLM__BATCH_SIZE="100",
        DISTCRAWL_LLM__BATCH_ADOPT_S="300",
        DISTCRAWL_WORKER__GRACE_S="0.5",
    )
    first = docs_crawl.spawn(env)
    await _wait_for_sent(docs_crawl, 300)
    first.send_signal(signal.SIGTERM)
    _, err = await asyncio.to_thread(first.communicate, timeout=30)
    assert first.returncode == 0, err
    assert await docs_crawl.redis.hlen(docs_crawl.keys.llm_batch_pollers) == 0  # no job held...
    assert len(await docs_crawl.batch_jobs()) == 3  # ...and every job kept
    err = await docs_crawl.drain(env)
    assert len(log_events(err, "batch_adopted")) == 3
    _assert_all_summarized(await docs_crawl.stats(), 300)
    assert mock.stats()["batches"] == 3
