"""The mock OpenAI server (tests/mock_llm.py), driven by the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from tests.helpers import MOCK_KEY as KEY
from tests.mock_llm import WINDOW_S, MockConfig, MockLLM, MockStats, _Window

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-mock"
WORDS = [f"w{i}" for i in range(30)]


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def make_client(base_url: str, api_key: str = KEY, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ask(client: openai.AsyncOpenAI, text: str = "hello there", **kw: Any) -> str | None:
    reply: ChatCompletion = await client.chat.completions.create(
        model=MODEL, messages=user(text), **kw
    )
    return reply.choices[0].message.content


# -- the happy path ---------------------------------------------------------------------------


async def test_completion_content_and_usage(mock: MockLLM, client: openai.AsyncOpenAI) -> None:
    system = "You summarize pages."  # 20 chars
    text = " ".join(WORDS)  # 30 words: w0..w9 are 2 chars, w10..w29 are 3 chars -> 109 chars
    reply = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": system}, *user(text)]
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert abs(reply.created - time.time()) < 5
    [choice] = reply.choices
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Summary: " + " ".join(WORDS[:20])
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == (20 + 109) // 4 + 1 == 33
    assert reply.usage.completion_tokens == 21
    assert reply.usage.total_tokens == 54
    stats = mock.stats()
    assert (stats.prompt_tokens, stats.completion_tokens) == (33, 21)
    assert stats.by_status == {200: 1}


async def test_content_parts_and_last_user_message(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "second "},
                    {"type": "text", "text": "question"},
                ],
            },
        ],
    )
    assert reply.choices[0].message.content == "Summary: second question"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == (14 + 9 + 15) // 4 + 1


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_token_limit_caps_words(client: openai.AsyncOpenAI, param: str) -> None:
    reply = await client.chat.completions.create(
        model=MODEL, messages=user(" ".join(WORDS)), **{param: 4}
    )  # type: ignore[call-overload]
    assert reply.choices[0].message.content == "Summary: w0 w1 w2"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4


async def test_models_list_and_retrieve() -> None:
    async with MockLLM(models=("m-a", "m-b")) as server, make_client(server.base_url) as c:
        page = await c.models.list()
        assert [m.id for m in page.data] == ["m-a", "m-b"]
        assert {m.owned_by for m in page.data} == {"mock"}
        assert (await c.models.retrieve("m-b")).id == "m-b"
        with pytest.raises(openai.NotFoundError):
            await c.models.retrieve("m-c")
    async with MockLLM() as server, make_client(server.base_url) as c:
        assert [m.id for m in (await c.models.list()).data] == [MockConfig().default_model]


# -- auth, models, rate limits, 5xx ---------------------------------------------------------


async def test_wrong_api_key_is_401(mock: MockLLM) -> None:
    async with make_client(mock.base_url, api_key="sk-wrong") as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await ask(bad)
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key"
        assert info.value.type == "invalid_request_error"
        assert "Incorrect API key provided" in info.value.message
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()
    assert mock.stats().by_status == {401: 2}
    assert mock.stats().accepted_timestamps == []


async def test_unknown_model_is_404(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.configure(models=[MODEL])
    assert await ask(client) == "Summary: hello there"
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="gpt-nope", messages=user("hi"))
    assert info.value.code == "model_not_found"
    assert "gpt-nope" in info.value.message


async def test_rpm_limit_gives_429_with_retry_after(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    mock.configure(rpm=3)
    for _ in range(3):
        await ask(client)
    with pytest.raises(openai.RateLimitError) as info:
        await ask(client)
    err = info.value
    assert err.status_code == 429
    assert (err.code, err.type) == ("rate_limit_exceeded", "requests")
    retry_after = int(err.response.headers["retry-after"])
    retry_after_ms = int(err.response.headers["retry-after-ms"])
    assert 58 <= retry_after <= 60
    assert 57_000 < retry_after_ms <= 60_000
    assert retry_after == -(-retry_after_ms // 1000)
    stats = mock.stats()
    assert stats.by_status == {200: 3, 429: 1}
    assert stats.rate_limited == 1
    assert len(stats.accepted_timestamps) == 3
    mock.configure(omit_retry_after=True)
    with pytest.raises(openai.RateLimitError) as info:
        await ask(client)
    assert "retry-after" not in info.value.response.headers
    assert "retry-after-ms" not in info.value.response.headers


async def test_tpm_limit(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    # "hello there": prompt 11 // 4 + 1 = 3, completion 3 -> 6 tokens per request
    mock.configure(tpm=13)
    await ask(client)
    await ask(client)
    with pytest.raises(openai.RateLimitError) as info:
        await ask(client)
    assert info.value.type == "tokens"
    assert mock.stats().prompt_tokens + mock.stats().completion_tokens == 12
    mock.configure(tpm=5)  # a single request is larger than the limit
    with pytest.raises(openai.RateLimitError, match="Request too large"):
        await ask(client)


def test_window_slides_over_sixty_seconds() -> None:
    window = _Window()
    for t in (0.0, 10.0, 20.0):
        assert window.check(t, 5, rpm=3, tpm=0) is None
        window.admit(t, 5)
    verdict = window.check(59.5, 5, rpm=3, tpm=0)
    assert verdict is not None
    assert verdict[0] == "requests"
    assert verdict[2] == pytest.approx(0.5)
    assert window.check(WINDOW_S, 5, rpm=3, tpm=0) is None  # the t=0 request left the window
    window = _Window()
    for t in (0.0, 10.0, 20.0):
        window.admit(t, 5)
    # tokens: 15 used; 10 more only fit once the first two requests (t=0, t=10) expire
    verdict = window.check(30.0, 10, rpm=0, tpm=16)
    assert verdict is not None
    assert verdict[0] == "tokens"
    assert verdict[2] == pytest.approx(40.0)


async def test_error_rate_gives_503(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.configure(error_rate_5xx=1.0)
    with pytest.raises(openai.InternalServerError) as info:
        await ask(client)
    assert info.value.status_code == 503
    assert info.value.type == "server_error"


async def test_error_rate_is_seeded(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.configure(error_rate_5xx=0.5, seed=7)

    async def outcomes() -> list[bool]:
        result = []
        for _ in range(24):
            try:
                await ask(client)
                result.append(True)
            except openai.InternalServerError:
                result.append(False)
        return result

    first = await outcomes()
    assert 0 < sum(first) < len(first)
    mock.reset()  # reseeds
    assert await outcomes() == first
    assert mock.stats().by_status == {200: sum(first), 503: len(first) - sum(first)}


# -- fault modes ----------------------------------------------------------------------------


async def test_slow_mode_times_out(mock: MockLLM) -> None:
    mock.configure(mode="slow", slow_s=10.0)
    async with make_client(mock.base_url, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await ask(c)
        assert time.monotonic() - started < 2.0
    for _ in range(50):  # the server sees the disconnect and cancels the handler
        if mock.stats().cancelled:
            break
        await asyncio.sleep(0.02)
    assert mock.stats().cancelled == 1
    assert mock.stats().concurrency == 0


async def test_reset_mode_is_a_connection_error(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.configure(mode="reset")
    with pytest.raises(openai.APIConnectionError) as info:
        await ask(client)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert mock.stats().resets == 1
    assert mock.stats().by_status == {}
    mock.configure(mode="ok")
    assert await ask(client) == "Summary: hello there"  # the client recovers


async def test_malformed_mode_raises_json_decode_error(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    # Observed: openai 3.x does not wrap a broken JSON body, json.JSONDecodeError escapes.
    mock.configure(mode="malformed")
    with pytest.raises(json.JSONDecodeError):
        await ask(client)
    assert mock.stats().by_status == {200: 1}


async def test_empty_choices_mode_returns_an_empty_list(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    # Observed: the client returns the completion as is; the caller must check choices.
    mock.configure(mode="empty_choices")
    reply = await client.chat.completions.create(model=MODEL, messages=user("x"))
    assert reply.choices == []
    assert reply.usage is not None


async def test_error_200_mode_returns_an_object_without_choices(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    # Observed: no exception; a ChatCompletion built without validation, choices is None and
    # the error is kept as an extra field.
    mock.configure(mode="error_200")
    reply = await client.chat.completions.create(model=MODEL, messages=user("x"))
    assert reply.choices is None
    assert reply.model_extra is not None
    assert reply.model_extra["error"]["type"] == "server_error"
    assert mock.stats().prompt_tokens == 0


# -- stats, concurrency, latency ------------------------------------------------------------


async def test_peak_concurrency(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.config.latency_s = 0.2  # plain attribute changes apply to the next request
    started = time.monotonic()
    replies = await asyncio.gather(*(ask(client, f"doc {i}") for i in range(20)))
    elapsed = time.monotonic() - started
    assert replies == [f"Summary: doc {i}" for i in range(20)]
    assert 0.2 <= elapsed < 1.5
    stats = mock.stats()
    assert stats.peak_concurrency == 20
    assert stats.concurrency == 0
    assert stats.requests == 20
    assert len(stats.accepted_timestamps) == 20
    assert max(stats.accepted_timestamps) - min(stats.accepted_timestamps) < 1.0


async def test_hundreds_of_concurrent_requests() -> None:
    async with MockLLM(latency_s=0.3) as server, make_client(server.base_url, timeout=20) as c:
        replies = await asyncio.gather(*(ask(c, f"doc {i}") for i in range(300)))
        assert len(set(replies)) == 300
        assert server.stats().peak_concurrency >= 250
        assert server.stats().by_status == {200: 300}


async def test_latency_jitter(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.configure(latency_s=0.1, latency_jitter_s=0.1)
    durations = []
    for _ in range(5):
        started = time.monotonic()
        await ask(client)
        durations.append(time.monotonic() - started)
    assert min(durations) >= 0.1
    assert max(durations) < 0.35
    assert max(durations) - min(durations) > 0.005  # not a fixed latency


async def test_recorded_requests(client: openai.AsyncOpenAI, mock: MockLLM) -> None:
    mock.configure(record_requests=3)
    for i in range(5):
        await ask(client, f"text {i}", max_tokens=9)
    bodies = mock.requests()
    assert [b["messages"][0]["content"] for b in bodies] == ["text 2", "text 3", "text 4"]
    assert bodies[-1]["max_tokens"] == 9
    assert bodies[-1]["model"] == MODEL


async def test_recorded_replies_pair_messages_with_what_was_served(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    mock.configure(record_requests=2)
    answers = [await ask(client, f"text {i}", max_tokens=9) for i in range(3)]
    mock.configure(mode="empty_choices")  # served no content, no tokens: not a reply
    await client.chat.completions.create(model=MODEL, messages=user("gone"))
    replies = mock.replies()
    assert [r["messages"] for r in replies] == [user("text 1"), user("text 2")]
    assert [r["content"] for r in replies] == answers[1:]
    stats = mock.stats()
    assert sum(r["prompt_tokens"] for r in replies) == stats.prompt_tokens - 2  # "text 0": 2
    assert [r["completion_tokens"] for r in replies] == [3, 3]  # "Summary: text N"
    mock.reset()
    assert mock.replies() == []


async def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="error_rate_5xx"):
        MockLLM(error_rate_5xx=2.0)
    server = MockLLM()
    with pytest.raises(ValueError, match="unknown"):
        server.configure(rpmm=3)
    with pytest.raises(ValueError, match="mode"):
        server.configure(rpm=5, mode="nope")
    assert server.config.rpm == 0  # all or nothing


# -- the HTTP control endpoints -------------------------------------------------------------


async def test_control_endpoints(
    client: openai.AsyncOpenAI, mock: MockLLM, http: aiohttp.ClientSession
) -> None:
    base = mock.server_url
    async with http.post(f"{base}/_config", json={"rpm": 1, "models": [MODEL]}) as resp:
        assert resp.status == 200
        config = await resp.json()
    assert (config["rpm"], config["models"]) == (1, [MODEL])
    assert mock.config.rpm == 1
    await ask(client, "one")
    with pytest.raises(openai.RateLimitError):
        await ask(client, "two")

    async with http.get(f"{base}/stats") as resp:
        stats = MockStats.from_json(await resp.json())
    assert stats.by_status == {200: 1, 429: 1}
    assert stats.rate_limited == 1
    assert stats.requests == 2
    assert len(stats.accepted_timestamps) == 1
    assert abs(stats.accepted_timestamps[0] - time.time()) < 5
    async with http.get(f"{base}/_requests") as resp:
        assert [b["messages"][0]["content"] for b in await resp.json()] == ["one", "two"]

    async with http.post(f"{base}/_reset") as resp:
        assert resp.status == 200
    assert mock.stats() == MockStats()
    assert mock.requests() == []
    await ask(client, "three")  # the rate-limit window was cleared too

    for bad in ({"rpm": "many"}, {"nope": 1}, {"mode": "melt"}, [1]):
        async with http.post(f"{base}/_config", json=bad) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
    async with http.post(f"{base}/_config", json={"api_key": "sk-other"}) as resp:
        assert resp.status == 200
    with pytest.raises(openai.AuthenticationError):
        await ask(client)
    async with http.get(f"{base}/_config") as resp:
        assert (await resp.json())["api_key"] == "sk-other"


async def test_subprocess_entry_point(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mock_llm",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--rpm",
        "2",
        "--latency",
        "0.01",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        word, base_url = line.split()
        assert word == "ready"
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        async with make_client(base_url) as c:
            assert await ask(c, "from a process") == "Summary: from a process"
            await ask(c)
            with pytest.raises(openai.RateLimitError):
                await ask(c)
            async with http.post(
                base_url.removesuffix("/v1") + "/_config", json={"rpm": 0}
            ) as resp:
                assert resp.status == 200
            await ask(c)
        async with http.get(base_url.removesuffix("/v1") + "/stats") as resp:
            stats = MockStats.from_json(await resp.json())
        assert stats.by_status == {200: 3, 429: 1}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
