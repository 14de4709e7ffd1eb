"""Replaying dead letters (`distcrawl requeue`): what a requeue did, and the loop that runs a
requeue script over one shard's dead list in bounded calls.

The scripts (common/lua/requeue.lua for URLs, docs_requeue.lua for docs) each look at a
bounded number of entries per call, so a million dead letters never hold Redis for long; the
loop calls again until every entry the list held at its first call was looked at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REQUEUE_BATCH", "Requeued", "requeue_all"]

# Entries one script call looks at (about a millisecond of Redis time).
REQUEUE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Requeued:
    """What a requeue put back in its queue: how many, by the reason they had failed with,
    and how many matching dead docs could not be put back because they kept no text (they
    died past the crawl's bound: see common/lua/lib_docs_dead.lua)."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    kept_no_text: int = 0

    @classmethod
    def total(cls, parts: Iterable[Requeued]) -> Requeued:
        count = kept = 0
        reasons: Counter[str] = Counter()
        for part in parts:
            count += part.count
            kept += part.kept_no_text
            reasons.update(part.reasons)
        return cls(count, dict(reasons), kept)

    @classmethod
    def from_answer(cls, res: Sequence[Any]) -> Requeued:
        """One script answer: {length, looked at, requeued, kept no text, reason1, n1, ...}."""
        flat = res[4:]
        reasons = {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return cls(int(res[2]), reasons, int(res[3]))


async def requeue_all(
    call: Callable[[int], Awaitable[Sequence[Any]]], batch: int = REQUEUE_BATCH
) -> Requeued:
    """Run a requeue script on one shard (``call(limit)``: one call, looking at up to ``limit``
    entries) until it has looked at as many entries as the dead list held at the first call:
    each of those once (entries it leaves go to the list's tail, behind them)."""
    parts: list[Requeued] = []
    remaining: int | None = None
    while remaining is None or remaining > 0:
        res = await call(batch if remaining is None else min(batch, remaining))
        looked = int(res[1])
        remaining = (int(res[0]) if remaining is None else remaining) - looked
        parts.append(Requeued.from_answer(res))
        if looked == 0:  # the list is empty (or another requeue emptied it meanwhile)
            break
    return Requeued.total(parts)
