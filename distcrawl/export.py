"""Writing a crawl's records to files: one record per URL, as JSON lines or Parquet.

Records are read from the crawl's sink (common/sinks.py): Redis hashes, or the segments of a
folder or S3 sink. In a segment sink a URL re-crawled after a crash has two lines: the one
written last wins. The Redis hashes are read in every case and win over a segment line: outside
a Redis sink they hold only what the scripts write themselves (the record of a URL dead-lettered
by a reap or at its last retry, of a doc failed after its last lease), the final word on it.
"""

from __future__ import annotations

import asyncio
import types
import typing
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from common.docsqueue import DocsQueue
from common.errors import ConfigError
from common.sinks import SINK_REDIS, Stream, latest_records, read_lines
from crawler.frontier import Frontier
from crawler.records import PageRecord
from summarizer.records import ExtractionRecord, SummaryRecord, is_extraction

__all__ = [
    "ExportFormat",
    "Exported",
    "arrow_schema",
    "collect_records",
    "export_pages",
    "export_summaries",
    "write_jsonl",
]

ExportFormat = Literal["jsonl", "parquet"]
_dec = msgspec.json.Decoder(PageRecord)
_enc = msgspec.json.Encoder()
R = TypeVar("R", PageRecord, SummaryRecord, ExtractionRecord)


async def collect_records(
    redis_items: AsyncIterator[tuple[str, str]], sink: str, stream: Stream
) -> dict[str, bytes]:
    """fingerprint -> record JSON: the latest line of each URL in the sink, then the Redis
    hash's records over them."""
    found = latest_records([line async for line in read_lines(sink, stream)])
    async for fp, raw in redis_items:
        found[fp] = raw.encode()
    return found


# What a pass's changes file lists: the pages it found new or changed, and those now gone.
CHANGES = frozenset({"new", "changed", "gone"})


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: records to a file, and a second file beside it when there was
    one to write (extractions beside summaries, a pass's changes beside pages)."""

    path: Path
    n: int
    what: str  # "page records", "summaries"
    extra: Path | None = None
    n_extra: int = 0
    extra_what: str = ""

    def describe(self) -> str:
        text = f"{self.n} {self.what} to {self.path}"
        if self.extra is not None:
            text += f" and {self.n_extra} {self.extra_what} to {self.extra}"
        return text


async def export_pages(
    frontier: Frontier,
    out_dir: Path,
    *,
    sink: str = SINK_REDIS,
    fmt: ExportFormat = "jsonl",
    changes: tuple[str, int] | None = None,
) -> Exported:
    """Write ``out_dir/pages.jsonl`` (or ``.parquet``), sorted by URL: the latest record of
    every URL. ``changes`` = (stem, pass): also ``out_dir/<stem>.jsonl``, the records of that
    pass and later ones that found a page new, changed or gone (docs/revisits.md)."""
    found = await collect_records(frontier.page_records(), sink, "pages")
    records = sorted((_dec.decode(raw) for raw in found.values()), key=lambda r: r.url)
    path = await _write(out_dir, "pages", records, PageRecord, fmt)
    if changes is None:
        return Exported(path, len(records), "page records")
    stem, since = changes
    changed = [r for r in records if r.change in CHANGES and (r.pass_no or 1) >= since]
    cpath = await _write(out_dir, stem, changed, PageRecord, fmt)
    return Exported(path, len(records), "page records", cpath, len(changed), "new, changed or gone")


async def export_summaries(
    queue: DocsQueue, out_dir: Path, *, sink: str = SINK_REDIS, fmt: ExportFormat = "jsonl"
) -> Exported:
    """Write ``out_dir/summaries.jsonl`` and, when a schema was used, ``extractions.jsonl``
    (each sorted by URL, one line per doc fingerprint; a record is an extraction when it
    names its schema); ``.parquet`` files with ``fmt="parquet"``."""
    summaries: list[SummaryRecord] = []
    extractions: list[ExtractionRecord] = []
    found = await collect_records(queue.summary_records(), sink, "summaries")
    for raw in found.values():
        if is_extraction(raw):
            extractions.append(msgspec.json.decode(raw, type=ExtractionRecord))
        else:
            summaries.append(msgspec.json.decode(raw, type=SummaryRecord))
    summaries.sort(key=lambda r: r.url)
    extractions.sort(key=lambda r: r.url)
    spath = await _write(out_dir, "summaries", summaries, SummaryRecord, fmt)
    epath = (
        await _write(out_dir, "extractions", extractions, ExtractionRecord, fmt)
        if extractions
        else None
    )
    return Exported(spath, len(summaries), "summaries", epath, len(extractions), "extractions")


async def _write(
    out_dir: Path, stem: str, records: Sequence[R], kind: type[R], fmt: ExportFormat
) -> Path:
    if fmt == "parquet":
        return await asyncio.to_thread(write_parquet, out_dir, f"{stem}.parquet", records, kind)
    lines = [_enc.encode(r) for r in records]
    return await asyncio.to_thread(write_jsonl, out_dir, f"{stem}.jsonl", lines)


def write_jsonl(out_dir: Path, name: str, lines: list[bytes]) -> Path:
    """Write atomically (temp file, then rename) so a reader never sees half a file."""
    path = out_dir / name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("wb") as fh:
            for line in lines:
                fh.write(line)
                fh.write(b"\n")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    return path


# -- Parquet --------------------------------------------------------------------------------

_SCALARS = {str: "string", int: "int64", float: "float64", bool: "bool"}


def _column_type(annotation: Any) -> str:
    """The Arrow type of a record field: its scalar type (None allowed), else JSON text."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return _column_type(inner[0])
    return _SCALARS.get(annotation, "json")


def arrow_schema(kind: type[msgspec.Struct]) -> list[tuple[str, str]]:
    """(column, type) for every field of a record struct: string, int64, float64, bool, or
    json (any other value, e.g. an extraction's ``data``, stored as its JSON text)."""
    return [(f.encode_name, _column_type(f.type)) for f in msgspec.structs.fields(kind)]


def write_parquet(out_dir: Path, name: str, records: Sequence[R], kind: type[R]) -> Path:
    """One Parquet file (zstd), written to a temp file and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = arrow_schema(kind)
    arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    arrow |= {"bool": pa.bool_(), "json": pa.string()}
    schema = pa.schema([(col, arrow[t]) for col, t in columns])
    rows: list[dict[str, Any]] = msgspec.to_builtins(list(records))
    for col, t in columns:
        if t == "json":
            for row in rows:
                if row.get(col) is not None:
                    row[col] = _enc.encode(row[col]).decode()
    table = pa.Table.from_pylist(rows, schema=schema)
    path = out_dir / name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
