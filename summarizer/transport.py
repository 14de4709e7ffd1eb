"""How one chat completion request reaches the API: two transports behind one ``send``.

Both take the JSON body and return the raw bytes of a 2xx answer; every failure is raised as
the openai package's own exception (``APIStatusError`` subclasses built by the AsyncOpenAI
client from the response, ``APITimeoutError``, ``APIConnectionError``), so that
``summarizer.retry`` translates one set of errors whichever transport ran.

- ``direct`` (default, ``DISTCRAWL_LLM__TRANSPORT=direct``): the request the AsyncOpenAI client
  would send (its URL, auth and default headers, read from the client once) posted on one
  keep-alive aiohttp session. Measured on the mock (``make bench-llm``), openai's request path
  (options copy, header merge, URL build, httpx request/response objects over its aiohttp
  transport) is most of the client CPU per call; this path skips it. What it does not do:
  openai's own retries (we set ``max_retries=0`` anyway), its per-request idempotency key
  (a retried summary is harmless) and its credential refresh hooks (distcrawl's key is a static
  string from settings).
- ``openai`` (``DISTCRAWL_LLM__TRANSPORT=openai``): ``AsyncOpenAI.post`` (the package's
  documented way to call any endpoint) over its aiohttp transport: every byte goes through the
  openai client, at about twice the CPU per call.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp
import msgspec
import openai

try:  # openai 3 moved to httpx2; earlier releases use httpx
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx as _httpx  # type: ignore[no-redef, import-not-found, unused-ignore]

__all__ = ["ChatTransport", "DirectTransport", "OpenAIPostTransport", "open_transport"]

_PATH = "chat/completions"


class ChatTransport(Protocol):
    async def send(self, body: dict[str, Any]) -> bytes:
        """POST the body to /chat/completions; the bytes of a 2xx answer, else openai's error."""
        ...

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The process's AsyncOpenAI (other endpoints, e.g. the Batch API, go through it)."""
        ...

    async def aclose(self) -> None: ...


class OpenAIPostTransport:
    """Everything through ``AsyncOpenAI.post``; the answer is read raw, not as pydantic models."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self._client

    async def send(self, body: dict[str, Any]) -> bytes:
        raw = await self._client.post("/" + _PATH, cast_to=_httpx.Response, body=body)
        return await raw.aread()

    async def aclose(self) -> None:
        await self._client.close()


class DirectTransport:
    """The AsyncOpenAI client's request, sent on one keep-alive aiohttp session."""

    def __init__(self, client: openai.AsyncOpenAI, timeout_s: float, connections: int) -> None:
        self._client = client
        self._url = str(client.base_url) + _PATH  # base_url always ends with "/"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, str] = {}
        self._encode = msgspec.json.Encoder().encode
        # what openai's exceptions point at (they carry the request, not the body)
        self._request = _httpx.Request("POST", self._url)

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self._client

    def _open(self) -> aiohttp.ClientSession:
        # Built inside the running loop: aiohttp sessions belong to one loop, and openai's
        # default headers name the async library in use.
        headers = {k: v for k, v in self._client.default_headers.items() if isinstance(v, str)}
        headers.update(self._client.auth_headers)
        self._headers = headers
        connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30)
        # trust_env: HTTP(S)_PROXY / NO_PROXY apply, as they do for openai's own transports
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=True
        )
        return self._session

    async def send(self, body: dict[str, Any]) -> bytes:
        session = self._session or self._open()
        try:
            async with session.post(
                self._url, data=self._encode(body), headers=self._headers, allow_redirects=False
            ) as resp:
                content = await resp.read()
                if 200 <= resp.status < 300:
                    return content
                response = _httpx.Response(
                    resp.status,
                    headers=list(resp.headers.items()),
                    content=content,
                    request=self._request,
                )
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise openai.APITimeoutError(request=self._request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise openai.APIConnectionError(request=self._request) from exc
        # openai's own mapping: RateLimitError for 429, AuthenticationError for 401, ...
        raise self._client._make_status_error_from_response(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._client.close()


def open_transport(
    kind: str, client: openai.AsyncOpenAI, timeout_s: float, connections: int
) -> ChatTransport:
    if kind == "openai":
        return OpenAIPostTransport(client)
    return DirectTransport(client, timeout_s, connections)
