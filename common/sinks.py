"""Where page and summary records go: the sink URL, the record line, writers and readers.

A crawl has one sink, chosen when it is created (``--sink URL``, kept in its spec) so that every
worker writes where ``export`` reads:

- ``redis`` (the default): the shards' ``pages``/``summaries`` hashes, written by the settle
  scripts themselves; nothing here is involved.
- a folder (``file:///abs/path`` or a plain path): JSONL segments per worker under
  ``<folder>/<stream>/`` (common.sink_folder).
- object storage (``s3://bucket/prefix``): one JSONL object per flush under
  ``<prefix>/<stream>/`` (common.sink_s3).

Outside Redis a record is one JSON line: the record's own object with the URL fingerprint and
the write time spliced in front (``{"_fp":"…","_at":1733…,"url":…}``), so a record written
twice (a page re-crawled after a crash) is told apart at export, where the latest wins.
A writer's ``write`` returns once the records are durable; the caller settles the pages after
that, never before. A writer that cannot write fails this and every later call with an
OutputError (one line for the user; the worker releases its pages and stops claiming).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

import msgspec

from common.errors import ConfigError, OutputError

if TYPE_CHECKING:  # (common.settings imports this module through common.spec)
    from common.settings import SinkSettings

__all__ = [
    "SINK_REDIS",
    "RecordWriter",
    "Stream",
    "latest_records",
    "normalize_sink_url",
    "open_writer",
    "read_lines",
    "record_line",
    "segment_name",
    "whole_lines",
]

SINK_REDIS = "redis"
Stream = Literal["pages", "summaries"]
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def normalize_sink_url(text: str) -> str:
    """``redis``, ``file:///absolute/folder`` or ``s3://bucket[/prefix]`` for what a user gave
    (a plain path becomes an absolute file URL); ConfigError for anything else."""
    text = text.strip()
    if text in ("", SINK_REDIS, "redis:"):
        return SINK_REDIS
    if "://" not in text:
        return Path(text).expanduser().resolve().as_uri()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"sink {text!r}: a file URL names a local folder (file:///path)")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"sink {text!r}: give an absolute path (file:///path)")
        return Path(path).resolve().as_uri()
    if scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"sink {text!r}: {bucket!r} is not an S3 bucket name (3-63 characters: "
                "lower-case letters, digits, dots and hyphens)"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"sink {text!r}: an s3:// URL takes no query or fragment")
        prefix = parts.path.strip("/")
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    raise ConfigError(
        f"sink {text!r}: unsupported scheme {scheme!r} (use redis, a folder path, file:///path "
        "or s3://bucket/prefix)"
    )


def folder_of(url: str) -> Path:
    """The folder of a normalized ``file://`` sink URL."""
    return Path(unquote(urlsplit(url).path))


def bucket_and_prefix(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes) of a normalized ``s3://`` sink URL."""
    parts = urlsplit(url)
    return parts.netloc, parts.path.strip("/")


def segment_name(seq: int, tag: str, *, now: float | None = None) -> str:
    """``<UTC yyyymmddHHMMSS>-<seq>-<host>-<pid>-<tag>.jsonl``: sorts by time, and workers on
    many hosts (or restarts of one) never pick the same name."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    host = _UNSAFE.sub("_", socket.gethostname())[:60] or "host"
    return f"{stamp:%Y%m%d%H%M%S}-{seq:06d}-{host}-{os.getpid()}-{tag}.jsonl"


# -- the record line ------------------------------------------------------------------------


def record_line(fp: str, record: str, at: float) -> bytes:
    """One sink line: ``record`` (a JSON object) with ``_fp`` and ``_at`` first."""
    if not record.startswith("{") or record == "{}":
        raise ValueError(f"a sink record must be a non-empty JSON object, got {record[:40]!r}")
    return f'{{"_fp":"{fp}","_at":{at:.6f},{record[1:]}\n'.encode()


class _Meta(msgspec.Struct):
    fp: str = msgspec.field(name="_fp")
    at: float = msgspec.field(name="_at")


_meta = msgspec.json.Decoder(_Meta)


def whole_lines(data: bytes) -> Iterator[bytes]:
    """The complete lines of a segment: a trailing line without its newline (a write cut
    short by a kill or a full disk, never acknowledged) is left out."""
    end = data.rfind(b"\n")
    if end < 0:
        return
    for line in data[:end].split(b"\n"):
        if line:
            yield line


def latest_records(lines: Iterable[bytes]) -> dict[str, bytes]:
    """fingerprint -> the line written last (``_at``; a tie: the one read last)."""
    best: dict[str, tuple[float, bytes]] = {}
    for line in lines:
        meta = _meta.decode(line)
        seen = best.get(meta.fp)
        if seen is None or meta.at >= seen[0]:
            best[meta.fp] = (meta.at, line)
    return {fp: line for fp, (_, line) in best.items()}


# -- writers and readers --------------------------------------------------------------------


class RecordWriter(Protocol):
    """One worker's writer of one stream."""

    failure: OutputError | None

    async def start(self) -> None:
        """Check the sink can be written (OutputError if not), before any page is claimed."""

    async def write(self, records: Sequence[tuple[str, str]]) -> None:
        """Store (fingerprint, record JSON) pairs; returns once they are durable."""

    async def aclose(self) -> None:
        """Make everything written final (close the segment); idempotent."""


def open_writer(url: str, stream: Stream, settings: SinkSettings) -> RecordWriter | None:
    """The writer for sink ``url`` (normalized), not started; None for the Redis sink."""
    if url == SINK_REDIS:
        return None
    if url.startswith("file://"):
        from common.sink_folder import FolderWriter

        return FolderWriter(folder_of(url) / stream, settings)
    from common.sink_s3 import S3Writer

    bucket, prefix = bucket_and_prefix(url)
    return S3Writer(bucket, prefix, stream, settings)


async def read_lines(url: str, stream: Stream) -> AsyncIterator[bytes]:
    """Every whole record line of ``stream`` in sink ``url`` (none for the Redis sink)."""
    if url == SINK_REDIS:
        return
    if url.startswith("file://"):
        from common.sink_folder import read_folder

        async for line in read_folder(folder_of(url) / stream):
            yield line
        return
    from common.sink_s3 import read_objects

    bucket, prefix = bucket_and_prefix(url)
    async for line in read_objects(bucket, prefix, stream):
        yield line
