"""The mock OpenAI server's Files and Batch API (tests/mock_llm.py mounts it), on the real wire
protocol: the ``openai`` package's ``files.create``, ``files.content``, ``batches.create`` and
``batches.retrieve`` accept its answers.

* ``POST /v1/files`` (multipart ``file`` and ``purpose``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``.
* ``POST /v1/batches`` (``input_file_id``, ``endpoint`` ``/v1/chat/completions``,
  ``completion_window`` ``24h``, ``metadata``), ``GET /v1/batches/{id}``,
  ``POST /v1/batches/{id}/cancel``, ``GET /v1/batches``.

A batch is ``in_progress`` until ``batch_delay_s`` (as configured when it is read) after its
creation, then ends when it is next read: each request is answered as
``/v1/chat/completions`` would answer it (no latency, no rate limit: batches have their own
pool), except that a share ``batch_error_rate`` of them (drawn from
the mock's RNG) get a ``batch_error_status`` error (500 by default) in the error file, and with
``batch_expire_share`` the last share of each batch never runs: the batch ends ``expired`` and
those requests are in the error file with ``"error": {"code": "batch_expired"}`` and no
response. An input file that is not valid JSONL, or a line with another method or URL, or a
repeated ``custom_id``, makes the batch ``failed`` (``errors.data`` says which line). A batch
cancelled before it ended is ``cancelled`` with every request in the error file
(``batch_cancelled``).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["ENDPOINT", "MockBatches", "ReplyFn"]

Json = dict[str, Any]
ENDPOINT = "/v1/chat/completions"
# (request body) -> (HTTP status, response body): how /v1/chat/completions answers it
ReplyFn = Callable[[Json], tuple[int, Json]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WINDOWS = {"24h": 24 * 3600}


def _error_body(message: str, code: str | None = None, param: str | None = None) -> Json:
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def _error(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> web.Response:
    return web.json_response(_error_body(message, code, param), status=status)


def _not_found(message: str, param: str | None = None) -> web.HTTPNotFound:
    """A 404 in the API's error shape, to raise from a handler."""
    body = json.dumps(_error_body(message, param=param))
    return web.HTTPNotFound(text=body, content_type="application/json")


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Batch:
    id: str
    input_file_id: str
    window: str
    metadata: Json | None
    started: float  # time.time() at creation; it ends batch_delay_s later (read when asked)
    status: str = "in_progress"
    created_at: int = field(default_factory=lambda: int(time.time()))
    ended_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[Json] = field(default_factory=list)
    total: int = 0
    completed: int = 0
    failed: int = 0

    def to_json(self) -> Json:
        ended = self.ended_at
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.created_at if self.status != "failed" else None,
            "expires_at": self.created_at + _WINDOWS.get(self.window, 86400),
            "finalizing_at": ended if self.status in ("completed", "expired") else None,
            "completed_at": ended if self.status == "completed" else None,
            "failed_at": ended if self.status == "failed" else None,
            "expired_at": ended if self.status == "expired" else None,
            "cancelling_at": ended if self.status == "cancelled" else None,
            "cancelled_at": ended if self.status == "cancelled" else None,
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
        }


