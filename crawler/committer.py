"""Batches what finished pages leave behind into one atomic commit call per flush.

Each page slot hands over its settle op and its prepared links and waits for the answer; a
common.batcher.Batcher sends everything queued as a single ``commit`` script call (mark
redirect hops seen, admit links, settle pages).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from common.batcher import Batcher
from crawler.admission import AdmitReport, Admitter, Prepared
from crawler.frontier import Candidate, Frontier, SettleOp, SettleResult

__all__ = ["Committer"]


@dataclass(slots=True)
class _Pending:
    op: SettleOp
    prepared: Prepared | None
    seen: list[tuple[str, str]]  # (domain, fp) of redirect hops


class Committer:
    def __init__(
        self,
        frontier: Frontier,
        admitter: Admitter,
        worker_id: str,
        on_admitted: Callable[[AdmitReport], None],
        max_batch: int = 128,
    ) -> None:
        self._frontier = frontier
        self._admitter = admitter
        self._worker = worker_id
        self._on_admitted = on_admitted
        self._batcher: Batcher[_Pending, SettleResult] = Batcher(self._flush, max_batch)

    async def commit(
        self, op: SettleOp, prepared: Prepared | None, seen: list[tuple[str, str]]
    ) -> SettleResult:
        """Queue one page's commit and wait until it is stored (raises StoreUnavailable)."""
        return await self._batcher.submit(_Pending(op, prepared, seen))

    async def run(self, stop: asyncio.Event) -> None:
        """The flush loop; returns once ``stop`` is set and nothing is queued."""
        await self._batcher.run(stop)

    async def _flush(self, batch: list[_Pending]) -> list[SettleResult]:
        seen: list[tuple[str, str]] = []
        candidates: list[Candidate] = []
        rejects: Counter[str] = Counter()
        for item in batch:
            seen += item.seen
            if item.prepared is not None:
                candidates += item.prepared.batch.values()
                rejects.update(item.prepared.report.rejected)
        codes, results = await self._frontier.commit(
            self._worker,
            seen=seen,
            candidates=candidates,
            local_rejects=rejects,
            ops=[item.op for item in batch],
        )
        offset = 0
        for item in batch:
            if item.prepared is not None:
                n = len(item.prepared.batch)
                report = self._admitter.apply(item.prepared, codes[offset : offset + n])
                offset += n
                self._on_admitted(report)
        return list(results)
