"""One line of summaries.jsonl per summarized (or failed) doc, keyed by URL fingerprint."""

from __future__ import annotations

import msgspec

__all__ = ["SummaryRecord", "encode_summary"]


class SummaryRecord(msgspec.Struct, kw_only=True):
    url: str
    title: str | None = None
    summary: str | None = None
    summarizer: str | None = None  # model name, "extractive", or module:function
    outcome: str = "summarized"  # summarized | failed
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    attempts: int = 1
    elapsed_ms: float | None = None
    created_at: float | None = None


_enc = msgspec.json.Encoder()


def encode_summary(record: SummaryRecord) -> str:
    return _enc.encode(record).decode()
