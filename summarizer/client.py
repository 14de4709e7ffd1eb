"""The OpenAI-compatible engine: one AsyncOpenAI per process, our own retries and limits.

``max_retries=0`` and an explicit timeout: retries belong to this module (exponential back-off
with full jitter, never sooner than the provider's Retry-After), so that the shared rate limits,
the adaptive concurrency limit and the metrics see every attempt. How the request travels
(``direct`` on one keep-alive aiohttp session, or through ``AsyncOpenAI.post``) is
summarizer.transport's business; answers are decoded with msgspec into the few fields we read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import openai

from common.backoff import backoff_s
from common.errors import ClassifiedError, ConfigError, PermanentError, RetryableError
from common.logging import get_logger
from common.settings import LLMSettings
from summarizer.budget import token_counter
from summarizer.engines import DocFailed, InvalidOutput, Request, Summary
from summarizer.limiter import AdaptiveLimit, SharedRateLimiter
from summarizer.mapreduce import DocBudget, failed_with_spent, identity, map_reduce
from summarizer.retry import translate_openai_error
from summarizer.schema import InvalidAnswer, OutputSchema, ResponseFormat
from summarizer.transport import ChatTransport, open_transport

__all__ = ["CallObserver", "OpenAIEngine", "open_client", "open_openai", "resolve_api_key"]

log = get_logger(__name__)
# (outcome, latency_s, model, prompt_tokens, completion_tokens) for metrics
CallObserver = Callable[[str, float], None]  # (outcome: "ok" or a reason, latency s)


def resolve_api_key(llm: LLMSettings) -> str | None:
    """The key from settings, else from ``api_key_file`` (never from a command-line flag)."""
    if llm.api_key is not None:
        return llm.api_key.get_secret_value()
    if llm.api_key_file:
        try:
            return Path(llm.api_key_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the API key file {llm.api_key_file}: {exc.strerror}"
            ) from exc
    return None


def open_client(llm: LLMSettings, api_key: str | None) -> ChatTransport:
    """The process's one AsyncOpenAI, and the transport that sends its requests."""
    client = open_openai(llm, api_key)
    return open_transport(llm.transport, client, llm.timeout_s, connections=llm.concurrency)


def open_openai(llm: LLMSettings, api_key: str | None) -> openai.AsyncOpenAI:
    """An AsyncOpenAI for ``llm`` (our retries: ``max_retries=0``); its base URL checked."""
    http_client: openai.DefaultAioHttpClient | None = None
    if llm.transport == "openai":
        try:  # much less CPU per call than openai's default httpx transport
            http_client = openai.DefaultAioHttpClient(timeout=llm.timeout_s)
        except (RuntimeError, ImportError):  # the aiohttp extra is not installed
            http_client = None
    client = openai.AsyncOpenAI(
        api_key=api_key or "not-needed",
        base_url=llm.base_url,
        max_retries=0,
        timeout=llm.timeout_s,
        http_client=http_client,
    )
    # from settings or OPENAI_BASE_URL: a typo must stop the worker, not fail every doc
    url = urllib.parse.urlsplit(str(client.base_url))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(
            f"the LLM base URL {llm.base_url or str(client.base_url)!r} is not "
            "an http(s) URL (set DISTCRAWL_LLM__BASE_URL, --llm-base-url or "
            "OPENAI_BASE_URL, e.g. https://api.openai.com/v1)"
        )
    return client


