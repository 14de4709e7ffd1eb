"""The crawl worker: claim -> fetch -> parse -> admit links -> settle, in C concurrent slots.

One dispatcher claims in batches for the free slots and sleeps until the frontier's next-ready
time when nothing is ready (no busy polling). Every page ends in exactly one settle call. When
Redis is unreachable the worker keeps its results and retries the commit with back-off; if it
dies meanwhile, its leases expire and are reaped (at-least-once; sinks are idempotent).

Shutdown: stop claiming, let in-flight pages finish within ``grace_s``, cancel the rest and
release their leases back to the head of their queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urljoin

from common.errors import PermanentError, RetryableError, StoreUnavailable
from common.lifecycle import Shutdown
from common.logging import get_logger
from common.metrics import CrawlerMetrics
from common.settings import CrawlerSettings
from common.urls import fingerprint
from crawler.admission import AdmitReport, Admitter
from crawler.classify import SkipPage, backoff_s, status_class
from crawler.committer import Committer
from crawler.fetch import Fetcher, FetchResult
from crawler.frontier import Frontier, Lease, Outcome, SettleOp, SettleResult
from crawler.parse import ParsedPage, parse_html
from crawler.records import Doc, PageRecord, encode_doc, encode_record
from crawler.robots import RobotsCache

__all__ = ["CrawlWorker", "WorkerStats", "new_worker_id"]

log = get_logger(__name__)
T = TypeVar("T")
_RATE_LIMITED = frozenset({"http_429", "http_503"})


def new_worker_id(role: str = "crawl") -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


@dataclass(slots=True)
class WorkerStats:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    released: int = 0
    stale: int = 0


@dataclass(slots=True)
class _Commit:
    """What one page leaves behind: links to admit, hops to mark seen, and its settle op."""

    op: SettleOp
    links: list[str] | None = None
    base: str = ""
    depth: int = 0
    seen_urls: list[str] | None = None


class CrawlWorker:
    def __init__(
        self,
        *,
        settings: CrawlerSettings,
        frontier: Frontier,
        admitter: Admitter,
        fetcher: Fetcher,
        robots: RobotsCache | None,
        metrics: CrawlerMetrics,
        shutdown: Shutdown,
        max_text_chars: int,
        lease_s: float,
        worker_id: str | None = None,
    ) -> None:
        self._s = settings
        self._frontier = frontier
        self._admitter = admitter
        self._fetcher = fetcher
        self._robots = robots
        self._metrics = metrics
        self._shutdown = shutdown
        self._max_text = max_text_chars
        self._lease_s = lease_s
        self.worker_id = worker_id or new_worker_id()
        self.stats = WorkerStats()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._committer = Committer(frontier, admitter, self.worker_id, self._admitted)
        self._started = time.time()

    # -- the main loop --------------------------------------------------------------------

    async def run(self, *, drain: bool = False) -> WorkerStats:
        """Crawl until shutdown (or, with ``drain``, until the crawl has nothing pending)."""
        log.info("worker_started", worker=self.worker_id, concurrency=self._s.concurrency)
        background = [
            asyncio.create_task(self._every(self._s.reap_interval_s, self._reap)),
            asyncio.create_task(self._every(self._s.heartbeat_s, self._heartbeat)),
            asyncio.create_task(self._every(max(1.0, self._lease_s / 3), self._renew)),
            asyncio.create_task(self._wake_on_stop()),
            asyncio.create_task(self._committer.run()),
        ]
        try:
            await self._dispatch(drain)
        finally:
            await self._finish_in_flight()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(StoreUnavailable):
                await asyncio.shield(self._frontier.forget_worker(self.worker_id))
            log.info("worker_stopped", worker=self.worker_id, **_asdict(self.stats))
        return self.stats

    async def _dispatch(self, drain: bool) -> None:
        failures = 0
        while not self._shutdown.stop.is_set():
            free = self._s.concurrency - len(self._tasks)
            if free <= 0:
                await self._sleep(1.0)
                continue
            try:
                claim = await self._frontier.claim(
                    self.worker_id, min(free, self._s.claim_batch), self._lease_s
                )
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                log.warning("store_unavailable", worker=self.worker_id, error=str(exc))
                await self._sleep(min(10.0, 0.5 * 2**failures))
                continue
            for lease in claim.leases:
                self._start(lease)
            if claim.leases:
                continue
            if drain and not self._tasks and await self._crawl_finished():
                log.info("crawl_drained", worker=self.worker_id)
                return
            await self._sleep(1.0 if claim.wait_s is None else min(claim.wait_s, 1.0))

    async def _crawl_finished(self) -> bool:
        try:
            return await self._frontier.pending() == 0
        except StoreUnavailable:
            return False

    def _start(self, lease: Lease) -> None:
        task = asyncio.create_task(self._handle(lease), name=f"page:{lease.fp}")
        self._tasks[lease.fp] = task
        self._metrics.in_flight.set(len(self._tasks))

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(lease.fp, None)
            self._metrics.in_flight.set(len(self._tasks))
            self._wakeup.set()

        task.add_done_callback(done)

    async def _sleep(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _wake_on_stop(self) -> None:
        await self._shutdown.stop.wait()
        self._wakeup.set()

    async def _finish_in_flight(self) -> None:
        if not self._tasks:
            return
        tasks = list(self._tasks.values())
        log.info("draining", worker=self.worker_id, in_flight=len(tasks), grace_s=self._s.grace_s)
        all_done = asyncio.ensure_future(self._settled(tasks))
        stop_now = asyncio.ensure_future(self._shutdown.now.wait())
        await asyncio.wait(
            [all_done, stop_now], timeout=self._s.grace_s, return_when=asyncio.FIRST_COMPLETED
        )
        stop_now.cancel()
        all_done.cancel()
        left = [fp for fp, t in self._tasks.items() if not t.done()]
        for fp in left:
            self._tasks[fp].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if left:
            try:
                await asyncio.shield(self._frontier.release(self.worker_id, left))
                self.stats.released += len(left)
                log.info("leases_released", worker=self.worker_id, count=len(left))
            except StoreUnavailable as exc:  # they expire and are reaped: nothing is lost
                log.warning("release_failed", worker=self.worker_id, error=str(exc))

    @staticmethod
    async def _settled(tasks: list[asyncio.Task[None]]) -> bool:
        await asyncio.wait(tasks)
        return True

    # -- one page -------------------------------------------------------------------------

    async def _handle(self, lease: Lease) -> None:
        try:
            commit = await self._process(lease)
        except (asyncio.CancelledError, StoreUnavailable):
            raise
        except Exception as exc:  # a bug on one page must not kill the worker
            log.exception("page_crashed", url=lease.url, error=repr(exc))
            commit = _Commit(self._retry_op(lease, "internal_error", None))
        await self._commit(lease, commit)

    async def _process(self, lease: Lease) -> _Commit:
        scheme = lease.url.split(":", 1)[0]
        started = time.time()
        try:
            if self._robots is not None and not await self._robots.allowed(
                lease.url, scheme, lease.domain
            ):
                self._metrics.robots_skips.inc()
                return _Commit(self._final(lease, Outcome.SKIPPED, "robots"))
            with self._metrics.fetch_seconds.time():
                result = await self._fetcher.fetch(lease.url)
        except RetryableError as exc:
            self._metrics.fetches.labels(_status_of(exc)).inc()
            return _Commit(self._retry_op(lease, exc.reason, exc.retry_after_s))
        except SkipPage as exc:
            return _Commit(self._final(lease, Outcome.SKIPPED, exc.reason))
        except PermanentError as exc:
            self._metrics.fetches.labels(_status_of(exc)).inc()
            return _Commit(self._final(lease, Outcome.FAILED, exc.reason))
        self._metrics.fetches.labels(status_class(result.status)).inc()
        self._metrics.fetch_bytes.inc(len(result.body))
        page = parse_html(result.text(), self._max_text)
        self._metrics.pages_parsed.inc()
        return self._done(lease, result, page, started)

    def _done(self, lease: Lease, result: FetchResult, page: ParsedPage, started: float) -> _Commit:
        record = PageRecord(
            url=lease.url, final_url=result.final_url, outcome=Outcome.DONE.value,
            status=result.status, depth=lease.depth, title=page.title,
            description=page.description, lang=page.lang, content_type=result.content_type,
            bytes=len(result.body), truncated=result.truncated, links=len(page.links),
            text_chars=len(page.text), fetched_at=round(started, 3),
            elapsed_ms=round(result.elapsed_ms, 1), attempts=lease.attempt,
            reason="noindex" if page.noindex else None,
        )
        doc = ""
        if not page.noindex and page.text:
            doc = encode_doc(Doc(url=lease.url, fp=lease.fp, title=page.title, text=page.text,
                                 lang=page.lang, fetched_at=round(started, 3)))
        base = result.final_url
        if page.base_href:
            with contextlib.suppress(ValueError):
                base = urljoin(base, page.base_href)
        self._metrics.links_found.inc(len(page.links))
        return _Commit(
            SettleOp.ack(lease.fp, Outcome.DONE, record=encode_record(record), doc=doc),
            links=None if page.nofollow else page.links,
            base=base,
            depth=lease.depth + 1,
            seen_urls=result.redirects or None,
        )

    def _final(self, lease: Lease, outcome: Outcome, reason: str) -> SettleOp:
        record = PageRecord(url=lease.url, outcome=outcome.value, reason=reason,
                            depth=lease.depth, attempts=lease.attempt)
        return SettleOp.ack(lease.fp, outcome, reason, encode_record(record))

    def _retry_op(self, lease: Lease, reason: str, retry_after_s: float | None) -> SettleOp:
        delay = backoff_s(lease.attempt)
        domain_wait = retry_after_s or (delay if reason in _RATE_LIMITED else 0.0)
        self._metrics.retries.labels(reason).inc()
        record = PageRecord(url=lease.url, outcome=Outcome.FAILED.value, reason=reason,
                            depth=lease.depth, attempts=lease.attempt)
        return SettleOp.retry(
            lease.fp, reason, delay_s=max(delay, retry_after_s or 0.0),
            retry_after_s=domain_wait, record=encode_record(record),
        )

    async def _commit(self, lease: Lease, commit: _Commit) -> None:
        """Hand the page's links and settle op to the committer; retried while Redis is down."""
        prepared = None
        if commit.links:
            prepared = self._admitter.prepare(
                commit.links, depth=commit.depth, base=commit.base, parent=lease.url
            )
        seen = [fingerprint(u) for u in commit.seen_urls or ()]
        result = await self._until_stored(
            lambda: self._committer.commit(commit.op, prepared, seen)
        )
        if result is not None:
            self._count(commit.op, result)

    def _admitted(self, report: AdmitReport) -> None:
        self._metrics.links_admitted.inc(len(report.admitted))
        if report.admitted:
            self._wakeup.set()

    async def _until_stored(self, call: Callable[[], Awaitable[T]]) -> T | None:
        failures = 0
        while True:
            try:
                return await call()
            except StoreUnavailable as exc:
                failures += 1
                if self._shutdown.now.is_set():
                    return None
                log.warning("store_unavailable", worker=self.worker_id, error=str(exc))
                await asyncio.sleep(min(10.0, 0.5 * 2**failures))

    def _count(self, op: SettleOp, result: SettleResult) -> None:
        if result is SettleResult.STALE:
            self.stats.stale += 1
            log.info("lease_lost", worker=self.worker_id, fp=op.fp)
            return
        if result is SettleResult.DEAD:
            self._metrics.dead_letters.inc()
            self._metrics.pages.labels(Outcome.FAILED.value).inc()
            self.stats.failed += 1
            log.warning("dead_lettered", fp=op.fp, reason=op.reason)
        elif result is SettleResult.REQUEUED:
            self.stats.retried += 1
        else:
            self._metrics.pages.labels(op.outcome).inc()
            setattr(self.stats, op.outcome, getattr(self.stats, op.outcome) + 1)

    # -- background duties ----------------------------------------------------------------

    async def _every(self, seconds: float, duty: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await duty()
            except StoreUnavailable as exc:
                log.warning("store_unavailable", worker=self.worker_id, error=str(exc))
            await asyncio.sleep(seconds)

    async def _reap(self) -> None:
        requeued, dead = await self._frontier.reap()
        if requeued or dead:
            self._metrics.reaped.inc(requeued + dead)
            log.info("leases_reaped", requeued=requeued, dead=dead)
            self._wakeup.set()

    async def _renew(self) -> None:
        fps = list(self._tasks)
        if fps:
            await self._frontier.renew(self.worker_id, fps, self._lease_s)

    async def _heartbeat(self) -> None:
        beat = {
            "role": "crawl", "host": socket.gethostname(), "pid": os.getpid(),
            "started": round(self._started, 3), "last": round(time.time(), 3),
            "in_flight": len(self._tasks), **_asdict(self.stats),
        }
        await self._frontier.heartbeat(self.worker_id, json.dumps(beat))


def _status_of(exc: Exception) -> str:
    reason = getattr(exc, "reason", "")
    if isinstance(reason, str) and reason.startswith("http_") and reason[5:].isdigit():
        return status_class(int(reason[5:]))
    return "error"


def _asdict(stats: WorkerStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in stats.__slots__}
