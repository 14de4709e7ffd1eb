"""What the crawler writes for every URL: one page record (the doc is common.serde.Doc)."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["PageRecord", "encode_record"]


class PageRecord(msgspec.Struct, kw_only=True):
    """One line of pages.jsonl: every admitted URL that reached a terminal state."""

    url: str
    final_url: str | None = None
    outcome: str
    reason: str | None = None
    status: int | None = None
    depth: int | None = None
    title: str | None = None
    description: str | None = None
    lang: str | None = None
    content_type: str | None = None
    bytes: int | None = None
    truncated: bool = False
    links: int | None = None
    text_chars: int | None = None
    fetched_at: float | None = None
    elapsed_ms: float | None = None
    attempts: int | None = None
    # With --warc: the file (in the fetching worker's WARC folder) and byte offset of the
    # final response's record, a gzip member that can be read from there without scanning.
    warc_file: str | None = None
    warc_offset: int | None = None
    # With --extractor: what the user's function returned for this page, and, when it failed
    # (reason extractor_error), its message.
    data: dict[str, Any] | None = None
    error: str | None = None
    # Revisits (docs/revisits.md): what this visit found (new | changed | gone; an unchanged
    # page keeps the record of the visit that last found it new or changed) and the crawl's
    # pass it belongs to.
    change: str | None = None
    kind: str | None = None  # "feed" for a feed (its items are the links it admitted)
    pass_no: int | None = msgspec.field(default=None, name="pass")


_enc = msgspec.json.Encoder()


def encode_record(record: PageRecord) -> str:
    return _enc.encode(record).decode()
