"""Both LLM transports (direct aiohttp, AsyncOpenAI.post) against the mock and a header probe.

Each answer and each failure must come out the same, whichever transport sent the request: the
same bytes for a 2xx, and after summarizer.retry's translation the same error class, reason and
Retry-After. The direct transport must send the request the AsyncOpenAI client would send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from redis.asyncio import Redis

from common.errors import ConfigError, DistcrawlError, PermanentError, RetryableError
from common.keys import CrawlKeys
from common.scripts import ScriptRunner
from common.settings import LLMSettings
from distcrawl.redis_server import free_port
from summarizer.client import OpenAIEngine, _decode_completion, open_client
from summarizer.engines import Request
from summarizer.limiter import AdaptiveLimit, SharedRateLimiter
from summarizer.profiles import Profile
from summarizer.retry import translate_openai_error
from summarizer.transport import ChatTransport
from tests.helpers import MOCK_KEY as KEY
from tests.mock_llm import MockLLM

TRANSPORTS = ["direct", "openai"]
BODY: dict[str, Any] = {
    "model": "mock-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Alpha beta gamma delta."}],
}


def _transport(
    kind: str, base_url: str, *, key: str = KEY, timeout_s: float = 10.0
) -> ChatTransport:
    llm = LLMSettings(
        base_url=base_url, api_key=SecretStr(key), transport=kind, timeout_s=timeout_s
    )
    return open_client(llm, key)


async def _send(transport: ChatTransport, body: dict[str, Any] = BODY) -> bytes:
    try:
        return await transport.send(body)
    finally:
        await transport.aclose()


async def _error(transport: ChatTransport, body: dict[str, Any] = BODY) -> DistcrawlError:
    try:
        await _send(transport, body)
    except Exception as exc:  # what the engine does with whatever the transport raised
        return translate_openai_error(exc)
    raise AssertionError("the request succeeded")


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_answer_comes_back_whole(kind: str, mock: MockLLM) -> None:
    completion = _decode_completion(await _send(_transport(kind, mock.base_url)))
    assert completion.choices
    assert completion.choices[0].message
    assert (completion.choices[0].message.content or "").startswith("Summary: Alpha beta")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert mock.requests()[-1]["messages"] == BODY["messages"]
    assert mock.requests()[-1]["max_tokens"] == 64


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_status_errors_translate_the_same(kind: str, mock: MockLLM) -> None:
    wrong_key = await _error(_transport(kind, mock.base_url, key="sk-wrong-0000"))
    assert isinstance(wrong_key, ConfigError)
    assert "refused the credentials (HTTP 401)" in str(wrong_key)

    bad_body = await _error(_transport(kind, mock.base_url), {"model": "mock-model"})
    assert isinstance(bad_body, PermanentError)
    assert bad_body.reason == "http_400"

    mock.configure(models=("another-model",))
    unknown = await _error(_transport(kind, mock.base_url))
    assert isinstance(unknown, ConfigError)
    assert "HTTP 404" in str(unknown)

    mock.configure(models=None, rpm=1)
    await _send(_transport(kind, mock.base_url))  # the one request of this minute
    limited = await _error(_transport(kind, mock.base_url))
    assert isinstance(limited, RetryableError)
    assert limited.reason == "http_429"
    assert limited.retry_after_s is not None
    assert 50 < limited.retry_after_s <= 60

    mock.configure(rpm=0, mode="quota")  # 429, but billing: retrying cannot help
    no_quota = await _error(_transport(kind, mock.base_url))
    assert isinstance(no_quota, ConfigError)
    assert "no quota left" in str(no_quota)

    mock.configure(mode="ok", error_rate_5xx=1.0)
    overloaded = await _error(_transport(kind, mock.base_url))
    assert isinstance(overloaded, RetryableError)
    assert overloaded.reason == "http_503"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_slow_answer_is_a_timeout(kind: str, mock: MockLLM) -> None:
    mock.configure(latency_s=2.0)
    err = await _error(_transport(kind, mock.base_url, timeout_s=0.3))
    assert isinstance(err, RetryableError)
    assert err.reason == "timeout"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_reset_or_refused_connection_is_a_connection_error(
    kind: str, mock: MockLLM
) -> None:
    mock.configure(mode="reset")
    reset = await _error(_transport(kind, mock.base_url))
    assert isinstance(reset, RetryableError)
    assert reset.reason == "connection"
    refused = await _error(_transport(kind, f"http://127.0.0.1:{free_port()}/v1"))
    assert isinstance(refused, RetryableError)
    assert refused.reason == "connection"


@contextlib.asynccontextmanager
async def _probe() -> AsyncIterator[tuple[int, list[web.Request]]]:
    """An HTTP server on 127.0.0.1 that records every request and answers a completion."""
    seen: list[web.Request] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"choices": [{"message": {"content": "ok"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", capture)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_direct_sends_the_headers_the_openai_client_sends() -> None:
    """Every header AsyncOpenAI.post sends, the direct transport sends with the same value,
    except the three openai sets per attempt (retry count, read timeout, idempotency key)."""
    async with _probe() as (port, seen):
        for kind in ("openai", "direct"):
            await _send(_transport(kind, f"http://127.0.0.1:{port}/v1"))
    via_openai, direct = ({k.lower(): v for k, v in r.headers.items()} for r in seen)
    per_attempt = {"x-stainless-retry-count", "x-stainless-read-timeout", "idempotency-key"}
    transport_level = {"host", "content-length", "accept-encoding", "connection"}
    expected = {k: v for k, v in via_openai.items() if k not in per_attempt | transport_level}
    assert {"authorization", "user-agent", "content-type", "x-stainless-async"} <= set(expected)
    assert {k: direct.get(k) for k in expected} == expected
    assert direct["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_proxy_from_the_environment_is_used(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY applies to both transports (openai's honour it, so the direct one must)."""
    async with _probe() as (port, seen):
        for name in (
            "NO_PROXY",
            "no_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
        await _send(_transport(kind, "http://llm.example.invalid/v1"))
    [request] = seen  # the request reached the proxy, asking for the API's host
    assert request.host == "llm.example.invalid"


async def test_429s_and_failures_have_separate_budgets(
    mock: MockLLM, store: Redis, crawl_keys: CrawlKeys
) -> None:
    """The engine's retries: a doc fails after max_failed_calls failed calls, or after
    max_rate_limited 429s (the provider pacing), whichever budget runs out; never more calls."""
    llm = LLMSettings(
        base_url=mock.base_url,
        api_key=SecretStr(KEY),
        max_failed_calls=2,
        max_rate_limited=4,
        timeout_s=10,
    )
    engine = OpenAIEngine(
        open_client(llm, KEY),
        llm,
        SharedRateLimiter(ScriptRunner(store), crawl_keys, 0, 0),
        AdaptiveLimit(8),
        lambda *_: None,
    )
    profile = Profile("mock-model", llm.prompt, 32)
    request = Request("https://a.test/", "A", "Alpha beta gamma.", profile)
    try:
        mock.configure(rpm=1, omit_retry_after=True)  # one request a minute, 429s after it
        assert (await engine.summarize(request)).text.startswith("Summary: ")
        with pytest.raises(PermanentError) as limited:
            await engine.summarize(request)
        assert limited.value.reason == "http_429"
        assert mock.stats().by_status == {200: 1, 429: 4}  # four 429s, though max_failed_calls=2
        mock.reset()
        mock.configure(rpm=0, error_rate_5xx=1.0)
        with pytest.raises(PermanentError) as failing:
            await engine.summarize(request)
        assert failing.value.reason == "http_503"
        assert mock.stats().by_status == {503: 2}  # max_failed_calls calls, no back-off after
    finally:
        await engine.aclose()
