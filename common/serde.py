"""Versioned payloads stored in Redis (JSON via msgspec; never pickle)."""

from __future__ import annotations

from typing import Protocol, TypeVar

import msgspec

from common.errors import PermanentError

__all__ = [
    "DOC_VERSION",
    "URL_ENTRY_VERSION",
    "Doc",
    "UrlEntry",
    "decode_doc",
    "decode_url_entry",
    "decode_versioned",
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


class _Versioned(Protocol):
    @property
    def v(self) -> int: ...


V = TypeVar("V", bound=_Versioned)


def decode_versioned(
    decoder: msgspec.json.Decoder[V], raw: str | bytes, what: str, version: int
) -> V:
    """Decode a stored payload; bad JSON, a wrong shape, or a foreign or newer version is a
    PermanentError (reason ``bad_payload``), never a crash."""
    try:
        value = decoder.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise PermanentError(f"undecodable {what}: {exc}", reason="bad_payload") from exc
    if value.v != version:
        raise PermanentError(f"unknown {what} version {value.v}", reason="bad_payload")
    return value


def decode_url_entry(raw: str | bytes) -> UrlEntry:
    return decode_versioned(_decoder, raw, "URL entry", URL_ENTRY_VERSION)


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
    return decode_versioned(_doc_decoder, raw, "doc", DOC_VERSION)
