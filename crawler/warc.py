"""WARC output: every HTTP exchange of the Fetcher as a ``response`` and a ``request`` record
(a ``revisit`` record instead of the response when a revisit repeats the payload archived last
time: a 304, or the same payload digest).

Files are ``.warc.gz`` with one gzip member per record (readers seek to any record's offset),
a ``warcinfo`` record first, rotated at ``max_bytes`` and named
``distcrawl-<UTC time>-<seq>-<host>-<pid>-<random>.warc.gz`` so that workers on many hosts
(and restarts of one worker) never pick the same name. Records are built by ``warcio``
(headers, digests); this module adds the gzip member per record (at a cheaper level than
warcio's 9), the file handling and the writer thread.

Payloads are stored as sent: ``Content-Encoding`` (gzip, deflate) intact, so digests match
the bytes the server sent. aiohttp has already removed a chunked transfer coding, so a
``Transfer-Encoding`` header is stored as ``X-Crawler-Transfer-Encoding`` (Common Crawl's
convention) and the payload is the entity body, as ISO 28500 defines it for digests.

Writing happens on one thread per worker process: the event loop hands over an exchange and
awaits its location; the thread takes whatever has queued up, writes it with one ``write``
call and a flush to the OS, and resolves the whole batch in one loop callback. A location is
only returned once its bytes are in the file (the OS's cache: a SIGKILLed worker loses no
acknowledged record; files are fsynced when closed). A failed write (full disk, folder gone)
cuts the file back to its last whole record and fails this and every later record with an
OutputError: the worker stops claiming and releases its pages instead of losing their output.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
from zlib_ng import zlib_ng

from common.errors import OutputError
from common.logging import get_logger
from common.serde import WarcCapture
from common.settings import WarcSettings

__all__ = ["Exchange", "WarcArchive", "WarcFiles", "WarcLocation", "warc_file_name"]

log = get_logger(__name__)

_WARC_VERSION = "1.1"
# Archive-only bodies (redirects, error statuses, skipped content types) are read up to this.
SIDE_BODY_BYTES = 64 * 1024
_RENAMED = {"transfer-encoding": "X-Crawler-Transfer-Encoding"}
_NOT_MODIFIED_PROFILE = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
_SAME_PAYLOAD_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class WarcLocation:
    """Where a response record starts: the file's name (in the worker's WARC folder) and the
    byte offset of its gzip member."""

    file: str
    offset: int
    # The full response record that holds this exchange's payload: its own record, or, when
    # a revisit record was written instead, the one it refers to (None: not kept for dedupe).
    capture: WarcCapture | None = None


@dataclass(slots=True)
class Exchange:
    """One HTTP request and its response as the Fetcher saw them."""

    url: str
    started: float  # time.time() when the request went out
    method: str
    target: str  # path and query, as on the request line
    request_headers: list[tuple[str, str]]
    protocol: str  # "HTTP/1.1"
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    payload: bytes  # as sent (content coding intact, transfer coding removed)
    truncated: str | None = None  # why the body was cut (WARC-Truncated): length, time...
    # A page's last archived payload (a revisit): a 304, or a response with the same payload
    # digest, is written as a ``revisit`` record that refers to it.
    previous: WarcCapture | None = None


def warc_file_name(seq: int, *, now: float | None = None, tag: str | None = None) -> str:
    """``distcrawl-<UTC yyyymmddHHMMSS>-<seq>-<host>-<pid>-<random>.warc.gz``."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    host = _UNSAFE.sub("_", socket.gethostname())[:60] or "host"
    tag = tag or os.urandom(3).hex()
    return f"distcrawl-{stamp:%Y%m%d%H%M%S}-{seq:05d}-{host}-{os.getpid()}-{tag}.warc.gz"


