"""Batches what finished pages leave behind into one atomic commit call per flush.

Each page slot hands over its settle op and its prepared links and waits for the answer; a
common.batcher.Batcher sends everything queued as a single ``commit`` script call (mark
redirect hops seen, admit links, settle pages).

With a sink outside Redis (common/sinks.py) the flush first writes the batch's page records to
it, in one write, and settles the pages only once the write has returned (durable): a crash in
between re-crawls the pages, and their second records are deduplicated at export. The settle
ops then carry no record, so nothing of the page stays in Redis. (A retry's record is kept: the
settle script stores it only when it dead-letters the URL, next to the dead letter.) A page
whose record could not be written is released in the same call instead, and its caller gets
the OutputError.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.batcher import Batcher
from common.errors import OutputError
from common.protocol import SettleKind
from common.sinks import RecordWriter
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
        sink: RecordWriter | None = None,
    ) -> None:
        self._frontier = frontier
        self._admitter = admitter
        self._worker = worker_id
        self._on_admitted = on_admitted
        self._sink = sink
        self._batcher: Batcher[_Pending, SettleResult | OutputError] = Batcher(
            self._flush, max_batch
        )

    async def commit(
        self, op: SettleOp, prepared: Prepared | None, seen: list[tuple[str, str]]
    ) -> SettleResult:
        """Queue one page's commit and wait until it is stored (raises StoreUnavailable; and
        OutputError when its record could not be written to the sink: it was released)."""
        result = await self._batcher.submit(_Pending(op, prepared, seen))
        if isinstance(result, OutputError):
            raise result
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """The flush loop; returns once ``stop`` is set and nothing is queued."""
        await self._batcher.run(stop)

    async def _flush(self, batch: list[_Pending]) -> list[SettleResult | OutputError]:
        ops, lost, error = await self._store_records([item.op for item in batch])
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
            ops=ops,
        )
        offset = 0
        for item in batch:
            if item.prepared is not None:
                n = len(item.prepared.batch)
                report = self._admitter.apply(item.prepared, codes[offset : offset + n])
                offset += n
                self._on_admitted(report)
        if error is None:
            return list(results)
        return [error if i in lost else r for i, r in enumerate(results)]

    async def _store_records(
        self, ops: list[SettleOp]
    ) -> tuple[Sequence[SettleOp], set[int], OutputError | None]:
        """Write the acks' records to the sink; the ops to send (records dropped, or releases
        where the write failed), the indexes of those lost, and the error."""
        if self._sink is None:
            return ops, set(), None
        held = [i for i, op in enumerate(ops) if op.kind is SettleKind.ACK and op.record]
        if not held:
            return ops, set(), None
        try:
            await self._sink.write([(ops[i].fp, ops[i].record) for i in held])
        except OutputError as exc:
            out = list(ops)
            for i in held:
                out[i] = SettleOp.release(ops[i].fp)
            return out, set(held), exc
        out = list(ops)
        for i in held:
            out[i] = dataclasses.replace(ops[i], record="")
        return out, set(), None
