"""The summarizer worker: claim docs -> content cache -> engine -> settle with accounting.

The claim/slot/shutdown loop is common.leasedworker.LeasedWorker. A ConfigError from the API
(401, 403, unknown model) stops the worker with that message and leaves every doc queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from common.batcher import Batcher
from common.docsqueue import DocKind, DocLease, DocOp, DocResult, DocsQueue
from common.errors import ConfigError, OutputError, PermanentError, StoreUnavailable
from common.heartbeat import Heartbeats
from common.leasedworker import LeasedWorker, WorkerTiming
from common.lifecycle import Shutdown
from common.logging import get_logger
from common.metrics import SummarizerMetrics
from common.serde import Doc, decode_doc
from common.sinks import RecordWriter
from common.urls import host_of
from summarizer.cache import SummaryCache, content_key
from summarizer.cost import cost_usd
from summarizer.engines import DocFailed, Engine, Request, Summary
from summarizer.limiter import AdaptiveLimit
from summarizer.profiles import Profile, Profiles
from summarizer.records import ExtractionRecord, SummaryRecord, encode_record
from summarizer.retry import passing_trouble

__all__ = ["DocsWorker", "SummarizeStats", "SummarizeWorker", "crawl_pending"]

log = get_logger(__name__)
L = TypeVar("L")


@dataclass(slots=True)
class SummarizeStats:
    summarized: int = 0
    failed: int = 0
    cached: int = 0
    stale: int = 0


@dataclass(frozen=True, slots=True)
class _Spent:
    """What a doc's API calls cost: stored in its record and counted in its settle op."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @classmethod
    def of(
        cls, summary: Summary, prices: dict[str, tuple[float, float]], price: float = 1.0
    ) -> _Spent:
        """``price``: the fraction of the live price paid (the Batch API's discount)."""
        ptok, ctok = summary.prompt_tokens, summary.completion_tokens
        cost = cost_usd(prices, summary.summarizer, ptok, ctok) * price
        return cls(summary.summarizer, ptok, ctok, cost)

    def fields(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost, 8),
        }

    def op(self, kind: DocKind, fp: str, **rest: Any) -> DocOp:
        return DocOp(
            kind,
            fp,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_micro_usd=round(self.cost * 1_000_000),
            **rest,
        )


def crawl_pending(counts: dict[str, int]) -> int:
    """The crawl's admitted URLs not yet done, failed or skipped: pages that may make docs."""
    c = counts
    return c.get("admitted", 0) - c.get("done", 0) - c.get("failed", 0) - c.get("skipped", 0)


class DocsWorker(LeasedWorker[L]):
    """What the live and the batch summarizer do alike on the docs queue: reap the expired
    leases of dead summarizers (or batch pollers), tell when the crawl's docs are all done,
    and keep the heartbeat. (Subclasses set ``_queue`` and ``_heartbeats``.)"""

    role = "summarize"
    _queue: DocsQueue
    _heartbeats: Heartbeats

    async def reap(self) -> int:
        requeued, dead = await self._queue.reap()
        if requeued or dead:
            log.info("docs_reaped", requeued=requeued, dead=dead)
        return requeued + dead

    async def finished(self) -> bool:
        """Nothing to summarize now, and the crawl will not produce more (docs held by a batch
        job are in flight: a job anywhere keeps pending above 0)."""
        stats = await self._queue.stats()
        return stats.pending == 0 and crawl_pending(stats.counts) <= 0

    async def beat(self, worker_id: str, beat: str) -> None:
        await self._heartbeats.beat(worker_id, beat)

    async def forget(self, worker_id: str) -> None:
        await self._heartbeats.forget(worker_id)


