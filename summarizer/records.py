"""The LLM stage's records, one per doc, keyed by URL fingerprint in the summaries sink.

A doc whose profile has no schema gets a ``SummaryRecord`` (a line of ``summaries.jsonl``); one
with a schema gets an ``ExtractionRecord`` (a line of ``extractions.jsonl``), which carries the
validated object as ``data`` and the schema's name as ``schema``: export tells them apart by
that field, so ``summaries.jsonl`` keeps its shape.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ExtractionRecord", "SummaryRecord", "encode_record", "is_extraction"]


class SummaryRecord(msgspec.Struct, kw_only=True):
    url: str
    title: str | None = None
    summary: str | None = None
    summarizer: str | None = None  # model name, "extractive", or module:function
    outcome: str = "summarized"  # summarized | failed
    reason: str | None = None
    prompt_tokens: int = 0  # every call of the doc (a long page's chunks and reduce calls)
    completion_tokens: int = 0
    cost_usd: float = 0.0
    chunks: int = 0  # map calls: 1 for a page read in one call, 0 without a call (cache hit)
    truncated: bool = False  # the text was cut: --llm-long-pages cut, or --llm-max-doc-tokens
    cached: bool = False
    attempts: int = 1
    elapsed_ms: float | None = None
    created_at: float | None = None


class ExtractionRecord(msgspec.Struct, kw_only=True):
    url: str
    schema: str  # the schema's name (its "title", else the file's stem)
    title: str | None = None
    data: Any = None  # the answer, validated against the schema (None when failed)
    summarizer: str | None = None  # the model
    outcome: str = "extracted"  # extracted | failed (e.g. invalid_output)
    reason: str | None = None
    prompt_tokens: int = 0  # every call of the doc (chunks, reduce, repair calls)
    completion_tokens: int = 0
    cost_usd: float = 0.0
    chunks: int = 0  # map calls: 1 for a page read in one call, 0 without a call (cache hit)
    truncated: bool = False  # the text was cut: --llm-long-pages cut, or --llm-max-doc-tokens
    cached: bool = False
    attempts: int = 1
    elapsed_ms: float | None = None
    created_at: float | None = None


class _Kind(msgspec.Struct):
    schema: str | None = None


_enc = msgspec.json.Encoder()
_kind = msgspec.json.Decoder(_Kind)


def encode_record(record: SummaryRecord | ExtractionRecord) -> str:
    return _enc.encode(record).decode()


def is_extraction(raw: str | bytes) -> bool:
    """Whether a stored record is an extraction (it names a schema)."""
    return _kind.decode(raw).schema is not None
