"""The summarizer's one retry layer: openai's exceptions are translated here and nowhere else.

- 401/403, 404 (unknown model or endpoint) and 429 ``insufficient_quota`` (billing, not
  pacing): ``ConfigError``. The worker stops with one
  line: it is configuration, not data, and the docs stay queued.
- 400/422: ``PermanentError``, this doc fails with the reason.
- 408/409/429/5xx, timeouts, connection errors, malformed answers: ``RetryableError``, carrying
  the provider's ``retry-after-ms`` / ``Retry-After`` when given.
"""

from __future__ import annotations

import aiohttp
import openai

from common.backoff import retry_after_from_headers
from common.errors import (
    ConfigError,
    DistcrawlError,
    PermanentError,
    RetryableError,
    find_cause,
)

__all__ = ["passing_trouble", "translate_openai_error"]

# The reasons of the RetryableErrors made here (besides http_<status>).
TIMEOUT, CONNECTION, BAD_RESPONSE, CLIENT_ERROR = (
    "timeout",
    "connection",
    "bad_response",
    "client_error",
)


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def passing_trouble(reason: str) -> bool:
    """Whether a doc that failed with ``reason`` failed because its retries ran out on a
    retryable error (the API down, slow, pacing us, dropping connections, answering garbage)
    rather than on the doc itself: such a doc is dead-lettered with its text, for
    `distcrawl requeue --docs` to replay after the trouble."""
    if reason in (TIMEOUT, CONNECTION, BAD_RESPONSE, CLIENT_ERROR):
        return True
    status = reason.removeprefix("http_")
    return status != reason and status.isdigit() and _retryable_status(int(status))


def translate_openai_error(exc: Exception) -> DistcrawlError:
    if isinstance(exc, DistcrawlError):
        return exc
    if isinstance(exc, openai.APITimeoutError) and not _disconnected(exc):
        return RetryableError("LLM request timed out", reason=TIMEOUT)
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"cannot reach the LLM API: {exc}", reason=CONNECTION)
    if isinstance(exc, openai.APIStatusError):
        return _from_status(exc)
    if isinstance(exc, openai.APIResponseValidationError | ValueError | KeyError | IndexError):
        return RetryableError(f"malformed LLM response: {exc}", reason=BAD_RESPONSE)
    if isinstance(exc, openai.OpenAIError):
        return RetryableError(f"LLM client error: {exc}", reason=CLIENT_ERROR)
    raise exc


def _disconnected(exc: BaseException) -> bool:
    """True when a "timeout" was really a dropped or refused connection: httpx-aiohttp
    (openai's DefaultAioHttpClient) reports aiohttp's ServerDisconnectedError and
    ClientConnectorError as httpx.ConnectTimeout, and neither is congestion (they must not
    lower the adaptive limit)."""
    return (
        find_cause(
            exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectorError, ConnectionError)
        )
        is not None
    )


def _from_status(exc: openai.APIStatusError) -> DistcrawlError:
    status = exc.status_code
    message = _message(exc)
    if status == 429 and _code(exc) == "insufficient_quota":  # billing: no retry helps
        return ConfigError(
            f"the LLM API account has no quota left (HTTP 429 insufficient_quota): {message}"
        )
    if status in (401, 403):
        return ConfigError(f"the LLM API refused the credentials (HTTP {status}): {message}")
    if status == 404:
        return ConfigError(
            f"the LLM API does not know this model or endpoint (HTTP 404): {message}"
        )
    if _retryable_status(status):
        retry_after = retry_after_from_headers(exc.response.headers)
        return RetryableError(
            f"HTTP {status}: {message}", reason=f"http_{status}", retry_after_s=retry_after
        )
    return PermanentError(f"HTTP {status}: {message}", reason=f"http_{status}")


def _error_object(exc: openai.APIStatusError) -> dict[str, object] | None:
    """The ``{"message", "type", "code", ...}`` object of an OpenAI error body, if any."""
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else None


def _code(exc: openai.APIStatusError) -> str | None:
    inner = _error_object(exc)
    code = (inner.get("code") or inner.get("type")) if inner is not None else None
    return code if isinstance(code, str) else None


def _message(exc: openai.APIStatusError) -> str:
    inner = _error_object(exc)
    if inner is not None and isinstance(inner.get("message"), str):
        return str(inner["message"])[:300]
    return str(exc.message)[:300]
