"""The provider's Batch API: the JSONL files we send and read, and the four calls.

``POST /v1/files`` (purpose ``batch``), ``POST /v1/batches`` (endpoint
``/v1/chat/completions``), ``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``, through
the process's AsyncOpenAI; its exceptions are translated by summarizer.retry like every
other call. Parsing and the per-request retry policy are pure functions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
import openai

from common.errors import DistcrawlError
from summarizer.retry import translate_openai_error

__all__ = [
    "BATCH_ENDPOINT",
    "BatchApi",
    "BatchResult",
    "BatchStatus",
    "Next",
    "disposition",
    "parse_results",
    "request_lines",
]

BATCH_ENDPOINT: Final = "/v1/chat/completions"
# a batch that is still working: poll again later
RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})


class Next(enum.StrEnum):
    """What becomes of one request of a finished batch (``disposition``)."""

    OK = "ok"  # an answer: settle the doc
    BATCH = "batch"  # send it again in the job's next batch
    LIVE = "live"  # summarize it by live calls
    FAIL = "fail"  # the doc fails with the reason


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One line of a batch's output or error file. ``status`` is the HTTP status of the
    request (0: none, the request never ran; ``code`` says why, e.g. ``batch_expired``);
    ``body`` is the response body (a chat.completion on 200)."""

    custom_id: str
    status: int
    code: str = ""
    message: str = ""
    body: bytes = b""

    @property
    def reason(self) -> str:
        """The doc's failure reason, as the live path names it (``http_400``, ``batch_expired``)."""
        return f"http_{self.status}" if self.status else (self.code or "batch_missing")


@dataclass(frozen=True, slots=True)
class BatchStatus:
    id: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    errors: str = ""  # why a batch failed validation

    @property
    def running(self) -> bool:
        return self.status in RUNNING


def request_lines(requests: dict[str, dict[str, Any]]) -> bytes:
    """The JSONL input file: one chat completion request per custom id."""
    enc = msgspec.json.Encoder()
    return b"".join(
        enc.encode({"custom_id": cid, "method": "POST", "url": BATCH_ENDPOINT, "body": body})
        + b"\n"
        for cid, body in requests.items()
    )


class _Error(msgspec.Struct):
    code: str | None = None
    message: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None


class _Response(msgspec.Struct):
    status_code: int = 0
    body: msgspec.Raw = msgspec.Raw(b"null")


class _Line(msgspec.Struct):
    custom_id: str
    response: _Response | None = None
    error: _Error | None = None


_line = msgspec.json.Decoder(_Line)
_error_body = msgspec.json.Decoder(_ErrorBody)


def parse_results(*files: bytes) -> dict[str, BatchResult]:
    """The results of an output file and an error file, by custom id (a line that cannot be
    read is skipped: its request counts as missing and is retried)."""
    results: dict[str, BatchResult] = {}
    for text in files:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                line = _line.decode(raw)
            except msgspec.DecodeError:
                continue
            results[line.custom_id] = _result(line)
    return results


def _result(line: _Line) -> BatchResult:
    if line.response is None:
        err = line.error or _Error()
        return BatchResult(line.custom_id, 0, err.code or "", err.message or "")
    body = bytes(line.response.body)
    status = line.response.status_code
    code = message = ""
    if status != 200:
        try:
            err = _error_body.decode(body).error or _Error()
        except msgspec.DecodeError:
            err = _Error()
        code, message = err.code or "", err.message or ""
    return BatchResult(line.custom_id, status, code, message, body)


def disposition(result: BatchResult | None, round_: int, rounds: int) -> Next:
    """The retry policy for one request of a finished batch, by reason:

    - answered (200): OK (a broken or schema-violating answer is then sent LIVE by the caller:
      the live path has the repair call);
    - never ran (expired, cancelled, missing from both files, batch failed), rate-limited
      (429), server errors (5xx), 408/409: the next BATCH while the job has rounds left, then LIVE;
    - 400/422 naming ``response_format`` (the live path falls back to json_object), 401/403/404
      (configuration: the live call stops the worker with one line, the doc kept): LIVE;
    - other 4xx (the request itself is bad): FAIL.
    """
    if result is not None and result.status == 200:
        return Next.OK
    status = result.status if result is not None else 0
    if status in (400, 422) and result is not None and "response_format" in result.message:
        return Next.LIVE
    if status in (401, 403, 404):
        return Next.LIVE
    if 400 <= status < 500 and status not in (408, 409, 429):
        return Next.FAIL
    return Next.BATCH if round_ < rounds else Next.LIVE


class BatchApi:
    """The Batch API calls, errors translated (summarizer.retry)."""

    def __init__(self, client: openai.AsyncOpenAI, window: str) -> None:
        self._client = client
        self._window = window

    async def submit(self, lines: bytes, job: str) -> str:
        """Upload the input file and create its batch; the batch's id."""
        try:
            uploaded = await self._client.files.create(
                file=(f"distcrawl-{job}.jsonl", lines, "application/jsonl"), purpose="batch"
            )
            batch = await self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=BATCH_ENDPOINT,
                completion_window=cast(Any, self._window),
                metadata={"distcrawl_job": job},
            )
        except Exception as exc:
            raise _translated(exc) from exc
        return batch.id

    async def status(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._client.batches.retrieve(batch_id)
        except Exception as exc:
            raise _translated(exc) from exc
        errors = ""
        if batch.errors is not None and batch.errors.data:
            errors = "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data)[:300]
        return BatchStatus(
            batch.id, batch.status, batch.output_file_id, batch.error_file_id, errors
        )

    async def content(self, file_id: str | None) -> bytes:
        """A file's bytes (b"" for none)."""
        if not file_id:
            return b""
        try:
            return (await self._client.files.content(file_id)).content
        except Exception as exc:
            raise _translated(exc) from exc


def _translated(exc: Exception) -> DistcrawlError:
    return translate_openai_error(exc)