def _warc_date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WarcFiles:
    """The files of one worker: synchronous, used by one thread at a time.

    ``add`` serializes an exchange into the pending buffer and returns where its response
    record will be; ``flush`` writes the buffer. A file rotates before the exchange that
    finds it at ``max_bytes`` or more, so a file ends at most one exchange past the limit."""

    def __init__(self, settings: WarcSettings, info: dict[str, str]) -> None:
        assert settings.dir is not None
        self.directory = Path(settings.dir)
        self._max = settings.max_bytes
        self._level = settings.gzip_level
        self._info = info
        self._tag = os.urandom(3).hex()
        self._seq = -1
        self._fd: int | None = None
        self.name = ""
        self._written = 0  # bytes of the current file on disk (all whole records)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._records = 0  # records after the warcinfo in the current file
        self._buf = io.BytesIO()
        self._builder = WARCWriter(self._buf, gzip=False, warc_version=_WARC_VERSION)
        self.closed: list[str] = []

    # -- files ----------------------------------------------------------------------------

    def open(self) -> None:
        """Begin the next file with its warcinfo record (written at once: a folder that cannot
        take it fails here, before any page is fetched)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        self.name = warc_file_name(self._seq, tag=self._tag)
        self._fd = os.open(self.directory / self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._written = 0
        self._records = 0
        record = self._builder.create_warcinfo_record(self.name, self._info)
        self._pending.append(self._member(record))
        self._pending_size += len(self._pending[-1])
        self.flush()

    def close(self) -> None:
        """Write what is pending, fsync and close the current file."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self._write_pending(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.closed.append(self.name)

    def abandon(self) -> None:
        """After a failed write: drop what is pending and close, keeping the whole records."""
        self._pending.clear()
        self._pending_size = 0
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                with contextlib.suppress(OSError):  # a half-written record must not stay
                    os.ftruncate(fd, self._written)
            finally:
                os.close(fd)

    # -- records --------------------------------------------------------------------------

    def add(self, ex: Exchange) -> WarcLocation:
        if self._fd is None or (self._records and self._size >= self._max):
            self.close()
            self.open()
        response, capture = self._response_or_revisit(ex)
        request = self._request(ex, response.rec_headers.get_header("WARC-Record-ID"))
        where = WarcLocation(self.name, self._size, capture)
        for record in (response, request):
            member = self._member(record)
            self._pending.append(member)
            self._pending_size += len(member)
        self._records += 2
        return where

    def flush(self) -> None:
        if self._fd is not None:
            self._write_pending(self._fd)

    @property
    def _size(self) -> int:
        return self._written + self._pending_size

    def _write_pending(self, fd: int) -> None:
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, data[done:])
        except OSError:
            os.ftruncate(fd, self._written)  # (best effort; abandon() tries again)
            raise
        self._written += len(data)
        self._pending.clear()
        self._pending_size = 0

    def _member(self, record: ArcWarcRecord) -> bytes:
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._builder.write_record(record)
        z = zlib_ng.compressobj(self._level, zlib_ng.DEFLATED, 16 + zlib_ng.MAX_WBITS)
        return z.compress(buf.getbuffer()) + z.flush()

    def _response_or_revisit(self, ex: Exchange) -> tuple[ArcWarcRecord, WarcCapture | None]:
        """The exchange's ``response`` record, or a ``revisit`` record when it repeats the
        page's last archived payload (a 304 to a conditional request: profile
        server-not-modified; the same payload digest: identical-payload-digest); and the
        capture that holds its payload (see WarcLocation.capture)."""
        headers = [(_RENAMED.get(k.lower(), k), v) for k, v in ex.response_headers]
        http = StatusAndHeaders(f"{ex.status} {ex.reason}".rstrip(), headers, protocol=ex.protocol)
        date = _warc_date(ex.started)
        prev = ex.previous
        if prev is not None and ex.status == HTTPStatus.NOT_MODIFIED:
            return self._revisit(ex, http, date, prev, _NOT_MODIFIED_PROFILE), prev
        warc = {"WARC-Date": date}
        if ex.truncated:
            warc["WARC-Truncated"] = ex.truncated
        response = self._builder.create_warc_record(
            ex.url,
            "response",
            payload=io.BytesIO(ex.payload),
            length=len(ex.payload),
            http_headers=http,
            warc_headers_dict=warc,
        )
        digest = response.rec_headers.get_header("WARC-Payload-Digest")
        if ex.truncated or not digest or not 200 <= ex.status < 300:
            return response, None  # (a cut or failed payload is no capture to refer to)
        if prev is not None and prev.d == digest:
            return self._revisit(ex, http, date, prev, _SAME_PAYLOAD_PROFILE), prev
        return response, WarcCapture(d=digest, u=ex.url, t=date)

    def _revisit(
        self, ex: Exchange, http: StatusAndHeaders, date: str, prev: WarcCapture, profile: str
    ) -> ArcWarcRecord:
        """A ``revisit`` record: this exchange's HTTP headers, no payload, and where the
        payload is (WARC 1.1, section 6.7)."""
        warc = {
            "WARC-Date": date,
            "WARC-Profile": profile,
            "WARC-Refers-To-Target-URI": prev.u,
            "WARC-Refers-To-Date": prev.t,
            "WARC-Payload-Digest": prev.d,
        }
        if ex.truncated:
            warc["WARC-Truncated"] = ex.truncated
        return self._builder.create_warc_record(
            ex.url, "revisit", http_headers=http, warc_headers_dict=warc
        )

    def _request(self, ex: Exchange, response_id: str) -> ArcWarcRecord:
        http = StatusAndHeaders(
            f"{ex.method} {ex.target} {ex.protocol}", ex.request_headers, is_http_request=True
        )
        warc = {"WARC-Date": _warc_date(ex.started), "WARC-Concurrent-To": response_id}
        return self._builder.create_warc_record(
            ex.url,
            "request",
            payload=io.BytesIO(b""),
            length=0,
            http_headers=http,
            warc_headers_dict=warc,
        )


