"""Writing a crawl's sinks to files: one JSON line per URL, deduplicated by fingerprint."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import msgspec

from common.docsqueue import DocsQueue
from common.errors import ConfigError
from crawler.frontier import Frontier
from crawler.records import PageRecord
from summarizer.records import ExtractionRecord, SummaryRecord, is_extraction

__all__ = ["Exported", "export_pages", "export_summaries", "write_jsonl"]

_dec = msgspec.json.Decoder(PageRecord)
_enc = msgspec.json.Encoder()


async def export_pages(frontier: Frontier, out_dir: Path) -> tuple[Path, int]:
    """Write ``out_dir/pages.jsonl`` (sorted by URL) from the pages sink; returns (path, n).

    The sink is a Redis hash keyed by URL fingerprint, so a URL fetched twice (after a worker
    crash) is one line here.
    """
    records: list[PageRecord] = []
    async for _, raw in frontier.page_records():
        records.append(_dec.decode(raw))
    records.sort(key=lambda r: r.url)
    lines = [_enc.encode(r) for r in records]
    path = await asyncio.to_thread(write_jsonl, out_dir, "pages.jsonl", lines)
    return path, len(records)


@dataclass(frozen=True, slots=True)
class Exported:
    summaries: Path
    n_summaries: int
    extractions: Path | None  # written only when the crawl has extraction records
    n_extractions: int

    def describe(self) -> str:
        text = f"{self.n_summaries} summaries to {self.summaries}"
        if self.extractions is not None:
            text += f" and {self.n_extractions} extractions to {self.extractions}"
        return text


async def export_summaries(queue: DocsQueue, out_dir: Path) -> Exported:
    """Write ``out_dir/summaries.jsonl`` and, when a schema was used, ``extractions.jsonl``
    (each sorted by URL, one line per doc fingerprint; a record is an extraction when it
    names its schema)."""
    summaries: list[SummaryRecord] = []
    extractions: list[ExtractionRecord] = []
    async for _, raw in queue.summary_records():
        if is_extraction(raw):
            extractions.append(msgspec.json.decode(raw, type=ExtractionRecord))
        else:
            summaries.append(msgspec.json.decode(raw, type=SummaryRecord))
    spath = await _write_sorted(out_dir, "summaries.jsonl", summaries)
    epath = await _write_sorted(out_dir, "extractions.jsonl", extractions) if extractions else None
    return Exported(spath, len(summaries), epath, len(extractions))


async def _write_sorted(
    out_dir: Path, name: str, records: list[SummaryRecord] | list[ExtractionRecord]
) -> Path:
    lines = [_enc.encode(r) for r in sorted(records, key=lambda r: r.url)]
    return await asyncio.to_thread(write_jsonl, out_dir, name, lines)


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