class OpenAIEngine:
    def __init__(
        self,
        transport: ChatTransport,
        llm: LLMSettings,
        rate: SharedRateLimiter,
        adaptive: AdaptiveLimit,
        observe: CallObserver,
    ) -> None:
        self.name = "openai"
        self.calls_api = True
        self._transport = transport
        self._llm = llm
        self._rate = rate
        self._adaptive = adaptive
        self._observe = observe
        self._json_object: set[str] = set()  # schema digests the provider refused as json_schema

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self._transport.client

    def cache_identity(self, request: Request) -> tuple[str, ...]:
        """The model, prompt template, output budget and input budget; with a schema its
        digest and the response format asked for; with map-reduce its settings. (Not the base
        URL: one model name is taken for one model, whichever endpoint serves it.)"""
        profile, llm = request.profile, self._llm
        parts = [profile.model, "openai", profile.prompt, str(profile.max_tokens)]
        parts += [str(llm.max_input_tokens), llm.long_pages]
        if profile.schema is not None:
            parts += [profile.schema.digest, llm.response_format]
        if llm.long_pages == "map-reduce":
            parts += identity(request, llm)
        return tuple(parts)

    def prompt_for(
        self, request: Request, reserve: int = 0, *, cut: bool = True
    ) -> tuple[str, int, bool]:
        """The prompt (its text within the input budget, less ``reserve`` tokens for other
        messages, unless not ``cut``), the token cost estimated for the request, and whether
        the text was cut."""
        counter = token_counter(request.profile.model)
        text, was_cut = request.text, False
        if cut:
            frame = request.profile.prompt.format(title=request.title, url=request.url, text="")
            room = max(16, self._llm.max_input_tokens - counter.count(frame) - reserve)
            text, was_cut = counter.truncate(request.text, room)
        prompt = request.profile.prompt.format(title=request.title, url=request.url, text=text)
        return prompt, counter.count(prompt) + reserve + request.profile.max_tokens, was_cut

    async def summarize(self, request: Request) -> Summary:
        """The doc's summary or extraction, over all its calls (one, or a long page's
        map-reduce), with every call's tokens; a failure after calls that answered is a
        DocFailed carrying their tokens."""
        budget = DocBudget(self._llm.doc_token_cap)
        counter = token_counter(request.profile.model)
        try:
            if self._llm.long_pages == "map-reduce":
                answer = await map_reduce(request, self._llm, counter, budget, self._one)
            else:
                answer = await self._one(request, budget)
        except PermanentError as exc:
            if budget.calls == 0 and not isinstance(exc, DocFailed):
                raise
            raise failed_with_spent(exc, budget) from exc
        return budget.summary(
            answer.text, data=answer.data, chunks=answer.chunks, truncated=answer.truncated
        )

    async def _one(self, request: Request, budget: DocBudget, *, cut: bool = True) -> Summary:
        """One prompt's answer: a summary, or an extraction (validated, repaired once)."""
        if request.profile.schema is not None:
            answer = await self._extract(request, request.profile.schema, budget, cut)
        else:
            prompt, estimate, cut = self.prompt_for(request, cut=cut)
            messages = [{"role": "user", "content": prompt}]
            answer = await self._complete(
                request, lambda: self._body(request, messages), estimate, budget
            )
            answer = dataclasses.replace(answer, truncated=cut)
        return dataclasses.replace(answer, chunks=1)

    # -- the Batch API (summarizer.batch): one request per doc, answered later

    def batch_body(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The body of a doc's one call (its text within the input budget), and whether the
        text was cut: what a batch request carries."""
        schema = request.profile.schema
        if schema is None:
            prompt, _, cut = self.prompt_for(request)
            return self._body(request, [{"role": "user", "content": prompt}]), cut
        reserve = token_counter(request.profile.model).count(schema.instructions())
        prompt, _, cut = self.prompt_for(request, reserve)
        return self._extract_body(request, schema, [{"role": "user", "content": prompt}]), cut

    def batch_answer(self, request: Request, completion: bytes, truncated: bool) -> Summary:
        """A batch's answer to ``batch_body``: a RetryableError for a broken completion, an
        InvalidAnswer (with the tokens spent as ``.spent``) for one against the schema."""
        resp = _decode_completion(completion)
        usage = resp.usage
        summary = Summary(
            "",
            resp.model or request.profile.model,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            calls=1,
            chunks=1,
            truncated=truncated,
        )
        summary = dataclasses.replace(summary, text=_content(resp))
        if request.profile.schema is None:
            return summary
        return _extracted(summary, request.profile.schema.parse(summary.text))

    # -- structured extraction

    async def _extract(
        self, request: Request, schema: OutputSchema, budget: DocBudget, cut: bool
    ) -> Summary:
        """One call, and one repair call (the invalid answer and the validation error in the
        prompt) when its answer is not valid; twice invalid: ``InvalidOutput``."""
        counter = token_counter(request.profile.model)
        reserve = counter.count(schema.instructions())
        prompt, estimate, was_cut = self.prompt_for(request, reserve, cut=cut)
        history: list[dict[str, str]] = [{"role": "user", "content": prompt}]

        def body() -> dict[str, Any]:
            return self._extract_body(request, schema, history)

        first = await self._complete(request, body, estimate, budget)
        first = dataclasses.replace(first, truncated=was_cut)
        try:
            return _extracted(first, schema.parse(first.text))
        except InvalidAnswer as exc:
            log.info("llm_invalid_output", url=request.url, error=str(exc), repair=True)
            repair = _REPAIR.format(error=exc)
        history += [
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": repair},
        ]
        estimate += counter.count(first.text) + counter.count(repair)
        second = await self._complete(request, body, estimate, budget)
        spent = dataclasses.replace(
            second,
            truncated=was_cut,
            prompt_tokens=first.prompt_tokens + second.prompt_tokens,
            completion_tokens=first.completion_tokens + second.completion_tokens,
            calls=first.calls + second.calls,
        )
        try:
            return _extracted(spent, schema.parse(second.text))
        except InvalidAnswer as exc:
            raise InvalidOutput(f"invalid answer after one repair: {exc}", spent) from exc

    def _format(self, schema: OutputSchema) -> ResponseFormat:
        if self._llm.response_format == "json_object" or schema.digest in self._json_object:
            return "json_object"
        return "json_schema"

    def _extract_body(
        self, request: Request, schema: OutputSchema, history: list[dict[str, str]]
    ) -> dict[str, Any]:
        kind = self._format(schema)
        # json_object carries no schema: the model reads it from a system message instead
        system = [{"role": "system", "content": schema.instructions()}]
        body = self._body(request, history if kind == "json_schema" else system + history)
        body["response_format"] = schema.response_format(kind)
        return body

    def _format_refused(self, request: Request, body: dict[str, Any], exc: PermanentError) -> bool:
        """In ``auto``, a 400 naming response_format for a json_schema request (json_schema
        unsupported, or a schema strict mode rejects) switches this schema to json_object, in
        this process, for good; True: send again."""
        schema = request.profile.schema
        sent = body.get("response_format", {}).get("type")
        if (
            schema is None
            or self._llm.response_format != "auto"
            or sent != "json_schema"
            or exc.reason != "http_400"
            or "response_format" not in str(exc)
        ):
            return False
        if schema.digest not in self._json_object:  # (concurrent calls all get the 400)
            self._json_object.add(schema.digest)
            log.warning("llm_response_format_fallback", schema=schema.name, error=str(exc)[:300])
        return True

    # -- one request, with retries

    def _body(self, request: Request, messages: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "model": request.profile.model,
            "messages": messages,
            "max_tokens": request.profile.max_tokens,
        }

    async def _complete(
        self,
        request: Request,
        body: Callable[[], dict[str, Any]],
        estimate: int,
        budget: DocBudget,
    ) -> Summary:
        # Two budgets: failures (5xx, timeouts, broken answers) count to max_failed_calls; a 429
        # is the provider pacing us, not a fault of the call, and has its own larger budget, so
        # a rate-limit storm does not fail docs that a failing API would.
        failures = rate_limited = calls = 0
        while True:
            calls += 1
            sent = body()
            try:
                return await self._booked_call(budget, sent, estimate, calls)
            except PermanentError as exc:
                if not self._format_refused(request, sent, exc):
                    raise
            except RetryableError as exc:
                if exc.reason == "http_429":
                    rate_limited += 1
                else:
                    failures += 1
                if (
                    failures >= self._llm.max_failed_calls
                    or rate_limited >= self._llm.max_rate_limited
                ):
                    raise PermanentError(
                        f"gave up after {calls} calls ({failures} failed, {rate_limited} "
                        f"rate-limited): {exc}",
                        reason=exc.reason,
                    ) from exc
                await self._back_off(exc, calls)

    async def _booked_call(
        self, budget: DocBudget, body: dict[str, Any], estimate: int, attempt: int
    ) -> Summary:
        """``_call`` within the doc's own cap (booked before the shared limits are asked)."""
        budget.book(estimate)
        answer: Summary | None = None
        try:
            answer = await self._call(body, estimate, attempt, budget)
            return answer
        finally:
            budget.settle(estimate, answer)

    async def _call(
        self, body: dict[str, Any], estimate: int, attempt: int, budget: DocBudget
    ) -> Summary:
        model = str(body["model"])
        async with self._adaptive:
            # The rate slot is booked inside the concurrency slot: a request then goes at the
            # time it booked, not later when a call slot frees (late sends bunch up in the
            # provider's window).
            await self._rate.acquire(estimate)
            if budget.closed:  # another call of this long page failed while this one waited
                await self._rate.correct(estimate, 0)
                budget.check()
            started = time.monotonic()
            try:
                # the body as the API takes it, the answer decoded by msgspec: the same HTTP
                # exchange as chat.completions.create without its per-call request transform
                # and pydantic response models
                resp = _decode_completion(await self._transport.send(body))
                content = _content(resp)
            except Exception as exc:
                err = translate_openai_error(exc)
                outcome = err.reason if isinstance(err, ClassifiedError) else type(err).__name__
                self._observe(outcome, time.monotonic() - started)
                raise err from exc
        latency = time.monotonic() - started
        usage = resp.usage
        ptok = usage.prompt_tokens if usage else 0
        ctok = usage.completion_tokens if usage else 0
        self._adaptive.on_success(latency)
        await self._rate.correct(estimate, ptok + ctok if usage else estimate)
        self._observe("ok", latency)
        return Summary(content, resp.model or model, ptok, ctok, attempt)

    async def _back_off(self, exc: RetryableError, attempt: int) -> None:
        if exc.reason in ("http_429", "timeout"):
            self._adaptive.on_congestion()
        delay = backoff_s(attempt, base_s=0.5, cap_s=30.0, full_jitter=True)
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        if exc.reason == "http_429":
            # everyone waits, not just this call: the provider's limit is shared
            await self._rate.pause(exc.retry_after_s or delay)
        log.info("llm_retry", reason=exc.reason, attempt=attempt, delay_s=round(delay, 2))
        await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self._transport.aclose()


_REPAIR = "That answer is not valid: {error}. Answer again with only the corrected JSON object."


def _extracted(summary: Summary, data: Any) -> Summary:
    """``summary`` with the validated object, and its compact JSON as the cached text."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return dataclasses.replace(summary, text=text, data=data)


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    """The fields of a chat.completion we read (others are ignored)."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    model: str | None = None


_completion_decoder = msgspec.json.Decoder(_Completion)


def _decode_completion(body: bytes) -> _Completion:
    try:
        return _completion_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RetryableError(f"malformed LLM response: {exc}", reason="bad_response") from exc


def _content(resp: _Completion) -> str:
    """The summary text, or a RetryableError for a 200 that carries none (bad gateways do)."""
    if not resp.choices:
        raise RetryableError("LLM answered without choices", reason="bad_response")
    message = resp.choices[0].message
    content = message.content if message is not None else None
    if not content or not content.strip():
        raise RetryableError("LLM answered with empty content", reason="bad_response")
    return content.strip()
