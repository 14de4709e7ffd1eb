"""Versioned payloads stored in Redis (JSON via msgspec; never pickle)."""

from __future__ import annotations

import base64
import binascii
from typing import Protocol, TypeVar

import msgspec
import zstandard

from common.errors import PermanentError
from common.text import collapse_whitespace

__all__ = [
    "DEFAULT_LLM_INPUT_TOKENS",
    "DOC_VERSION",
    "URL_ENTRY_VERSION",
    "Doc",
    "Revisit",
    "UrlEntry",
    "WarcCapture",
    "decode_doc",
    "decode_url_entry",
    "decode_versioned",
    "doc_text_budget",
    "encode_doc",
    "encode_url_entry",
]

URL_ENTRY_VERSION = 1


class WarcCapture(msgspec.Struct, frozen=True):
    """The WARC response record that holds a URL's last archived payload: what a later visit
    with the same payload refers to instead of storing it again (crawler/warc.py)."""

    d: str  # its WARC-Payload-Digest ("sha1:...")
    u: str  # its WARC-Target-URI
    t: str  # its WARC-Date


class Revisit(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a revisit knows of the URL's last visit (docs/revisits.md)."""

    h: str  # hash of the main text at the last visit
    e: str | None = None  # its ETag (sent as If-None-Match)
    m: str | None = None  # its Last-Modified (sent as If-Modified-Since)
    i: int = 0  # the interval in ms that led to this visit (0: the next pass)
    w: WarcCapture | None = None  # where its payload was archived, when it was


class UrlEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the frontier stores for one admitted URL (short field names: there are millions)."""

    u: str  # canonical URL
    d: int = 0  # depth: seeds are 0
    p: str | None = None  # the page it was found on
    r: Revisit | None = None  # on a revisit: what the last visit found
    k: str | None = None  # what it is when not a page: "feed" (crawler.feeds)
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


DOC_VERSION = 2
# Docs whose text is longer than this many characters store it compressed (``tz``).
DOC_COMPRESS_OVER = 1024
# Characters a doc keeps per token of the summarizer's input budget: the budget is estimated
# at 4 characters per token, and English runs at 4-4.5 with tiktoken, so 6 leaves a margin
# (languages with fewer characters per token only need less).
DOC_CHARS_PER_TOKEN = 6
# The summarizer's default input budget (LLMSettings.max_input_tokens).
DEFAULT_LLM_INPUT_TOKENS = 3000


def doc_text_budget(max_input_tokens: int) -> int:
    """The most text a doc needs to carry for a summarizer reading ``max_input_tokens``."""
    return max_input_tokens * DOC_CHARS_PER_TOKEN


class Doc(msgspec.Struct, kw_only=True):
    """A parsed page handed from the crawler to the summarizer (text already capped; its
    whitespace as in the page until decode_doc collapses it).

    Stored with ``text`` moved into ``tz`` (zstd, base64) when it is over DOC_COMPRESS_OVER
    characters; decode_doc gives ``text`` back either way.
    """

    url: str
    fp: str
    title: str
    text: str = ""
    tz: str | None = None
    lang: str | None = None
    fetched_at: float
    v: int = DOC_VERSION


_doc_decoder = msgspec.json.Decoder(Doc)
# zstd level 3: on 18 KB of page text 3-5x less CPU than zlib at level 1-6 for the same size
# (about 0.1 ms a doc; see README, "Bounded Redis memory").
_zc = zstandard.ZstdCompressor(level=3)
_zd = zstandard.ZstdDecompressor()


def encode_doc(doc: Doc) -> str:
    if len(doc.text) > DOC_COMPRESS_OVER:
        packed = base64.b64encode(_zc.compress(doc.text.encode())).decode("ascii")
        doc = msgspec.structs.replace(doc, text="", tz=packed)
    return _encoder.encode(doc).decode()


def decode_doc(raw: str | bytes, max_chars: int = 4_000_000) -> Doc:
    """The doc with its text restored and its whitespace collapsed (the crawler leaves that
    to the reader: common.text); version 1 docs (uncompressed) are read too."""
    try:
        doc = decode_versioned(_doc_decoder, raw, "doc", DOC_VERSION)
    except PermanentError:
        doc = decode_versioned(_doc_decoder, raw, "doc", 1)
    text = doc.text
    if doc.tz is not None:
        try:
            data = _zd.decompress(
                base64.b64decode(doc.tz, validate=True), max_output_size=max_chars * 4
            )
            text = data.decode("utf-8")
        except (binascii.Error, zstandard.ZstdError, UnicodeDecodeError) as exc:
            raise PermanentError(f"undecodable doc text: {exc}", reason="bad_payload") from exc
    return msgspec.structs.replace(doc, text=collapse_whitespace(text), tz=None)
