"""Writing a crawl's sinks to files: one JSON line per URL, deduplicated by fingerprint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from common.docsqueue import DocsQueue
from common.errors import ConfigError
from crawler.frontier import Frontier
from crawler.records import PageRecord
from summarizer.records import SummaryRecord

__all__ = ["export_pages", "export_summaries", "write_jsonl"]

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


async def export_summaries(queue: DocsQueue, out_dir: Path) -> tuple[Path, int]:
    """Write ``out_dir/summaries.jsonl`` (sorted by URL), one line per doc fingerprint."""
    records = [
        msgspec.json.decode(raw, type=SummaryRecord) async for _, raw in queue.summary_records()
    ]
    records.sort(key=lambda r: r.url)
    lines = [_enc.encode(r) for r in records]
    path = await asyncio.to_thread(write_jsonl, out_dir, "summaries.jsonl", lines)
    return path, len(records)


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