class MockBatches:
    """Files and batches in memory. ``config()`` answers the mock's current MockConfig (read
    for ``batch_delay_s``, ``batch_error_rate``, ``batch_error_status``,
    ``batch_expire_share``), ``random()`` draws from the mock's RNG, ``stats()`` is the
    MockStats to count in (``batches``, ``batch_requests``, ``batch_failed``,
    ``batch_prompt_tokens``, ``batch_completion_tokens``), ``auth(request)`` the 401 if any."""

    def __init__(
        self,
        reply: ReplyFn,
        config: Callable[[], Any],
        random: Callable[[], float],
        stats: Callable[[], Any],
        auth: Callable[[web.Request], web.Response | None],
    ) -> None:
        self._reply = reply
        self._config = config
        self._random = random
        self._stats = stats
        self._auth = auth
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self._pending: dict[str, list[Json]] = {}

    def routes(self, app: web.Application) -> None:
        add = app.router
        add.add_post("/v1/files", self._authed(self._upload))
        add.add_get("/v1/files/{id}", self._authed(self._file))
        add.add_get("/v1/files/{id}/content", self._authed(self._content))
        add.add_delete("/v1/files/{id}", self._authed(self._delete))
        add.add_post("/v1/batches", self._authed(self._create))
        add.add_get("/v1/batches", self._authed(self._list))
        add.add_get("/v1/batches/{id}", self._authed(self._retrieve))
        add.add_post("/v1/batches/{id}/cancel", self._authed(self._cancel))

    def _authed(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            denied = self._auth(request)
            return denied if denied is not None else await handler(request)

        return checked

    # -- files

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            return _error(400, "Expected a multipart/form-data body.")
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(purpose, str) or not purpose:
            return _error(400, "Missing required parameter: 'purpose'.", param="purpose")
        if not isinstance(upload, web.FileField):
            return _error(400, "Missing required parameter: 'file'.", param="file")
        item = _File(
            f"file-{uuid.uuid4().hex[:24]}",
            upload.filename or "upload",
            purpose,
            upload.file.read(),
        )
        self.files[item.id] = item
        return web.json_response(item.to_json())

    def _get_file(self, request: web.Request) -> _File:
        item = self.files.get(request.match_info["id"])
        if item is None:
            raise _not_found(f"No such File object: {request.match_info['id']}", param="id")
        return item

    async def _file(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._get_file(request).to_json())

    async def _content(self, request: web.Request) -> web.StreamResponse:
        item = self._get_file(request)
        return web.Response(body=item.data, content_type="application/octet-stream")

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        item = self._get_file(request)
        del self.files[item.id]
        return web.json_response({"id": item.id, "object": "file", "deleted": True})

    def _store(self, name: str, lines: list[Json]) -> str | None:
        if not lines:
            return None
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        item = _File(f"file-{uuid.uuid4().hex[:24]}", name, "batch_output", data)
        self.files[item.id] = item
        return item.id

    # -- batches

    async def _create(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        source = self.files.get(str(body.get("input_file_id")))
        if source is None:
            return _error(400, "Invalid 'input_file_id': no such file.", param="input_file_id")
        if source.purpose != "batch":
            return _error(400, "The input file must have purpose 'batch'.", param="input_file_id")
        if body.get("endpoint") != ENDPOINT:
            return _error(400, f"Invalid 'endpoint': the mock batches {ENDPOINT} only.")
        window = body.get("completion_window")
        if window not in _WINDOWS:
            return _error(400, "Invalid 'completion_window': expected '24h'.")
        metadata = body.get("metadata")
        batch = _Batch(
            f"batch_{uuid.uuid4().hex[:24]}",
            source.id,
            str(window),
            metadata if isinstance(metadata, dict) else None,
            time.time(),
        )
        requests = self._parse(source.data, batch)
        batch.total = len(requests) if requests is not None else 0
        self.batches[batch.id] = batch
        self._stats().batches += 1
        if requests is not None:
            self._pending[batch.id] = requests
        return web.json_response(batch.to_json())

    def _parse(self, data: bytes, batch: _Batch) -> list[Json] | None:
        """The input file's requests, or None with the batch failed (its ``errors``)."""
        requests: list[Json] = []
        seen: set[str] = set()
        for n, raw in enumerate(data.splitlines(), 1):
            if not raw.strip():
                continue
            problem = None
            try:
                line = json.loads(raw)
            except ValueError:
                line, problem = None, "invalid_json_line"
            if problem is None and not isinstance(line, dict):
                problem = "invalid_json_line"
            elif problem is None and isinstance(line, dict):
                if line.get("method") != "POST" or line.get("url") != ENDPOINT:
                    problem = "invalid_url"
                elif not isinstance(line.get("custom_id"), str) or line["custom_id"] in seen:
                    problem = "duplicate_custom_id"
                elif not isinstance(line.get("body"), dict):
                    problem = "invalid_body"
            if problem is not None:
                batch.errors.append(
                    {"code": problem, "message": f"line {n}: {problem}", "param": None, "line": n}
                )
                continue
            assert isinstance(line, dict)
            seen.add(line["custom_id"])
            requests.append(line)
        if batch.errors or not requests:
            if not requests and not batch.errors:
                batch.errors.append(
                    {"code": "empty_file", "message": "no requests", "param": None, "line": None}
                )
            batch.status = "failed"
            batch.ended_at = int(time.time())
            return None
        return requests

    def _finish(self, batch: _Batch) -> None:
        """Answer the batch's requests, once it is due."""
        cfg = self._config()
        due = batch.started + float(cfg.batch_delay_s)
        if batch.status != "in_progress" or batch.id not in self._pending or time.time() < due:
            return
        requests = self._pending.pop(batch.id)
        runs = len(requests) - math.floor(len(requests) * float(cfg.batch_expire_share))
        output: list[Json] = []
        errors: list[Json] = []
        for i, line in enumerate(requests):
            rid = f"batch_req_{uuid.uuid4().hex[:24]}"
            if i >= runs:
                errors.append(_expired(rid, line["custom_id"], "batch_expired"))
                continue
            if cfg.batch_error_rate and self._random() < cfg.batch_error_rate:
                status = int(cfg.batch_error_status)
                answer: Json = {
                    "error": {
                        "message": "The server had an error processing your request.",
                        "type": "server_error" if status >= 500 else "invalid_request_error",
                        "param": None,
                        "code": "rate_limit_exceeded" if status == 429 else None,
                    }
                }
            else:
                status, answer = self._reply(line["body"])
            response = {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}"}
            entry = {"id": rid, "custom_id": line["custom_id"], "error": None}
            entry["response"] = {**response, "body": answer}
            if status == 200:
                usage = answer.get("usage", {})
                stats = self._stats()
                stats.batch_requests += 1
                stats.batch_prompt_tokens += int(usage.get("prompt_tokens", 0))
                stats.batch_completion_tokens += int(usage.get("completion_tokens", 0))
                output.append(entry)
            else:
                errors.append(entry)
        self._stats().batch_failed += len(errors)
        batch.completed, batch.failed = len(output), len(errors)
        batch.status = "expired" if runs < len(requests) else "completed"
        batch.ended_at = int(time.time())
        batch.output_file_id = self._store(f"{batch.id}_output.jsonl", output)
        batch.error_file_id = self._store(f"{batch.id}_error.jsonl", errors)

    def _get_batch(self, request: web.Request) -> _Batch:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            raise _not_found(f"No batch found with id '{request.match_info['id']}'.")
        self._finish(batch)
        return batch

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._get_batch(request).to_json())

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        batch = self._get_batch(request)
        if batch.status == "in_progress":
            requests = self._pending.pop(batch.id, [])
            lines = [
                _expired(f"batch_req_{uuid.uuid4().hex[:24]}", r["custom_id"], "batch_cancelled")
                for r in requests
            ]
            batch.status, batch.ended_at = "cancelled", int(time.time())
            batch.failed = len(lines)
            batch.error_file_id = self._store(f"{batch.id}_error.jsonl", lines)
        return web.json_response(batch.to_json())

    async def _list(self, _: web.Request) -> web.StreamResponse:
        data = [b.to_json() for b in reversed(list(self.batches.values()))]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )


def _expired(rid: str, custom_id: str, code: str) -> Json:
    message = (
        "This request could not be executed before the completion window expired."
        if code == "batch_expired"
        else "This request was cancelled with its batch."
    )
    return {
        "id": rid,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
