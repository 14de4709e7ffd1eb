"""What the crawler writes: one page record per URL, and the doc handed to the summarizer."""

from __future__ import annotations

import msgspec

__all__ = ["DOC_VERSION", "Doc", "PageRecord", "decode_doc", "encode_doc", "encode_record"]

DOC_VERSION = 1


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


class Doc(msgspec.Struct, kw_only=True):
    """A parsed page queued for the summarizer (text already capped)."""

    url: str
    fp: str
    title: str
    text: str
    lang: str | None = None
    fetched_at: float
    v: int = DOC_VERSION


_enc = msgspec.json.Encoder()
_doc_dec = msgspec.json.Decoder(Doc)


def encode_record(record: PageRecord) -> str:
    return _enc.encode(record).decode()


def encode_doc(doc: Doc) -> str:
    return _enc.encode(doc).decode()


def decode_doc(raw: str | bytes) -> Doc:
    return _doc_dec.decode(raw)