class SummarizeWorker(DocsWorker[DocLease]):
    def __init__(
        self,
        *,
        concurrency: int,
        timing: WorkerTiming,
        queue: DocsQueue,
        heartbeats: Heartbeats,
        engine: Engine,
        profiles: Profiles,
        cache: SummaryCache,
        prices: dict[str, tuple[float, float]],
        metrics: SummarizerMetrics,
        shutdown: Shutdown,
        adaptive: AdaptiveLimit | None = None,
        worker_id: str | None = None,
        sink: RecordWriter | None = None,
    ) -> None:
        super().__init__(
            concurrency=concurrency, timing=timing, shutdown=shutdown, worker_id=worker_id
        )
        self._queue = queue
        self._heartbeats = heartbeats
        self._engine = engine
        self._profiles = profiles
        self._cache = cache
        self._prices = prices
        self._metrics = metrics
        self._adaptive = adaptive
        self.stats = SummarizeStats()
        self.fatal: ConfigError | None = None
        self._sink = sink
        # Finished docs are settled together: one docs_settle call per flush, not per doc.
        self._settler: Batcher[DocOp, DocResult | OutputError] = Batcher(
            lambda ops: self.settle_ops(self.worker_id, ops)
        )

    @property
    def profiles(self) -> Profiles:
        return self._profiles

    @property
    def cache(self) -> SummaryCache:
        return self._cache

    def count_doc(self, kind: DocKind) -> None:
        """A doc settled (for the metrics: a dead doc is a failed one)."""
        self._metrics.docs.labels(DocKind.FAILED if kind is DocKind.DEAD else kind).inc()

    def spent_micro_usd(self, summary: Summary, price: float) -> int:
        """What ``summary``'s calls cost (micro-USD at ``price`` times the live price), also
        counted in the metrics: the tokens of an answer paid for but not used."""
        spent = _Spent.of(summary, self._prices, price)
        self._account(spent)
        return round(spent.cost * 1_000_000)

    # -- LeasedWorker ---------------------------------------------------------------------

    async def claim(self, n: int) -> tuple[Sequence[DocLease], float | None]:
        if self.fatal is not None:
            return [], 1.0
        return await self._queue.claim(self.worker_id, n, self.timing.lease_s), None

    def extra_tasks(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._settler.run(stop)]

    def key(self, item: DocLease) -> str:
        return item.fp

    def limit(self) -> int:
        # The adaptive limit (at most --concurrency) bounds API calls: the calls beyond it wait
        # in AdaptiveLimit. A doc also spends time outside its call (claim, cache lookup,
        # settle), so the worker leases a few more docs than it may call for: every call slot
        # stays busy, and cache hits flow while calls wait.
        if self._adaptive is None:
            return self.concurrency
        self._metrics.adaptive_limit.set(self._adaptive.limit)
        return int(self._adaptive.limit) + 4 + self.concurrency // 4

    async def release(self, keys: Sequence[str]) -> None:
        await self._queue.settle(self.worker_id, [DocOp(DocKind.RELEASE, k) for k in keys])

    async def renew(self, keys: Sequence[str]) -> None:
        await self._queue.renew(self.worker_id, keys, self.timing.lease_s)

    def beat_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {n: getattr(self.stats, n) for n in self.stats.__slots__}
        if self._adaptive is not None:
            fields["adaptive_limit"] = round(self._adaptive.limit, 1)
        return fields

    def on_in_flight(self, n: int) -> None:
        self._metrics.in_flight.set(n)

    def on_paused(self, reason: str | None, previous: str | None) -> None:
        self._metrics.paused.show(reason, previous)

    # -- one doc --------------------------------------------------------------------------

    async def handle(self, item: DocLease) -> None:
        op = await self.live_op(item, self.worker_id)
        if op is None:
            return
        result = await self.until_stored(lambda: self._settler.submit(op))
        if isinstance(result, OutputError):  # the record did not reach the sink: released
            if not self.shutdown.stop.is_set():
                log.warning("stop_claiming", worker=self.worker_id, reason="sink_failed")
                self.shutdown.request()
        elif result is DocResult.STALE:
            self.stats.stale += 1
        elif result is not None:
            self.count_doc(op.kind)

    async def live_op(self, item: DocLease, holder: str) -> DocOp | None:
        """The settle op of one doc summarized by live calls (the batch mode's worker calls it
        for the docs it sends live, ``holder`` being the batch's lease holder); None when the
        API's configuration is wrong: the doc was released and the worker told to stop."""
        started = time.monotonic()
        try:
            doc = decode_doc(item.payload)
            op = await self._summarize(item, doc, started)
        except ConfigError as exc:
            await self._stop_on_config_error(item, exc, holder)
            return None
        except (asyncio.CancelledError, StoreUnavailable):
            raise
        except DocFailed as exc:  # (invalid_output, max_doc_tokens, a long page's failed chunk)
            spent = _Spent.of(exc.spent, self._prices)
            op = self.failed_op(item, exc.reason, str(exc), started, spent)
        except PermanentError as exc:
            op = self.failed_op(item, exc.reason, str(exc), started)
        except Exception as exc:  # a bug on one doc must not kill the worker
            log.exception("doc_crashed", fp=item.fp, error=repr(exc))
            op = self.failed_op(item, "internal_error", repr(exc), started)
        return dataclasses.replace(op, attempt=item.attempt)

    async def settle_ops(self, holder: str, ops: list[DocOp]) -> list[DocResult | OutputError]:
        """Settle finished docs held by ``holder`` in one call (the batch mode's worker too).
        With a sink outside Redis their records are written there first (one write, durable
        before the settle) and the ops carry none; if that write fails, the docs are released
        instead and each gets the OutputError."""
        held = [i for i, op in enumerate(ops) if op.kind != DocKind.RELEASE and op.record]
        error: OutputError | None = None
        if self._sink is not None and held:
            sent = list(ops)
            try:
                await self._sink.write([(ops[i].fp, ops[i].record) for i in held])
            except OutputError as exc:
                error = exc
            for i in held:
                op = ops[i]
                sent[i] = (
                    dataclasses.replace(op, record="")
                    if error is None
                    else DocOp(DocKind.RELEASE, op.fp, attempt=op.attempt)
                )
            ops = sent
        results: list[DocResult | OutputError] = list(await self._queue.settle(holder, ops))
        if error is not None:
            for i in held:
                results[i] = error
        return results

    async def _summarize(self, item: DocLease, doc: Doc, started: float) -> DocOp:
        profile = self._profiles.for_host(host_of(doc.url))
        request = Request(doc.url, doc.title, doc.text, profile)
        made: list[Summary] = []

        async def compute() -> str:
            made.append(await self._engine.summarize(request))
            return made[0].text

        # (the answer is in the shared cache before the doc settles: see summarizer.cache)
        identity = self._engine.cache_identity(request)
        text, cached = await self._cache.single_flight(content_key(identity, doc.text), compute)
        return self.success_op(
            item,
            doc,
            profile,
            made[0] if made else Summary(text, identity[0]),
            cached=cached,
            started=started,
        )

    def success_op(
        self,
        item: DocLease,
        doc: Doc,
        profile: Profile,
        summary: Summary,
        *,
        cached: bool,
        started: float,
        price: float = 1.0,
    ) -> DocOp:
        """The settle op of a doc's answer (its record, tokens and cost); ``price``: the
        fraction of the live price its calls cost (the Batch API's discount)."""
        spent = _Spent.of(summary, self._prices, price) if not cached else _Spent()
        if cached:
            self.stats.cached += 1
            self._metrics.cache_hits.inc()
        else:
            self._account(spent)
        self.stats.summarized += 1
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        # the map calls made for this record (none for a cache hit)
        chunks, truncated = (summary.chunks, summary.truncated) if not cached else (0, False)
        common: dict[str, Any] = {
            "url": doc.url,
            "title": doc.title,
            "summarizer": summary.summarizer,
            "cached": cached,
            "attempts": item.attempt,
            "elapsed_ms": elapsed_ms,
            "created_at": round(time.time(), 3),
            "chunks": chunks,
            "truncated": truncated,
            **spent.fields(),
        }
        record: SummaryRecord | ExtractionRecord
        if profile.schema is None:
            record = SummaryRecord(summary=summary.text, **common)
        else:
            record = ExtractionRecord(
                schema=profile.schema.name,
                # a cache hit is the JSON of a validated answer to the same schema
                data=summary.data if not cached else json.loads(summary.text),
                **common,
            )
        return spent.op(
            DocKind.SUMMARIZED,
            item.fp,
            reason="cached" if cached else "",
            record=encode_record(record),
        )

    def _account(self, spent: _Spent) -> None:
        if spent.prompt_tokens or spent.completion_tokens:
            self._metrics.tokens.labels("prompt", spent.model).inc(spent.prompt_tokens)
            self._metrics.tokens.labels("completion", spent.model).inc(spent.completion_tokens)
        if spent.cost:
            self._metrics.cost.labels(spent.model).inc(spent.cost)

    def failed_op(
        self,
        item: DocLease,
        reason: str,
        message: str,
        started: float,
        spent: _Spent | None = None,
    ) -> DocOp:
        """A failed doc's op; ``spent``: the tokens its calls used (accounted all the same)."""
        self.stats.failed += 1
        spent = spent or _Spent()
        self._account(spent)
        log.warning("doc_failed", fp=item.fp, reason=reason, error=message[:300])
        try:
            url = decode_doc(item.payload).url
        except PermanentError:
            url = ""
        schema = self._profiles.for_host(host_of(url)).schema if url else None
        common: dict[str, Any] = {
            "url": url,
            "outcome": "failed",
            "reason": reason,
            "attempts": item.attempt,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            "created_at": round(time.time(), 3),
            "summarizer": spent.model or None,
            **spent.fields(),
        }
        record: SummaryRecord | ExtractionRecord = (
            SummaryRecord(**common)
            if schema is None
            else ExtractionRecord(schema=schema.name, **common)
        )
        # (out of retries on a passing trouble: a dead letter, kept for `requeue --docs`)
        kind = DocKind.DEAD if passing_trouble(reason) else DocKind.FAILED
        return spent.op(kind, item.fp, reason=reason, record=encode_record(record))

    async def _stop_on_config_error(self, item: DocLease, exc: ConfigError, holder: str) -> None:
        if self.fatal is None:
            self.fatal = exc
            log.error("summarizer_misconfigured", error=str(exc))
        await self.until_stored(
            lambda: self._queue.settle(holder, [DocOp(DocKind.RELEASE, item.fp)])
        )
        self.shutdown.request()