_Waiter = tuple[Exchange, "asyncio.Future[WarcLocation]"]
_Outcome = tuple["asyncio.Future[WarcLocation]", WarcLocation | OutputError]


class WarcArchive:
    """The async side: ``record(exchange)`` from the event loop, files written on one thread."""

    def __init__(self, settings: WarcSettings, info: dict[str, str]) -> None:
        self._files = WarcFiles(settings, info)
        self._queue: queue.SimpleQueue[_Waiter | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: OutputError | None = None
        self.written = 0  # exchanges written

    @property
    def directory(self) -> Path:
        return self._files.directory

    @property
    def files(self) -> list[str]:
        """Every file written so far, the current one last."""
        return [*self._files.closed, *([self._files.name] if self._files.name else [])]

    async def start(self) -> None:
        """Open the first file (OutputError if the folder cannot take it) and the thread."""
        try:
            await asyncio.to_thread(self._files.open)
        except OSError as exc:
            self._files.abandon()
            raise self._error(exc) from exc
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="warc-writer", daemon=True)
        self._thread.start()

    async def record(self, ex: Exchange) -> WarcLocation:
        """Write ``ex``; its response record's location once the bytes are in the file."""
        if self.failure is not None:
            raise self.failure
        assert self._loop is not None, "start() first"
        future: asyncio.Future[WarcLocation] = self._loop.create_future()
        self._queue.put((ex, future))
        return await future

    async def aclose(self) -> None:
        """Write what is queued, fsync and close the file; wait for the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write WARC files in {self._files.directory}: {exc}")

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Waiter] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            self._write(batch, closing=stop)

    def _write(self, batch: list[_Waiter], *, closing: bool) -> None:
        outcomes: list[_Outcome] = []
        try:
            if self.failure is None:
                outcomes = [(future, self._files.add(ex)) for ex, future in batch]
                if closing:
                    self._files.close()
                else:
                    self._files.flush()
        except OSError as exc:
            self._files.abandon()
            self.failure = self._error(exc)
            log.error("warc_failed", error=str(self.failure))
        if self.failure is not None:
            outcomes = [(future, self.failure) for _, future in batch]
        else:
            self.written += len(batch)
        if outcomes:
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(_resolve, outcomes)


def _resolve(outcomes: list[_Outcome]) -> None:
    for future, outcome in outcomes:
        if future.done():  # (its page was cancelled meanwhile)
            continue
        if isinstance(outcome, OutputError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
