"""Versioned payloads stored in Redis (JSON via msgspec; never pickle)."""

from __future__ import annotations

import msgspec

from common.errors import PermanentError

__all__ = [
    "DOC_VERSION",
    "URL_ENTRY_VERSION",
    "Doc",
    "UrlEntry",
    "decode_doc",
    "decode_url_entry",
    "encode_doc",
    "encode_url_entry",
]

URL_ENTRY_VERSION = 1


class UrlEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the frontier stores for one admitted URL (short field names: there are millions)."""

    u: str  # canonical URL
    d: int = 0  # depth: seeds are 0
    p: str | None = None  # the page it was found on
    v: int = URL_ENTRY_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UrlEntry)


def encode_url_entry(entry: UrlEntry) -> str:
    return _encoder.encode(entry).decode()


def decode_url_entry(raw: str | bytes) -> UrlEntry:
    """Decode a payload; a foreign or newer version is a PermanentError, never a crash."""
    try:
        entry = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise PermanentError(f"undecodable URL entry: {exc}", reason="bad_payload") from exc
    if entry.v != URL_ENTRY_VERSION:
        raise PermanentError(f"unknown URL entry version {entry.v}", reason="bad_payload")
    return entry


DOC_VERSION = 1


class Doc(msgspec.Struct, kw_only=True):
    """A parsed page handed from the crawler to the summarizer (text already capped)."""

    url: str
    fp: str
    title: str
    text: str
    lang: str | None = None
    fetched_at: float
    v: int = DOC_VERSION


_doc_decoder = msgspec.json.Decoder(Doc)


def encode_doc(doc: Doc) -> str:
    return _encoder.encode(doc).decode()


def decode_doc(raw: str | bytes) -> Doc:
    """Decode a doc; a foreign or newer version is a PermanentError, never a crash."""
    try:
        doc = _doc_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PermanentError(f"undecodable doc: {exc}", reason="bad_payload") from exc
    if doc.v != DOC_VERSION:
        raise PermanentError(f"unknown doc version {doc.v}", reason="bad_payload")
    return doc
