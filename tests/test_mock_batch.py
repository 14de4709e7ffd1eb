"""The mock's Files and Batch API (tests/mock_batch.py), driven by the real ``openai`` client."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.mock_llm import MockLLM, completion_tokens, prompt_tokens

MODEL = "gpt-mock"


def lines(n: int, **extra: Any) -> bytes:
    out = []
    for i in range(n):
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"page {i} text"}]}
        out.append(
            {
                "custom_id": f"doc-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
                **extra,
            }
        )
    return "".join(json.dumps(line) + "\n" for line in out).encode()


async def submit(client: openai.AsyncOpenAI, data: bytes) -> str:
    uploaded = await client.files.create(file=("in.jsonl", data), purpose="batch")
    assert uploaded.purpose == "batch"
    assert uploaded.bytes == len(data)
    batch = await client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "j1"},
    )
    assert batch.input_file_id == uploaded.id
    assert batch.metadata == {"job": "j1"}
    return batch.id


async def read(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = (await client.files.content(file_id)).text
    return [json.loads(line) for line in text.splitlines()]


async def test_a_batch_runs_and_its_output_file_answers_each_request(
    mock: MockLLM, client: openai.AsyncOpenAI
) -> None:
    mock.configure(batch_delay_s=3600)
    batch_id = await submit(client, lines(5))
    batch = await client.batches.retrieve(batch_id)
    assert batch.status == "in_progress"
    assert batch.output_file_id is None
    assert batch.request_counts is not None
    assert batch.request_counts.total == 5
    mock.configure(batch_delay_s=0)
    batch = await client.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.completed_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (5, 0)
    assert batch.error_file_id is None
    output = await read(client, batch.output_file_id)
    assert [o["custom_id"] for o in output] == [f"doc-{i}" for i in range(5)]
    first = output[0]["response"]
    assert first["status_code"] == 200
    content = first["body"]["choices"][0]["message"]["content"]
    assert content == "Summary: page 0 text"
    messages = [{"role": "user", "content": "page 0 text"}]
    assert first["body"]["usage"]["prompt_tokens"] == prompt_tokens(messages)
    assert first["body"]["usage"]["completion_tokens"] == completion_tokens(content)
    stats = mock.stats()
    assert (stats.batches, stats.batch_requests, stats.batch_failed) == (1, 5, 0)
    assert stats.batch_prompt_tokens == sum(
        o["response"]["body"]["usage"]["prompt_tokens"] for o in output
    )
    assert stats.prompt_tokens == 0  # batch tokens are counted apart from live ones


async def test_partial_failures_go_to_the_error_file(
    mock: MockLLM, client: openai.AsyncOpenAI
) -> None:
    mock.configure(batch_error_rate=0.5, seed=3)
    batch = await client.batches.retrieve(await submit(client, lines(40)))
    assert batch.status == "completed"
    output = await read(client, batch.output_file_id)
    errors = await read(client, batch.error_file_id)
    assert 5 < len(errors) < 35
    assert len(output) + len(errors) == 40
    assert {e["response"]["status_code"] for e in errors} == {500}
    assert all(e["response"]["body"]["error"]["type"] == "server_error" for e in errors)
    ids = {o["custom_id"] for o in output} | {e["custom_id"] for e in errors}
    assert ids == {f"doc-{i}" for i in range(40)}
    assert mock.stats().batch_failed == len(errors)


async def test_an_expired_batch_keeps_what_ran_and_lists_the_rest(
    mock: MockLLM, client: openai.AsyncOpenAI
) -> None:
    mock.configure(batch_expire_share=0.25)
    batch = await client.batches.retrieve(await submit(client, lines(8)))
    assert batch.status == "expired"
    assert batch.expired_at is not None
    output = await read(client, batch.output_file_id)
    errors = await read(client, batch.error_file_id)
    assert [o["custom_id"] for o in output] == [f"doc-{i}" for i in range(6)]
    assert [e["custom_id"] for e in errors] == ["doc-6", "doc-7"]
    assert all(e["response"] is None for e in errors)
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}


async def test_a_bad_input_file_fails_the_batch(client: openai.AsyncOpenAI) -> None:
    good = lines(2)
    bad = good + b'{"custom_id": "x", "method": "GET", "url": "/v1/models", "body": {}}\n'
    batch = await client.batches.retrieve(await submit(client, bad))
    assert batch.status == "failed"
    assert batch.errors is not None
    assert batch.errors.data
    assert batch.errors.data[0].line == 3
    assert batch.output_file_id is None


async def test_a_request_the_api_refuses_is_a_400_line(
    mock: MockLLM, client: openai.AsyncOpenAI
) -> None:
    bad = json.dumps(
        {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"x": 1}}
    )
    batch = await client.batches.retrieve(await submit(client, lines(1) + bad.encode() + b"\n"))
    assert batch.status == "completed"
    [error] = await read(client, batch.error_file_id)
    assert error["custom_id"] == "c"
    assert error["response"]["status_code"] == 400
    assert "model" in error["response"]["body"]["error"]["message"]
    assert mock.stats().batch_requests == 1


async def test_cancel_and_unknown_ids(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    mock.configure(batch_delay_s=3600)
    batch_id = await submit(client, lines(3))
    cancelled = await client.batches.cancel(batch_id)
    assert cancelled.status == "cancelled"
    errors = await read(client, cancelled.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        await client.files.content("file-nope")
    listed = await client.batches.list()
    assert [b.id for b in listed.data] == [batch_id]


async def test_files_and_batches_need_the_key(mock: MockLLM) -> None:
    async with openai.AsyncOpenAI(
        base_url=mock.base_url, api_key="sk-wrong", max_retries=0, timeout=5
    ) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.files.create(file=("in.jsonl", lines(1)), purpose="batch")
        with pytest.raises(openai.AuthenticationError):
            await bad.batches.retrieve("batch_x")
