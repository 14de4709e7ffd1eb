"""A mock OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks the real wire format so the real ``openai`` client (``AsyncOpenAI``) can be pointed
at it, and it can misbehave on demand (latency, rate limits, 5xx, broken responses).

In-process use::

    async with MockLLM(api_key="sk-test", rpm=60) as mock:
        client = AsyncOpenAI(base_url=mock.base_url, api_key="sk-test", max_retries=0)
        ...
        mock.configure(mode="reset")          # or: mock.config.latency_s = 0.5
        assert mock.stats().peak_concurrency <= 8

As a process (prints ``ready <base_url>`` once listening, stops on SIGTERM/SIGINT)::

    python -m tests.mock_llm --port 0 [--latency S] [--jitter S] [--rpm N] [--tpm N]
        [--api-key K] [--error-rate X] [--models a,b] [--mode MODE] [--slow S] [--seed N]
        [--no-retry-after] [--batch-delay S] [--batch-error-rate X] [--batch-error-status N]
        [--batch-expire-share X]

API endpoints (under the base URL ``http://127.0.0.1:PORT/v1``):

* ``POST /v1/chat/completions``: a ``chat.completion`` object. The reply content is
  ``"Summary: "`` followed by the first ``summary_words`` (20) whitespace-separated words of the
  last ``user`` message. ``max_completion_tokens`` (preferred) or ``max_tokens`` caps the number
  of words of the content, ``"Summary:"`` included; a capped reply has
  ``finish_reason == "length"``, otherwise ``"stop"``. Streaming is not supported (400).
  With ``response_format`` (checked as the API checks it, see tests/mock_json.py; a refused
  one is a 400 with ``param: response_format``) the content is JSON: for ``json_schema`` an
  object built to fit the given schema (its strings are words of the last user message), for
  ``json_object`` one that fits the schema found in a system message (a model reads the
  schema from the prompt there), else ``{"summary": ...}``. ``response_formats`` lists the
  types the "model" supports (an unsupported one gets OpenAI's 400 naming response_format).
  ``json_fault`` makes JSON answers ``malformed`` (cut in half) or ``violating`` (a required
  property dropped, or the wrong type), for every request or only those whose user messages
  contain ``json_fault_match``; with ``json_fault_once`` a repair request (one that already
  holds an assistant message) gets a good answer.
* ``GET /v1/models`` and ``GET /v1/models/{model}``: the known models (``MockConfig.models``),
  or ``[MockConfig.default_model]`` when any model is accepted.

Token accounting (deterministic, tests rely on it):

* ``prompt_tokens = sum(len(content) for every message) // 4 + 1`` where ``content`` is the
  message's text (a string content, or the concatenated ``text`` of its text parts; a missing or
  null content counts as 0 characters).
* ``completion_tokens = len(content.split())`` of the returned content (words).
* ``total_tokens = prompt_tokens + completion_tokens``; this is also what a request costs
  against ``tpm``.

Errors use the OpenAI error body ``{"error": {"message", "type", "param", "code"}}``:

* 401 ``invalid_api_key`` when ``api_key`` is set and the request lacks
  ``Authorization: Bearer <api_key>`` (checked before anything else except body recording);
* 400 ``invalid_request_error`` for a body that is not a JSON object with ``model`` and
  ``messages``;
* 404 ``model_not_found`` when ``models`` is set and does not contain the requested model;
* 429 ``rate_limit_exceeded`` (type ``requests`` for ``rpm``, ``tokens`` for ``tpm``) when
  admitting the request would exceed a limit over the sliding 60-second window of *accepted*
  requests (those that passed the checks above and the limiter). The response carries
  ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` (the exact wait until
  enough of the window expires) unless ``omit_retry_after`` is set. 429s are immediate;
* 503 ``server_error`` with probability ``error_rate_5xx`` (drawn from ``random.Random(seed)``)
  after the latency of an accepted request.

Order of processing for a chat completion: record body -> auth -> validation -> model ->
rate limit (admission) -> sleep ``latency_s + uniform(0, latency_jitter_s)`` (plus ``slow_s``
in ``slow`` mode) -> random 503 -> fault ``mode`` -> reply. The latency counts from the moment
the handler started, so the mock's own work on the request (reading and parsing the body,
counting tokens, composing the summary) is part of it, not added to it: under load the answer
comes ``latency_s`` after the request was taken up, as the benchmark's ideal C/L assumes.

Fault modes (``MockConfig.mode``): ``ok``; ``slow`` (sleep ``slow_s`` more, then answer
normally); ``reset`` (abort the TCP connection without writing a response); ``malformed``
(200 with a truncated, invalid JSON body); ``empty_choices`` (a valid completion with
``"choices": []``); ``error_200`` (200 whose body is only an ``{"error": {...}}`` object);
``quota`` (429 ``insufficient_quota``, OpenAI's answer when the account's credit is used up).

Control endpoints (no auth, outside ``/v1`` so they never collide with the API):

* ``GET /stats``: :class:`MockStats` as JSON (``by_status`` keys are strings there);
* ``POST /_reset``: clear stats, the recorded bodies and the rate-limit window, reseed the RNG;
* ``GET /_config`` / ``POST /_config`` (a JSON object of :class:`MockConfig` fields to change;
  400 on an unknown field or a bad value): returns the whole config;
* ``GET /_requests``: the last ``record_requests`` (50) request bodies sent to
  ``/v1/chat/completions``, oldest first (a body that is not a JSON object is recorded as
  ``{"_raw": "<text>"}``).
* ``GET /_replies``: the last ``record_requests`` completions served with a 200 and counted in
  the token stats, in the order they were sent: ``{"messages", "content", "prompt_tokens",
  "completion_tokens"}`` (the request's messages, and what the reply carried).

Stats count only ``/v1/...`` requests; control endpoints are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import time
import types
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from aiohttp import web

from tests import mock_json
from tests.mock_batch import MockBatches

__all__ = [
    "MODES",
    "WINDOW_S",
    "MockConfig",
    "MockLLM",
    "MockStats",
    "completion_tokens",
    "main",
    "prompt_tokens",
]

Mode = Literal["ok", "slow", "reset", "malformed", "empty_choices", "error_200", "quota"]
JsonFault = Literal["none", "malformed", "violating"]
MODES: tuple[str, ...] = get_args(Mode)
WINDOW_S = 60.0
"""Length of the sliding rate-limit window, in seconds."""

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_RESET = web.RequestKey("mock_llm_reset", bool)


# -- configuration ------------------------------------------------------------------------------


@dataclass
class MockConfig:
    """Behaviour of the mock. Read on every request, so it can be changed at any time.

    Prefer :meth:`MockLLM.configure` (validates, reseeds the RNG when ``seed`` changes) over
    assigning fields directly; ``POST /_config`` does the same from another process.
    """

    api_key: str | None = None
    """When set, requests need ``Authorization: Bearer <api_key>`` (else 401)."""
    models: tuple[str, ...] | None = None
    """Known models (others get 404); ``None`` accepts any model."""
    default_model: str = "mock-model"
    """What ``/v1/models`` lists when ``models`` is ``None``."""
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    """Each accepted request sleeps ``latency_s + uniform(0, latency_jitter_s)``."""
    rpm: int = 0
    """Accepted requests per sliding 60 s window; 0 = unlimited."""
    tpm: int = 0
    """Accepted ``total_tokens`` per sliding 60 s window; 0 = unlimited."""
    window_s: float = WINDOW_S
    """Length of the rate-limit window (60 s like the real APIs; shorter for quick storms)."""
    omit_retry_after: bool = False
    """Send 429s without ``Retry-After`` / ``retry-after-ms``."""
    error_rate_5xx: float = 0.0
    """Probability that an accepted request ends in a 503."""
    seed: int = 0
    mode: Mode = "ok"
    slow_s: float = 30.0
    """Extra sleep in ``slow`` mode."""
    summary_words: int = 20
    """Words of the last user message quoted in the reply."""
    record_requests: int = 50
    """How many request bodies ``/_requests`` keeps."""
    response_formats: tuple[str, ...] = ("text", "json_object", "json_schema")
    """The ``response_format`` types accepted (others: 400 naming response_format)."""
    json_fault: JsonFault = "none"
    """Break JSON answers: ``malformed`` (not JSON) or ``violating`` (against the schema)."""
    json_fault_match: str = ""
    """Only requests whose user messages contain this text get ``json_fault`` ("" = all)."""
    json_fault_once: bool = False
    """Repair requests (with an assistant message already) get a good answer."""
    batch_delay_s: float = 0.0
    """A batch is in progress this long after its creation (tests/mock_batch.py)."""
    batch_error_rate: float = 0.0
    """Share of a batch's requests answered with ``batch_error_status`` (error file)."""
    batch_error_status: int = 500
    batch_expire_share: float = 0.0
    """Share of each batch's requests (the last ones) that never run: the batch expires."""

    def validate(self) -> None:
        """Raise ``ValueError`` if a value is out of range."""
        for name in ("latency_s", "latency_jitter_s", "slow_s", "rpm", "tpm", "record_requests"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not self.window_s > 0:
            raise ValueError("window_s must be > 0")
        for name in ("error_rate_5xx", "batch_error_rate", "batch_expire_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.batch_delay_s < 0:
            raise ValueError("batch_delay_s must be >= 0")
        if not 400 <= self.batch_error_status <= 599:
            raise ValueError("batch_error_status must be an HTTP error status")
        if self.summary_words < 1:
            raise ValueError("summary_words must be >= 1")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")

    def to_json(self) -> Json:
        data = asdict(self)
        if self.models is not None:
            data["models"] = list(self.models)
        return data

    def accepts(self, model: str) -> bool:
        return self.models is None or model in self.models

    def listed_models(self) -> tuple[str, ...]:
        return self.models if self.models is not None else (self.default_model,)


def _coerce(name: str, hint: Any, value: object) -> object:
    """Check ``value`` (decoded JSON or a Python value) against a ``MockConfig`` annotation."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _coerce(name, inner, value)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{name} must be one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"{name} must be a list of strings")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ValueError(f"{name}: bad value {value!r}")


_HINTS: dict[str, Any] = get_type_hints(MockConfig)


def _apply(config: MockConfig, changes: Mapping[str, object]) -> None:
    """Validate ``changes`` and apply them to ``config`` in place, all or nothing."""
    names = {f.name for f in fields(MockConfig)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    candidate = replace(config)
    for name, value in changes.items():
        setattr(candidate, name, _coerce(name, _HINTS[name], value))
    candidate.validate()
    for name in changes:
        setattr(config, name, getattr(candidate, name))


# -- token accounting ---------------------------------------------------------------------------


def _text(content: object) -> str:
    """The text of a message content: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def prompt_tokens(messages: list[Any]) -> int:
    """``sum(len(text of each message's content)) // 4 + 1``."""
    chars = sum(len(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    return chars // 4 + 1


def completion_tokens(content: str) -> int:
    """Completion tokens are words."""
    return len(content.split())


def _last_user(messages: list[Any]) -> str:
    return next(
        (
            _text(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )


def _summary(messages: list[Any], words: int, limit: int | None) -> tuple[str, str]:
    """The reply content and finish reason."""
    last_user = _last_user(messages)
    reply = ["Summary:", *last_user.split()[:words]]
    if limit is not None and len(reply) > limit:
        return " ".join(reply[:limit]), "length"
    return " ".join(reply), "stop"


# -- stats and rate limiting --------------------------------------------------------------------


@dataclass
class MockStats:
    """What the server saw on ``/v1/...`` since start or the last reset."""

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0
    """Number of 429 responses."""
    resets: int = 0
    """Connections aborted by the ``reset`` mode (not in ``by_status``)."""
    cancelled: int = 0
    """Handlers cancelled because the client went away (not in ``by_status``)."""
    concurrency: int = 0
    peak_concurrency: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens of successful completions actually returned."""
    accepted_timestamps: list[float] = field(default_factory=list)
    """``time.time()`` of every request admitted by the rate limiter."""
    batches: int = 0
    """Batches created (tests/mock_batch.py)."""
    batch_requests: int = 0
    """Requests answered 200 inside batches (not in ``requests``)."""
    batch_failed: int = 0
    """Requests in batches' error files (errors and expired)."""
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    """Tokens of the batch answers (not in ``prompt_tokens``/``completion_tokens``)."""

    def copy(self) -> MockStats:
        return MockStats(
            **{
                **asdict(self),
                "by_status": dict(self.by_status),
                "accepted_timestamps": list(self.accepted_timestamps),
            }
        )

    def to_json(self) -> Json:
        data = asdict(self)
        data["by_status"] = {str(k): v for k, v in sorted(self.by_status.items())}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MockStats:
        """Parse ``GET /stats`` output (for tests talking to a mock in another process)."""
        values = dict(data)
        values["by_status"] = {int(k): int(v) for k, v in data["by_status"].items()}
        return cls(**values)


class _Window:
    """Accepted requests of the last ``WINDOW_S`` seconds as a deque of (monotonic, tokens)."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def _prune(self, now: float, window_s: float) -> None:
        horizon = now - window_s
        events = self._events
        while events and events[0][0] <= horizon:
            self._tokens -= events.popleft()[1]

    def check(
        self, now: float, tokens: int, rpm: int, tpm: int, window_s: float = WINDOW_S
    ) -> tuple[str, str, float] | None:
        """``None`` if admissible, else (limit kind, message, seconds to wait)."""
        self._prune(now, window_s)
        events = self._events
        if rpm and len(events) >= rpm:
            wait = events[len(events) - rpm][0] + window_s - now
            msg = (
                f"Rate limit reached for requests per min (RPM): Limit {rpm}, "
                f"Used {len(events)}, Requested 1."
            )
            return "requests", msg, wait
        if tpm and self._tokens + tokens > tpm:
            msg = (
                f"Rate limit reached for tokens per min (TPM): Limit {tpm}, "
                f"Used {self._tokens}, Requested {tokens}."
            )
            if tokens > tpm:
                return "tokens", "Request too large. " + msg, window_s
            freed, wait = 0, window_s
            for t, n in events:
                freed += n
                if self._tokens - freed + tokens <= tpm:
                    wait = t + window_s - now
                    break
            return "tokens", msg, wait
        return None

    def admit(self, now: float, tokens: int) -> None:
        self._events.append((now, tokens))
        self._tokens += tokens

    def clear(self) -> None:
        self._events.clear()
        self._tokens = 0


# -- responses ----------------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _bad_request(message: str, param: str | None = None) -> web.Response:
    return _error(400, message, "invalid_request_error", None, param)


def _completion(model: str, content: str, finish: str, prompt: int, completion: int) -> Json:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _max_tokens(body: Json) -> int | web.Response | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return _bad_request(f"Invalid '{name}': expected an integer >= 1.", name)
        return value
    return None


def _validate(body: Json, supported: tuple[str, ...]) -> Json | web.Response:
    """``{"model", "messages", "limit", "format", "schema"}`` of a valid request, or a 400
    response (``supported``: the response_format types accepted)."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        return _bad_request("you must provide a model parameter", "model")
    if not isinstance(messages, list) or not messages:
        return _bad_request("'messages' must be a non-empty array", "messages")
    if body.get("stream"):
        return _bad_request("stream=true is not supported by the mock", "stream")
    limit = _max_tokens(body)
    if isinstance(limit, web.Response):
        return limit
    fmt = mock_json.check_format(body, supported, messages)
    if isinstance(fmt, str):
        return _bad_request(fmt, "messages" if fmt.startswith("'messages'") else "response_format")
    kind, schema = fmt
    return {"model": model, "messages": messages, "limit": limit, "format": kind, "schema": schema}


# -- the server ---------------------------------------------------------------------------------


class MockLLM:
    """The mock server. ``MockLLM(rpm=10, api_key="k")`` is ``MockLLM(MockConfig(...))``."""

    def __init__(self, config: MockConfig | None = None, **changes: object) -> None:
        self.config = config if config is not None else MockConfig()
        _apply(self.config, changes)
        self.config.validate()
        self._rng = random.Random(self.config.seed)
        self._stats = MockStats()
        self._window = _Window()
        self._bodies: deque[Json] = deque(maxlen=self.config.record_requests)
        self._replies: deque[Json] = deque(maxlen=self.config.record_requests)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self.batches = MockBatches(
            self._batch_reply,
            lambda: self.config,
            self._rng.random,
            lambda: self._stats,
            self._unauthorized,
        )
        self.app = self._make_app()

    # -- lifecycle

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Listen on ``host:port`` (0 = any free port); returns the base URL ending in ``/v1``."""
        if self._runner is not None:
            raise RuntimeError("already started")
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=4096)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._base_url = f"http://{host}:{bound_port}/v1"
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> MockLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("not started")
        return self._base_url

    @property
    def server_url(self) -> str:
        """The base URL without ``/v1``: where the control endpoints live."""
        return self.base_url.removesuffix("/v1")

    # -- Python control API (same as the control endpoints)

    def configure(self, **changes: object) -> MockConfig:
        """Change config fields (validated, all or nothing); returns the config."""
        _apply(self.config, changes)
        if "seed" in changes:
            self._rng.seed(self.config.seed)
        if "record_requests" in changes:
            self._bodies = deque(self._bodies, maxlen=self.config.record_requests)
            self._replies = deque(self._replies, maxlen=self.config.record_requests)
        return self.config

    def stats(self) -> MockStats:
        """A snapshot of the stats."""
        return self._stats.copy()

    def requests(self) -> list[Json]:
        """The last recorded chat-completion request bodies, oldest first."""
        return list(self._bodies)

    def replies(self) -> list[Json]:
        """The last completions served (messages, content, tokens), in the order sent."""
        return list(self._replies)

    def reset(self) -> None:
        """Clear stats, recorded bodies and the rate-limit window; reseed the RNG.

        The concurrency gauge keeps counting requests still in flight.
        """
        self._stats = MockStats(concurrency=self._stats.concurrency)
        self._bodies.clear()
        self._replies.clear()
        self._window.clear()
        self._rng.seed(self.config.seed)

    # -- aiohttp plumbing

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._count])
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_get("/stats", self._get_stats)
        app.router.add_post("/_reset", self._post_reset)
        app.router.add_get("/_config", self._get_config)
        app.router.add_post("/_config", self._post_config)
        app.router.add_get("/_requests", self._get_requests)
        app.router.add_get("/_replies", self._get_replies)
        self.batches.routes(app)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        stats = self._stats
        stats.requests += 1
        stats.concurrency += 1
        stats.peak_concurrency = max(stats.peak_concurrency, stats.concurrency)
        status: int | None = None
        try:
            response = await handler(request)
            status = None if request.get(_RESET, False) else response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            self._stats.cancelled += 1
            raise
        finally:
            # self._stats, not stats: a reset in between starts new counters
            self._stats.concurrency = max(0, self._stats.concurrency - 1)
            if status is not None:
                by_status = self._stats.by_status
                by_status[status] = by_status.get(status, 0) + 1
            elif request.get(_RESET, False):
                self._stats.resets += 1

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        key = self.config.api_key
        if key is None or request.headers.get("Authorization") == f"Bearer {key}":
            return None
        return _error(
            401,
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    def _model_not_found(self, model: str) -> web.Response | None:
        if self.config.accepts(model):
            return None
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
            "model",
        )

    def _rate_limited(self, tokens: int) -> web.Response | None:
        """Admit the request into the window, or answer 429."""
        cfg = self.config
        now = time.monotonic()
        verdict = self._window.check(now, tokens, cfg.rpm, cfg.tpm, cfg.window_s)
        if verdict is None:
            self._window.admit(now, tokens)
            self._stats.accepted_timestamps.append(time.time())
            return None
        kind, message, wait = verdict
        wait = max(wait, 0.001)
        self._stats.rate_limited += 1
        headers = (
            {}
            if cfg.omit_retry_after
            else {
                "Retry-After": str(math.ceil(wait)),
                "retry-after-ms": str(math.ceil(wait * 1000)),
            }
        )
        return _error(
            429,
            f"{message} Please try again in {wait:.3f}s.",
            kind,
            "rate_limit_exceeded",
            headers=headers,
        )

    async def _read_body(self, request: web.Request) -> Json | None:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        recorded: Json = (
            body if isinstance(body, dict) else {"_raw": raw.decode("utf-8", "replace")}
        )
        if self._bodies.maxlen:
            self._bodies.append(recorded)
        return body if isinstance(body, dict) else None

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        body = await self._read_body(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if body is None:
            return _bad_request("We could not parse the JSON body of your request.")
        valid = _validate(body, self.config.response_formats)
        if isinstance(valid, web.Response):
            return valid
        model, messages = valid["model"], valid["messages"]
        if (missing := self._model_not_found(model)) is not None:
            return missing
        cfg = self.config
        content, finish = self._reply(valid, messages)
        prompt, completion = prompt_tokens(messages), completion_tokens(content)
        if (limited := self._rate_limited(prompt + completion)) is not None:
            return limited
        delay = cfg.latency_s + (
            self._rng.uniform(0.0, cfg.latency_jitter_s) if cfg.latency_jitter_s else 0.0
        )
        if cfg.mode == "slow":
            delay += cfg.slow_s
        delay -= time.monotonic() - started
        if delay > 0:
            await asyncio.sleep(delay)
        cfg = self.config  # may have changed while sleeping
        if cfg.error_rate_5xx and self._rng.random() < cfg.error_rate_5xx:
            return _error(503, "The server is overloaded or not ready yet.", "server_error", None)
        completed = _completion(model, content, finish, prompt, completion)
        return self._answer(request, completed, messages)

    def _batch_reply(self, body: Json) -> tuple[int, Json]:
        """How /v1/chat/completions answers ``body`` inside a batch: (status, body), with no
        latency and no rate limit (a batch has its own pool)."""
        valid = _validate(body, self.config.response_formats)
        if isinstance(valid, web.Response):
            return valid.status, json.loads(valid.text or "{}")
        model, messages = valid["model"], valid["messages"]
        if (missing := self._model_not_found(model)) is not None:
            return missing.status, json.loads(missing.text or "{}")
        content, finish = self._reply(valid, messages)
        prompt, completion = prompt_tokens(messages), completion_tokens(content)
        return 200, _completion(model, content, finish, prompt, completion)

    def _reply(self, valid: Json, messages: list[Any]) -> tuple[str, str]:
        """The content (JSON when a response_format asks for it) and the finish reason."""
        cfg = self.config
        if valid["format"] == "text":
            return _summary(messages, cfg.summary_words, valid["limit"])
        schema = valid["schema"] or mock_json.schema_in_prompt(messages)
        words = _last_user(messages).split()[: cfg.summary_words]
        if schema is None:
            value: Any = {"summary": " ".join(words)}
        else:
            value = mock_json.fit(schema, words)
        fault = cfg.json_fault if self._faulty(messages) else "none"
        if fault == "violating":
            value = mock_json.violate(schema, value)
        content = json.dumps(value)
        if fault == "malformed":
            content = mock_json.malformed(content)
        limit = valid["limit"]
        if limit is not None and len(content.split()) > limit:  # cut mid-JSON, as a model is
            return " ".join(content.split()[:limit]), "length"
        return content, "stop"

    def _faulty(self, messages: list[Any]) -> bool:
        cfg = self.config
        if cfg.json_fault == "none":
            return False
        if cfg.json_fault_once and any(
            isinstance(m, dict) and m.get("role") == "assistant" for m in messages
        ):
            return False
        return not cfg.json_fault_match or any(
            cfg.json_fault_match in _text(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        )

    def _answer(
        self, request: web.Request, completion: Json, messages: list[Any]
    ) -> web.StreamResponse:
        """Reply according to ``config.mode``."""
        mode = self.config.mode
        headers = {"x-request-id": f"req_{uuid.uuid4().hex}"}
        if mode == "reset":
            request[_RESET] = True
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=200)  # never written: the transport is gone
        if mode == "quota":
            return _error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if mode == "malformed":
            text = json.dumps(completion)[:40]
            return web.Response(
                status=200, text=text, content_type="application/json", headers=headers
            )
        if mode == "empty_choices":
            completion["choices"] = []
        elif mode == "error_200":
            completion = {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        else:
            usage = completion["usage"]
            self._stats.prompt_tokens += usage["prompt_tokens"]
            self._stats.completion_tokens += usage["completion_tokens"]
            if self._replies.maxlen:
                self._replies.append(
                    {
                        "messages": messages,
                        "content": completion["choices"][0]["message"]["content"],
                        "prompt_tokens": usage["prompt_tokens"],
                        "completion_tokens": usage["completion_tokens"],
                    }
                )
        return web.json_response(completion, headers=headers)

    def _model_json(self, model: str) -> Json:
        return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        data = [self._model_json(m) for m in self.config.listed_models()]
        return web.json_response({"object": "list", "data": data})

    async def _model(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        model = request.match_info["model"]
        if (missing := self._model_not_found(model)) is not None:
            return missing
        return web.json_response(self._model_json(model))

    async def _get_stats(self, _: web.Request) -> web.StreamResponse:
        return web.json_response(self._stats.to_json())

    async def _post_reset(self, _: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    async def _get_config(self, _: web.Request) -> web.StreamResponse:
        return web.json_response(self.config.to_json())

    async def _post_config(self, request: web.Request) -> web.StreamResponse:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            self.configure(**changes)
        except ValueError as exc:
            return _bad_request(str(exc))
        return web.json_response(self.config.to_json())

    async def _get_requests(self, _: web.Request) -> web.StreamResponse:
        return web.json_response(self.requests())

    async def _get_replies(self, _: web.Request) -> web.StreamResponse:
        return web.json_response(self.replies())


# -- process entry point ------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mock_llm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="fixed latency (s)")
    parser.add_argument("--jitter", type=float, default=0.0, help="uniform extra latency (s)")
    parser.add_argument("--rpm", type=int, default=0)
    parser.add_argument("--tpm", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--error-rate", type=float, default=0.0, help="probability of a 503")
    parser.add_argument("--models", default=None, help="comma-separated known models")
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--slow", type=float, default=30.0, help="extra sleep in slow mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-retry-after", action="store_true")
    parser.add_argument(
        "--window", type=float, default=WINDOW_S, help="rate-limit window in seconds (default 60)"
    )
    parser.add_argument("--batch-delay", type=float, default=0.0, help="a batch's run time (s)")
    parser.add_argument(
        "--batch-error-rate", type=float, default=0.0, help="share of batch requests failing"
    )
    parser.add_argument("--batch-error-status", type=int, default=500)
    parser.add_argument(
        "--batch-expire-share", type=float, default=0.0, help="share of a batch left to expire"
    )
    return parser.parse_args(argv)


def _config_from_args(args: argparse.Namespace) -> MockConfig:
    config = MockConfig()
    _apply(
        config,
        {
            "latency_s": args.latency,
            "latency_jitter_s": args.jitter,
            "rpm": args.rpm,
            "tpm": args.tpm,
            "api_key": args.api_key,
            "error_rate_5xx": args.error_rate,
            "models": None
            if args.models is None
            else tuple(m for m in args.models.split(",") if m),
            "mode": args.mode,
            "slow_s": args.slow,
            "seed": args.seed,
            "omit_retry_after": args.no_retry_after,
            "window_s": args.window,
            "batch_delay_s": args.batch_delay,
            "batch_error_rate": args.batch_error_rate,
            "batch_error_status": args.batch_error_status,
            "batch_expire_share": args.batch_expire_share,
        },
    )
    return config


async def _serve(args: argparse.Namespace) -> None:
    mock = MockLLM(_config_from_args(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    url = await mock.start(args.port, args.host)
    try:
        print(f"ready {url}", flush=True)
        await stop.wait()
    finally:
        await mock.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:
        raise SystemExit(f"mock_llm: {exc}") from None


if __name__ == "__main__":
    main()
