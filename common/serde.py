"""Versioned payloads stored in Redis (JSON via msgspec; never pickle)."""

from __future__ import annotations

import msgspec

from common.errors import PermanentError

__all__ = ["URL_ENTRY_VERSION", "UrlEntry", "decode_url_entry", "encode_url_entry"]

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
