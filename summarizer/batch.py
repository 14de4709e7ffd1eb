"""Batch mode (``--llm-mode batch``): docs summarized through the provider's Batch API.

A **job** is our unit: a worker claims up to ``batch_size`` docs under the lease holder
``batch:<job>`` (not its own id), writes the job's record to the crawl-wide ``llm-batches`` hash,
uploads one request per doc and creates a provider batch. Whoever polls the job (its creator,
or after ``batch_adopt_s`` without a poll any other worker, llm_batches.lua) renews the docs'
leases at every poll, downloads the output and error files when the batch ends and settles each
doc from its ``custom_id`` (the doc's fingerprint) as ``batch:<job>``. A request that failed is
sent again in the job's next batch, live, or failed, by reason (``batchapi.disposition``).

- Long pages (over the input budget, with map-reduce) and docs a batch could not answer usefully
  go through the live path (``SummarizeWorker.live_op``), settled under the same holder.
- Identical text already in the content cache is settled from it, as live; batch answers are
  added to it.
- Cost: batch answers at ``batch_price`` times the live price; live calls at the live price.
- A job whose creator died before its batch was created (state ``gathering``) is adopted and
  its docs released to the queue. A worker SIGTERMed stops holding its jobs: another worker
  (or itself, restarted) adopts them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from common.docsqueue import DocKind, DocLease, DocOp, DocResult, DocsQueue
from common.errors import (
    ConfigError,
    OutputError,
    PermanentError,
    RetryableError,
    StoreUnavailable,
)
from common.heartbeat import Heartbeats
from common.keys import CrawlKeys
from common.leasedworker import WorkerTiming
from common.lifecycle import Shutdown
from common.logging import get_logger
from common.scripts import CrawlScripts, ScriptRunner
from common.serde import Doc, decode_doc
from common.settings import LLMSettings
from common.urls import host_of
from summarizer.batchapi import (
    BatchApi,
    BatchResult,
    Next,
    disposition,
    parse_results,
    request_lines,
)
from summarizer.cache import SummaryCache, content_key
from summarizer.client import OpenAIEngine
from summarizer.engines import Request, Summary
from summarizer.schema import InvalidAnswer
from summarizer.worker import DocsWorker, SummarizeStats, SummarizeWorker, crawl_pending

__all__ = ["BatchRecord", "BatchWorker", "Job", "decode_record", "encode_record"]

log = get_logger(__name__)
# The finished jobs a worker remembers (ids of 16 characters; one job is up to a batch of docs).
_DONE_JOBS_KEPT = 1000
RECORD_VERSION = 1


class BatchRecord(msgspec.Struct, kw_only=True):
    """A job in flight, as stored in ``llm-batches`` (versioned)."""

    v: int = RECORD_VERSION
    job: str
    created_ms: int
    state: Literal["gathering", "submitted"] = "gathering"
    round: int = 1
    provider_id: str = ""
    docs: dict[str, int] = {}  # fp -> the lease's attempt: every doc the job holds
    sent: list[str] = []  # the fps in this round's provider batch

    @property
    def holder(self) -> str:
        return f"batch:{self.job}"


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(BatchRecord)


def encode_record(record: BatchRecord) -> str:
    return _enc.encode(record).decode()


def decode_record(raw: str | bytes) -> BatchRecord:
    try:
        record = _dec.decode(raw)
    except msgspec.DecodeError as exc:
        raise PermanentError(f"unreadable batch record: {exc}", reason="bad_record") from exc
    if record.v != RECORD_VERSION:
        raise PermanentError(f"batch record version {record.v}", reason="bad_record")
    return record


@dataclass(slots=True)
class Job:
    """A job this worker polls: one it gathered (``leases``) or one it adopted."""

    record: BatchRecord
    leases: list[DocLease] = field(default_factory=list)
    adopted: bool = False


class BatchWorker(DocsWorker[Job]):
    """Jobs, not docs, are the items: ``concurrency`` is how many this worker polls."""

    def __init__(
        self,
        *,
        llm: LLMSettings,
        timing: WorkerTiming,
        queue: DocsQueue,
        keys: CrawlKeys,
        scripts: ScriptRunner,
        heartbeats: Heartbeats,
        engine: OpenAIEngine,
        live: SummarizeWorker,
        cache: SummaryCache,
        api: BatchApi,
        shutdown: Shutdown,
        worker_id: str | None = None,
    ) -> None:
        super().__init__(
            concurrency=llm.batch_in_flight, timing=timing, shutdown=shutdown, worker_id=worker_id
        )
        self._llm = llm
        self._queue = queue
        self._heartbeats = heartbeats
        self._jobs_run = CrawlScripts(scripts, keys.crawl_level)
        self._engine = engine
        self._live = live
        self._profiles = live.profiles
        self._cache = cache
        self._api = api
        self._jobs: dict[str, Job] = {}
        # Jobs this worker finished: a take whose answer was on its way while the job was
        # dropped lists it still, and it must not be adopted (and run) a second time.
        self._done_jobs: dict[str, None] = {}
        self._waiting_since: float | None = None
        self.batches_submitted = 0
        self.batches_adopted = 0

    @property
    def stats(self) -> SummarizeStats:
        return self._live.stats

    @property
    def fatal(self) -> ConfigError | None:
        return self._live.fatal

    # -- the jobs' records (llm_batches.lua)

    async def _jobs_op(self, op: str, *args: str | int) -> Any:
        hold_ms = int(self._llm.batch_adopt_s * 1000)
        return await self._jobs_run("llm_batches", [op, self.worker_id, hold_ms, *args])

    async def _take(self, adopt: int) -> dict[str, str]:
        flat = await self._jobs_op("take", adopt)
        return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def _put(self, record: BatchRecord) -> bool:
        return bool(await self._jobs_op("put", record.job, encode_record(record)))

    async def _drop(self, record: BatchRecord) -> None:
        self._done_jobs[record.job] = None
        if len(self._done_jobs) > _DONE_JOBS_KEPT:
            del self._done_jobs[next(iter(self._done_jobs))]
        await self._jobs_op("drop", record.job)

    # -- LeasedWorker

    async def claim(self, n: int) -> tuple[Sequence[Job], float | None]:
        if self.fatal is not None:
            return [], 1.0
        jobs: list[Job] = []
        for job_id, raw in (await self._take(n)).items():
            if job_id in self._jobs or job_id in self._done_jobs:
                continue
            try:
                record = decode_record(raw)
            except PermanentError as exc:
                log.error("batch_record_unreadable", job=job_id, error=str(exc))
                continue
            log.info("batch_adopted", job=job_id, batch=record.provider_id, state=record.state)
            self.batches_adopted += 1
            jobs.append(self._track(Job(record, adopted=True)))
        if len(jobs) < n and await self._gather_due():
            job = await self._gather()
            if job is not None:
                jobs.append(job)
        return jobs, None

    def _track(self, job: Job) -> Job:
        self._jobs[job.record.job] = job
        return job

    async def _gather_due(self) -> bool:
        """A full batch waits, or docs have waited ``batch_gather_s``, or the crawl makes no
        more docs."""
        stats = await self._queue.stats()
        if stats.waiting == 0:
            self._waiting_since = None
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        return (
            stats.waiting >= self._llm.batch_size
            or now - self._waiting_since >= self._llm.batch_gather_s
            or crawl_pending(stats.counts) <= 0
        )

    async def _gather(self) -> Job | None:
        record = BatchRecord(job=uuid.uuid4().hex[:16], created_ms=int(time.time() * 1000))
        # Claimed on a short lease until the record lists them: docs of a job whose worker
        # died before writing it are reaped soon, not after the whole batch lease.
        short_s = self._llm.batch_adopt_s + self._llm.batch_poll_s
        leases: list[DocLease] = []
        while len(leases) < self._llm.batch_size:
            want = min(256, self._llm.batch_size - len(leases))
            got = await self._queue.claim(record.holder, want, short_s)
            leases += got
            if len(got) < want:
                break
        if not leases:
            return None
        self._waiting_since = None
        record.docs = {lease.fp: lease.attempt for lease in leases}
        await self._put(record)
        await self._renew_docs(record)
        return self._track(Job(record, leases))

    def key(self, item: Job) -> str:
        return item.record.job

    async def handle(self, item: Job) -> None:
        # (a cancelled job stays in _jobs: release() then knows what to do with it)
        try:
            await self._run_job(item)
        except _Lost:
            log.warning("batch_lost", job=item.record.job)  # another worker polls it now
        self._jobs.pop(item.record.job, None)

    async def release(self, keys: Sequence[str]) -> None:
        """Shutdown: a job not yet submitted gives its docs back; a submitted one is left for
        another worker to adopt at once."""
        submitted = []
        for key in keys:
            job = self._jobs.pop(key, None)
            if job is None:
                continue
            if job.record.state == "gathering":
                await self._give_back(job.record, list(job.record.docs))
                await self._drop(job.record)
            else:
                submitted.append(key)
        if submitted:
            await self._jobs_op("release", *submitted)

    async def renew(self, keys: Sequence[str]) -> None:
        for key in keys:
            job = self._jobs.get(key)
            if job is not None:
                await self._renew_docs(job.record)

    async def _renew_docs(self, record: BatchRecord) -> None:
        await self._queue.renew(record.holder, list(record.docs), self._llm.batch_lease_s)

    def beat_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {n: getattr(self.stats, n) for n in self.stats.__slots__}
        return fields | {"mode": "batch", "batches": len(self._jobs)}

    def extra_tasks(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._hold(stop)]

    async def _hold(self, stop: asyncio.Event) -> None:
        """Refresh this worker's holds on its jobs between claims (a worker with all its job
        slots busy does not claim); a job another worker adopted meanwhile is given up."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._llm.batch_poll_s / 2)
            if stop.is_set():
                return
            try:
                held = await self._take(0)
            except StoreUnavailable as exc:
                log.warning("store_unavailable", worker=self.worker_id, error=str(exc))
                continue
            for job_id in list(self._jobs):
                task = self._tasks.get(job_id)
                if job_id not in held and task is not None and job_id in self._submitted():
                    log.warning("batch_lost", job=job_id)  # adopted by another worker
                    task.cancel()
                    self._jobs.pop(job_id, None)

    def _submitted(self) -> set[str]:
        return {k for k, j in self._jobs.items() if j.record.state == "submitted"}

    # -- one job

    async def _run_job(self, job: Job) -> None:
        record = job.record
        if record.state == "gathering" and job.adopted:
            # its creator died before its batch was created: the docs go back to the queue
            await self._give_back(record, list(record.docs))
            await self._drop(record)
            return
        live: list[DocLease] = []
        if record.state == "gathering":
            live = await self._submit_new(job)
        # the long pages' live calls run while the batch is polled
        await asyncio.gather(self._poll(job), *(self._settle_live(record, x) for x in live))
        if record.docs:  # a dead creator's live docs: never to be settled by it
            await self._give_back(record, list(record.docs))
        await self._drop(record)

    async def _submit_new(self, job: Job) -> list[DocLease]:
        """Settle what needs no call, send the batch; the docs to summarize live."""
        record = job.record
        started = time.monotonic()
        requests, live, ops = await self._prepare(job.leases, started)
        await self._settle(record, ops)
        if requests:
            await self._send_round(record, requests)
        return live

    async def _prepare(
        self, leases: list[DocLease], started: float
    ) -> tuple[dict[str, dict[str, Any]], list[DocLease], list[DocOp]]:
        """Each doc's batch request, or the docs to send live, or the ops of docs settled now
        (from the content cache, or undecodable)."""
        requests: dict[str, dict[str, Any]] = {}
        live: list[DocLease] = []
        ops: list[DocOp] = []
        pending: list[tuple[DocLease, Doc, Request, dict[str, Any]]] = []
        keys: list[str] = []
        for lease in leases:
            try:
                doc = decode_doc(lease.payload)
            except PermanentError as exc:
                ops.append(self._fail(lease, exc.reason, str(exc), started))
                continue
            request = self._request(doc)
            body, cut = self._engine.batch_body(request)
            if cut and self._llm.long_pages == "map-reduce":
                live.append(lease)
                continue
            pending.append((lease, doc, request, body))
            keys.append(self._content_key(request))
        hits = await self._cache.get_many(keys)
        for (lease, doc, request, body), hit in zip(pending, hits, strict=True):
            if hit is not None:
                summary = Summary(hit, request.profile.model)
                op = self._live.success_op(
                    lease, doc, request.profile, summary, cached=True, started=started
                )
                ops.append(dataclasses.replace(op, attempt=lease.attempt))
            else:
                requests[lease.fp] = body
        return requests, live, ops

    def _request(self, doc: Doc) -> Request:
        return Request(doc.url, doc.title, doc.text, self._profiles.for_host(host_of(doc.url)))

    def _content_key(self, request: Request) -> str:
        return content_key(self._engine.cache_identity(request), request.text)

    async def _send_round(self, record: BatchRecord, requests: dict[str, dict[str, Any]]) -> None:
        lines = request_lines(requests)
        failures = 0
        while True:
            try:
                provider_id = await self._api.submit(lines, record.job)
                break
            except RetryableError as exc:
                failures += 1
                log.warning("batch_submit_failed", job=record.job, error=str(exc)[:300])
                await self._renew_docs(record)
                await asyncio.sleep(min(self._llm.batch_poll_s, 0.5 * 2**failures))
            except ConfigError as exc:
                await self._stop(record, exc)
                return
        record.state, record.provider_id, record.sent = "submitted", provider_id, list(requests)
        if not await self._put(record):
            raise _Lost(record.job)  # adopted while we uploaded
        self.batches_submitted += 1
        log.info(
            "batch_submitted",
            job=record.job,
            batch=provider_id,
            requests=len(requests),
            round=record.round,
        )

    async def _stop(self, record: BatchRecord, exc: ConfigError) -> None:
        """The API refuses our configuration: the job's docs go back, the worker stops."""
        if self._live.fatal is None:
            self._live.fatal = exc
            log.error("summarizer_misconfigured", error=str(exc))
        await self._give_back(record, list(record.docs))
        record.docs, record.sent, record.state = {}, [], "gathering"
        self.shutdown.request()

    async def _poll(self, job: Job) -> None:
        """Poll the job's batch until it ends, settle, send the next round; until none is
        left."""
        record = job.record
        while record.state == "submitted" and record.sent:
            await asyncio.sleep(self._llm.batch_poll_s)
            await self._renew_docs(record)
            try:
                status = await self._api.status(record.provider_id)
                if status.running:
                    continue
                output = await self._api.content(status.output_file_id)
                errors = await self._api.content(status.error_file_id)
            except RetryableError as exc:
                log.warning("batch_poll_failed", job=record.job, error=str(exc)[:300])
                continue
            except ConfigError as exc:
                await self._stop(record, exc)
                return
            log.info(
                "batch_ended",
                job=record.job,
                batch=record.provider_id,
                status=status.status,
                errors=status.errors or None,
            )
            await self._finish_round(record, parse_results(output, errors))

    async def _finish_round(self, record: BatchRecord, results: dict[str, BatchResult]) -> None:
        started = time.monotonic()
        leases = {lease.fp: lease for lease in await self._queue.held(record.holder, record.sent)}
        ops: list[DocOp] = []
        again: dict[str, dict[str, Any]] = {}
        live: list[tuple[DocLease, Summary | None]] = []
        answers: dict[str, str] = {}
        for fp in record.sent:
            lease = leases.get(fp)
            if lease is None:  # settled or reaped meanwhile
                record.docs.pop(fp, None)
                continue
            result = results.get(fp)
            step = disposition(result, record.round, self._llm.batch_rounds)
            if step is Next.OK and result is not None:
                op, spent = self._answered(lease, result, started, answers)
                if op is not None:
                    ops.append(op)
                else:
                    live.append((lease, spent))
            elif step is Next.BATCH:
                request = self._request(decode_doc(lease.payload))
                again[fp] = self._engine.batch_body(request)[0]
            elif step is Next.LIVE:
                live.append((lease, None))
            else:
                reason = result.reason if result is not None else "batch_missing"
                message = result.message if result is not None else ""
                ops.append(self._fail(lease, reason, message, started))
        await self._cache.put_many(answers)
        await self._settle(record, ops)
        await asyncio.gather(*(self._settle_live(record, lease, spent) for lease, spent in live))
        record.sent = []
        if again:
            record.round += 1
            log.info("batch_retry_round", job=record.job, requests=len(again), round=record.round)
            await self._send_round(record, again)

    def _answered(
        self, lease: DocLease, result: BatchResult, started: float, answers: dict[str, str]
    ) -> tuple[DocOp | None, Summary | None]:
        """The op of a doc answered in the batch, or (None, what the answer spent) when the
        answer is broken or against the schema (the doc then goes live)."""
        doc = decode_doc(lease.payload)
        request = self._request(doc)
        _, cut = self._engine.batch_body(request)
        try:
            summary = self._engine.batch_answer(request, result.body, cut)
        except (RetryableError, InvalidAnswer) as exc:
            log.info("batch_answer_unusable", fp=lease.fp, error=str(exc)[:300])
            return None, _spent_of(result.body, request)
        answers[self._content_key(request)] = summary.text
        op = self._live.success_op(
            lease,
            doc,
            request.profile,
            summary,
            cached=False,
            started=started,
            price=self._llm.batch_price,
        )
        return dataclasses.replace(op, attempt=lease.attempt), None

    def _fail(self, lease: DocLease, reason: str, message: str, started: float) -> DocOp:
        op = self._live.failed_op(lease, reason, message, started)
        return dataclasses.replace(op, attempt=lease.attempt)

    async def _settle_live(
        self, record: BatchRecord, lease: DocLease, spent: Summary | None = None
    ) -> None:
        op = await self._live.live_op(lease, record.holder)
        if op is None:  # a ConfigError: the doc was released, the worker stops
            record.docs.pop(lease.fp, None)
            return
        if spent is not None:  # the batch answer we could not use was paid for all the same
            cost = self._live.spent_micro_usd(spent, self._llm.batch_price)
            op = dataclasses.replace(
                op,
                prompt_tokens=op.prompt_tokens + spent.prompt_tokens,
                completion_tokens=op.completion_tokens + spent.completion_tokens,
                cost_micro_usd=op.cost_micro_usd + cost,
            )
        await self._settle(record, [op])

    async def _settle(self, record: BatchRecord, ops: list[DocOp]) -> None:
        # Through the live worker's settle: with a sink outside Redis the records go there
        # first; a doc whose record could not be written is released and the worker stops.
        for start in range(0, len(ops), 256):
            part = ops[start : start + 256]
            results = await self.until_stored(
                functools.partial(self._live.settle_ops, record.holder, part)
            )
            for op, result in zip(part, results or [], strict=False):
                record.docs.pop(op.fp, None)
                if isinstance(result, OutputError):
                    if not self.shutdown.stop.is_set():
                        log.warning("stop_claiming", worker=self.worker_id, reason="sink_failed")
                        self.shutdown.request()
                elif result is DocResult.STALE:
                    self.stats.stale += 1
                else:
                    self._live.count_doc(op.kind)

    async def _give_back(self, record: BatchRecord, fps: list[str]) -> None:
        ops = [DocOp(DocKind.RELEASE, fp) for fp in fps]
        for start in range(0, len(ops), 256):
            part = ops[start : start + 256]
            await self.until_stored(functools.partial(self._queue.settle, record.holder, part))
        for fp in fps:
            record.docs.pop(fp, None)
        if fps:
            log.info("batch_docs_released", job=record.job, docs=len(fps))


class _Lost(Exception):
    """Another worker adopted the job (this one looked dead to it)."""


def _spent_of(body: bytes, request: Request) -> Summary:
    """The tokens of a batch answer we could not use (0 when not even that is readable)."""

    class _Usage(msgspec.Struct):
        prompt_tokens: int = 0
        completion_tokens: int = 0

    class _Body(msgspec.Struct):
        usage: _Usage | None = None
        model: str | None = None

    try:
        parsed = msgspec.json.decode(body, type=_Body)
    except msgspec.DecodeError:
        return Summary("", request.profile.model)
    usage = parsed.usage or _Usage()
    return Summary(
        "", parsed.model or request.profile.model, usage.prompt_tokens, usage.completion_tokens
    )
