"""Batch mode's pure parts: the JSONL we send and read, the retry policy, the job records, the
settings' checks, and the job records' script (adoption of a dead poller's job)."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from common.errors import ConfigError, PermanentError
from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner
from common.settings import build_settings
from summarizer.batch import BatchRecord, decode_record, encode_record
from summarizer.batchapi import BatchResult, Next, disposition, parse_results, request_lines
from tests.helpers import FakeClock


def test_request_lines_are_one_chat_completion_request_per_custom_id() -> None:
    data = request_lines({"a": {"model": "m", "messages": []}, "b": {"model": "n"}})
    parsed = [json.loads(line) for line in data.splitlines()]
    assert parsed == [
        {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": []},
        },
        {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "n"}},
    ]


def test_parse_results_reads_answers_errors_and_requests_that_never_ran() -> None:
    ok = {"id": "r1", "custom_id": "a", "response": {"status_code": 200, "body": {"x": 1}}}
    err = {
        "id": "r2",
        "custom_id": "b",
        "response": {"status_code": 429, "body": {"error": {"message": "slow", "code": "rl"}}},
        "error": None,
    }
    expired = {
        "custom_id": "c",
        "response": None,
        "error": {"code": "batch_expired", "message": "late"},
    }
    output = (json.dumps(ok) + "\n").encode()
    errors = (json.dumps(err) + "\nnot json\n\n" + json.dumps(expired) + "\n").encode()
    results = parse_results(output, errors)
    assert set(results) == {"a", "b", "c"}
    assert results["a"].status == 200
    assert json.loads(results["a"].body) == {"x": 1}
    assert (results["b"].status, results["b"].code, results["b"].message) == (429, "rl", "slow")
    assert results["b"].reason == "http_429"
    assert (results["c"].status, results["c"].reason) == (0, "batch_expired")


@pytest.mark.parametrize(
    ("status", "code", "message", "round_", "expected"),
    [
        (200, "", "", 1, Next.OK),
        (0, "batch_expired", "", 1, Next.BATCH),
        (0, "batch_expired", "", 3, Next.LIVE),  # the last round: live
        (429, "", "", 1, Next.BATCH),
        (500, "", "", 2, Next.BATCH),
        (503, "", "", 3, Next.LIVE),
        (400, "", "context length exceeded", 1, Next.FAIL),
        (400, "", "Invalid 'response_format': json_schema", 1, Next.LIVE),
        (404, "model_not_found", "", 1, Next.LIVE),
        (401, "", "", 1, Next.LIVE),
    ],
)
def test_disposition_by_reason(
    status: int, code: str, message: str, round_: int, expected: Next
) -> None:
    assert disposition(BatchResult("x", status, code, message), round_, 3) is expected


def test_a_request_missing_from_both_files_is_retried() -> None:
    assert disposition(None, 1, 2) is Next.BATCH
    assert disposition(None, 2, 2) is Next.LIVE


def test_records_are_versioned() -> None:
    record = BatchRecord(job="j", created_ms=1, docs={"fp": 2}, sent=["fp"], provider_id="b")
    assert decode_record(encode_record(record)) == record
    assert record.holder == "batch:j"
    with pytest.raises(PermanentError, match="version 9"):
        decode_record(encode_record(BatchRecord(v=9, job="j", created_ms=1)))
    with pytest.raises(PermanentError, match="unreadable"):
        decode_record("{")


@pytest.mark.parametrize(
    ("llm", "message"),
    [
        ({"batch_poll_s": 30, "batch_adopt_s": 40}, "twice batch_poll_s"),
        ({"batch_adopt_s": 300, "batch_lease_s": 310}, "must exceed batch_adopt_s"),
        ({"batch_price": 0}, "batch_price"),
        ({"batch_window": "soon"}, "batch_window"),
        ({"mode": "later"}, "llm.mode"),
    ],
)
def test_bad_batch_settings_are_one_config_error(llm: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_settings(llm=llm)


async def _jobs(
    runner: ScriptRunner, keys: CrawlKeys, clock: FakeClock, worker: str, op: str, *args: object
) -> object:
    run = CrawlScripts(runner, keys, clock)
    return await run("llm_batches", [op, worker, 3000, *[str(a) for a in args]])


async def test_a_dead_pollers_job_is_adopted_after_its_hold_lapses(
    server_store: Redis, crawl_keys: CrawlKeys
) -> None:
    runner, clock = ScriptRunner(server_store), FakeClock()
    keys = crawl_keys.crawl_level
    assert await _jobs(runner, keys, clock, "a", "put", "j1", "{rec1}") == 1
    assert await _jobs(runner, keys, clock, "a", "put", "j2", "{rec2}") == 1
    # b may adopt, but a's holds are fresh
    assert await _jobs(runner, keys, clock, "b", "take", 10) == []
    assert await _jobs(runner, keys, clock, "b", "put", "j1", "{b}") == 0  # not b's to write
    clock.advance(2000)
    assert await _jobs(runner, keys, clock, "a", "take", 0) == ["j1", "{rec1}", "j2", "{rec2}"]
    clock.advance(2000)  # a renewed at 2 s: held until 5 s
    assert await _jobs(runner, keys, clock, "b", "take", 10) == []
    clock.advance(1500)  # a died: its holds lapsed; b adopts one of them (max 1)
    assert await _jobs(runner, keys, clock, "b", "take", 1) == ["j1", "{rec1}"]
    assert await _jobs(runner, keys, clock, "a", "put", "j1", "{a-late}") == 0
    assert await _jobs(runner, keys, clock, "b", "take", 5) == ["j1", "{rec1}", "j2", "{rec2}"]
    assert await _jobs(runner, keys, clock, "a", "drop", "j2") == 0
    assert await _jobs(runner, keys, clock, "b", "drop", "j2") == 1
    # released at shutdown: adopted at once
    await _jobs(runner, keys, clock, "b", "release", "j1")
    assert await _jobs(runner, keys, clock, "c", "take", 5) == ["j1", "{rec1}"]
    assert await server_store.hkeys(keys.llm_batches) == ["j1"]
