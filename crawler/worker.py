"""The crawl worker: claim -> robots -> fetch -> parse -> commit (links + settle).

The claim/slot/shutdown loop is common.leasedworker.LeasedWorker; this module is what a crawl
does with one URL. Every page ends in exactly one commit, retried while Redis is unreachable.
If the worker dies meanwhile, its leases expire and are reaped (at-least-once delivery; the
pages sink is idempotent by fingerprint). Output that cannot be written (a WARC file, a record
in a folder or S3 sink) stops the worker: it releases the page and every later one, and stops
claiming, rather than settle a page whose output is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from common.backoff import crawl_backoff_s
from common.errors import (
    OutputError,
    PermanentError,
    RetryableError,
    StoreUnavailable,
    status_class,
)
from common.heartbeat import Heartbeats
from common.leasedworker import LeasedWorker, WorkerTiming
from common.lifecycle import Shutdown
from common.logging import get_logger
from common.metrics import CrawlerMetrics
from common.serde import Doc, encode_doc
from common.sinks import RecordWriter
from common.urls import fingerprint, netloc_of
from crawler.admission import AdmitReport, Admitter
from crawler.classify import ProxyFailed, SkipPage
from crawler.committer import Committer
from crawler.extractor import Extractor, ExtractorError
from crawler.feeds import FEED, parse_feed
from crawler.fetch import Fetcher, FetchResult
from crawler.frontier import Frontier, Lease, Outcome, SettleOp, SettleResult
from crawler.parse import ParsedPage, parse_html
from crawler.proxypool import ProxyPool
from crawler.records import PageRecord, encode_record
from crawler.revisit import Change, RevisitPolicy
from crawler.robots import RobotsCache

__all__ = ["CrawlWorker", "WorkerStats"]

log = get_logger(__name__)


@dataclass(slots=True)
class WorkerStats:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    stale: int = 0


@dataclass(slots=True)
class _Commit:
    """What one page leaves behind: links to admit, hops to mark seen, and its settle op."""

    op: SettleOp
    links: list[str] | None = None
    kinds: dict[str, str] | None = None  # of the links that are not pages (feeds)
    base: str = ""
    depth: int = 0
    seen_urls: list[str] | None = None


class CrawlWorker(LeasedWorker[Lease]):
    role = "crawl"

    def __init__(
        self,
        *,
        concurrency: int,
        timing: WorkerTiming,
        frontier: Frontier,
        heartbeats: Heartbeats,
        admitter: Admitter,
        fetcher: Fetcher,
        robots: RobotsCache | None,
        metrics: CrawlerMetrics,
        shutdown: Shutdown,
        doc_max_chars: int,
        proxies: ProxyPool | None = None,
        extractor: Extractor | None = None,
        worker_id: str | None = None,
        sink: RecordWriter | None = None,
        revisits: RevisitPolicy | None = None,
        follow_feeds: bool = False,
    ) -> None:
        super().__init__(
            concurrency=concurrency, timing=timing, shutdown=shutdown, worker_id=worker_id
        )
        self._frontier = frontier
        self._heartbeats = heartbeats
        self._admitter = admitter
        self._fetcher = fetcher
        self._robots = robots
        self._metrics = metrics
        self._doc_max_chars = doc_max_chars  # 0: the crawl is not summarized, no docs
        self._proxies = proxies
        self._extractor = extractor
        self._revisits = revisits  # None: the crawl keeps no revisit state
        self._follow_feeds = follow_feeds
        self.stats = WorkerStats()
        self._committer = Committer(frontier, admitter, self.worker_id, self._admitted, sink=sink)

    # -- LeasedWorker ---------------------------------------------------------------------

    async def claim(self, n: int) -> tuple[Sequence[Lease], float | None]:
        if self._proxies is not None:
            wait = await self._proxy_gate()
            if wait is not None:
                return [], wait
        claim = await self._frontier.claim(self.worker_id, n, self.timing.lease_s)
        if claim.paused:
            self.pause("docs_backlog")
            return claim.leases, 1.0
        if self.paused == "docs_backlog":
            self.pause(None)
        return claim.leases, claim.wait_s

    async def _proxy_gate(self) -> float | None:
        """None when a proxy is usable; else pause (the pool is down) or stop (every proxy
        refused this worker's credentials), and the seconds to wait."""
        if self._proxies is None:
            return None
        wait = await self._proxies.gate()
        if self._proxies.fatal is not None:
            if not self.shutdown.stop.is_set():
                log.warning("stop_claiming", worker=self.worker_id, reason="proxies_refused")
                self.shutdown.request()
            return 1.0
        if wait is not None:
            self.pause("proxies_down")
            return wait
        if self.paused == "proxies_down":
            self.pause(None)
        return None

    def key(self, item: Lease) -> str:
        return item.fp

    async def release(self, keys: Sequence[str]) -> None:
        await self._frontier.release(self.worker_id, keys)

    async def renew(self, keys: Sequence[str]) -> None:
        await self._frontier.renew(self.worker_id, keys, self.timing.lease_s)

    async def reap(self) -> int:
        requeued, dead = await self._frontier.reap()
        if requeued or dead:
            self._metrics.reaped.inc(requeued + dead)
            if dead:  # out of attempts: failed with reason lease_expired
                self._metrics.dead_letters.inc(dead)
                self._metrics.pages.labels(Outcome.FAILED.value).inc(dead)
            log.info("leases_reaped", requeued=requeued, dead=dead)
        return requeued + dead

    async def finished(self) -> bool:
        return await self._frontier.pending() == 0

    async def beat(self, worker_id: str, beat: str) -> None:
        await self._heartbeats.beat(worker_id, beat)

    async def forget(self, worker_id: str) -> None:
        await self._heartbeats.forget(worker_id)

    def extra_tasks(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._committer.run(stop)]

    def beat_fields(self) -> dict[str, Any]:
        return {name: getattr(self.stats, name) for name in self.stats.__slots__}

    def on_in_flight(self, n: int) -> None:
        self._metrics.in_flight.set(n)

    def on_paused(self, reason: str | None, previous: str | None) -> None:
        self._metrics.paused.show(reason, previous)

    # -- one page -------------------------------------------------------------------------

    async def handle(self, item: Lease) -> None:
        try:
            commit = await self._process(item)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable:  # (robots.txt state) the URL goes back untouched, not leaked
            commit = _Commit(SettleOp.release(item.fp))
        except OutputError:  # its WARC record is lost: the URL goes back, the worker stops
            self._stop_on_output("warc_failed")
            commit = _Commit(SettleOp.release(item.fp))
        except Exception as exc:  # a bug on one page must not kill the worker
            log.exception("page_crashed", url=item.url, error=repr(exc))
            commit = _Commit(
                self._retry_op(item, RetryableError(repr(exc), reason="internal_error"))
            )
        await self._commit(item, commit)

    async def _process(self, lease: Lease) -> _Commit:
        started = time.time()
        result = await self._fetch(lease)
        if isinstance(result, _Commit):
            return result
        self._metrics.fetches.labels(status_class(result.status)).inc()
        self._metrics.fetch_bytes.inc(len(result.body))
        if result.not_modified:
            return self._unchanged(lease, result)
        if lease.entry.k == FEED:
            return await self._feed(lease, result, started)
        # The text only feeds the doc: keep no more of it than a doc carries (1 character
        # when the crawl is not summarized; text_chars still counts all of it).
        page = parse_html(
            result.markup(),
            self._doc_max_chars or 1,
            hash_text=self._revisits is not None,
            find_feeds=self._follow_feeds,
        )
        self._metrics.pages_parsed.inc()
        change = RevisitPolicy.judge(lease.entry, page.text_hash)
        if change is Change.UNCHANGED:
            return self._unchanged(lease, result, page.text_hash)
        self._metrics.changes.labels(change.value).inc()
        if self._extractor is None:
            return self._done(lease, result, page, change, started)
        try:
            data = await self._extractor.extract(lease.url, result.final_url, result.text())
        except ExtractorError as exc:  # the page fails; its links are still followed
            log.warning("extractor_error", url=lease.url, error=str(exc))
            return self._done(lease, result, page, change, started, error=str(exc))
        return self._done(lease, result, page, change, started, data=data)

    async def _fetch(self, lease: Lease) -> FetchResult | _Commit:
        """The page's response (conditional on a revisit), or how the URL ends without one."""
        try:
            scheme = lease.url.split(":", 1)[0]
            if self._robots is not None and not await self._robots.allowed(
                lease.url, scheme, lease.domain
            ):
                self._metrics.robots_skips.inc()
                return _Commit(self._final(lease, Outcome.SKIPPED, "robots"))
            last = lease.entry.r if self._revisits is not None else None
            with self._metrics.fetch_seconds.time():
                return await self._fetcher.fetch(
                    lease.url,
                    accept_any_type=lease.entry.k == FEED,
                    etag=last.e if last is not None else None,
                    last_modified=last.m if last is not None else None,
                    previous=last.w if last is not None else None,
                )
        except ProxyFailed as exc:  # the proxy's failure, not the site's
            if exc.unsent:  # the site never saw it: back without spending an attempt
                self._metrics.retries.labels(exc.reason).inc()
                return _Commit(SettleOp.release(lease.fp))
            return _Commit(self._retry_op(lease, exc))
        except RetryableError as exc:
            self._metrics.fetches.labels(exc.status_class).inc()
            return _Commit(self._retry_op(lease, exc))
        except SkipPage as exc:
            return _Commit(self._final(lease, Outcome.SKIPPED, exc.reason))
        except PermanentError as exc:
            self._metrics.fetches.labels(exc.status_class).inc()
            if exc.reason == "tls_error":
                log.warning("tls_error", url=lease.url, error=str(exc))
            if self._revisits is not None and RevisitPolicy.gone(lease.entry, exc.status):
                return self._gone(lease, exc.status)
            return _Commit(self._final(lease, Outcome.FAILED, exc.reason))

    def _done(
        self,
        lease: Lease,
        result: FetchResult,
        page: ParsedPage,
        change: Change,
        started: float,
        *,
        data: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> _Commit:
        outcome = Outcome.DONE if error is None else Outcome.FAILED
        record = PageRecord(
            url=lease.url,
            final_url=result.final_url,
            outcome=outcome.value,
            status=result.status,
            depth=lease.depth,
            title=page.title,
            description=page.description,
            lang=page.lang,
            content_type=result.content_type,
            bytes=len(result.body),
            truncated=result.truncated,
            links=len(page.links),
            text_chars=page.text_chars,
            fetched_at=round(started, 3),
            elapsed_ms=round(result.elapsed_ms, 1),
            attempts=lease.attempt,
            reason="noindex" if page.noindex else None,
            warc_file=result.warc.file if result.warc else None,
            warc_offset=result.warc.offset if result.warc else None,
            data=data,
            error=error,
            change=change.value,
            pass_no=lease.pass_no,
        )
        if error is not None:
            record.reason = "extractor_error"
        doc = ""
        if self._doc_max_chars and not page.noindex and page.text and error is None:
            doc = encode_doc(
                Doc(
                    url=lease.url,
                    fp=lease.fp,
                    title=page.title,
                    text=page.text,
                    lang=page.lang,
                    fetched_at=round(started, 3),
                )
            )
        base = result.final_url
        if page.base_href:
            with contextlib.suppress(ValueError):
                base = urljoin(base, page.base_href)
        self._metrics.links_found.inc(len(page.links))
        revisit_ms, revisit = (
            (None, "") if error else self._keep(lease, change, page.text_hash, result)
        )
        reason = "extractor_error" if error is not None else change.reason
        return _Commit(
            SettleOp.ack(
                lease.fp,
                outcome,
                reason,
                record=encode_record(record),
                doc=doc,
                attempt=lease.attempt,
                revisit_ms=revisit_ms,
                revisit=revisit,
            ),
            links=None if page.nofollow else page.links + page.feeds,
            kinds=dict.fromkeys(page.feeds, FEED) if page.feeds and not page.nofollow else None,
            base=base,
            depth=lease.depth + 1,
            seen_urls=result.redirects or None,
        )

    async def _feed(self, lease: Lease, result: FetchResult, started: float) -> _Commit:
        """A feed (crawler/feeds.py): its items are admitted at depth 0; no doc. Kept for
        revisits like a page, it is unchanged while its items are."""
        feed = await asyncio.to_thread(parse_feed, result.body)
        change = RevisitPolicy.judge(lease.entry, feed.items_hash)
        if change is Change.UNCHANGED:
            return self._unchanged(lease, result, feed.items_hash)
        self._metrics.changes.labels(change.value).inc()
        if feed.error is not None:
            log.warning("feed_unreadable", url=lease.url, error=feed.error)
        record = PageRecord(
            url=lease.url,
            final_url=result.final_url,
            outcome=Outcome.DONE.value,
            status=result.status,
            depth=lease.depth,
            title=feed.title,
            content_type=result.content_type,
            bytes=len(result.body),
            links=len(feed.links),
            fetched_at=round(started, 3),
            elapsed_ms=round(result.elapsed_ms, 1),
            attempts=lease.attempt,
            change=change.value,
            pass_no=lease.pass_no,
            kind=FEED,
        )
        revisit_ms, revisit = self._keep(lease, change, feed.items_hash, result)
        op = SettleOp.ack(
            lease.fp,
            Outcome.DONE,
            change.reason,
            encode_record(record),
            attempt=lease.attempt,
            revisit_ms=revisit_ms,
            revisit=revisit,
        )
        return _Commit(op, links=feed.links, base=result.final_url, depth=0)

    def _keep(
        self, lease: Lease, change: Change, text_hash: str, result: FetchResult
    ) -> tuple[int | None, str]:
        """The revisit fields of a visit's ack: (interval, next payload), or (None, "") when
        the crawl keeps no revisit state."""
        if self._revisits is None:
            return None, ""
        return self._revisits.keep(
            lease.entry,
            change,
            text_hash=text_hash,
            etag=result.etag,
            last_modified=result.last_modified,
            capture=result.warc.capture if result.warc is not None else None,
        )

    def _unchanged(self, lease: Lease, result: FetchResult, text_hash: str = "") -> _Commit:
        """A revisit that found the page as it was (304, or the same text): the URL sleeps
        until its next visit; its record, its summary and its links stay as they are."""
        self._metrics.changes.labels(Change.UNCHANGED.value).inc()
        revisit_ms, revisit = self._keep(lease, Change.UNCHANGED, text_hash, result)
        op = SettleOp.ack(
            lease.fp,
            Outcome.DONE,
            Change.UNCHANGED,
            attempt=lease.attempt,
            revisit_ms=revisit_ms,
            revisit=revisit,
        )
        return _Commit(op, seen_urls=result.redirects or None)

    def _gone(self, lease: Lease, status: int | None) -> _Commit:
        """A revisit answered 404/410: the page is gone, the URL is never visited again."""
        self._metrics.changes.labels(Change.GONE.value).inc()
        record = PageRecord(
            url=lease.url,
            outcome=Outcome.FAILED.value,
            reason=Change.GONE.value,
            status=status,
            depth=lease.depth,
            attempts=lease.attempt,
            change=Change.GONE.value,
            pass_no=lease.pass_no,
        )
        op = SettleOp.ack(
            lease.fp,
            Outcome.FAILED,
            Change.GONE,
            encode_record(record),
            attempt=lease.attempt,
            revisit_ms=RevisitPolicy.FORGET,
        )
        return _Commit(op)

    def _final(self, lease: Lease, outcome: Outcome, reason: str) -> SettleOp:
        record = PageRecord(
            url=lease.url,
            outcome=outcome.value,
            reason=reason,
            depth=lease.depth,
            attempts=lease.attempt,
            pass_no=lease.pass_no,
        )
        return SettleOp.ack(lease.fp, outcome, reason, encode_record(record), attempt=lease.attempt)

    def _retry_op(self, lease: Lease, exc: RetryableError) -> SettleOp:
        reason, retry_after_s = exc.reason, exc.retry_after_s
        delay = crawl_backoff_s(lease.attempt)
        domain_wait = retry_after_s or (delay if exc.domain_backoff else 0.0)
        self._metrics.retries.labels(reason).inc()
        record = PageRecord(
            url=lease.url,
            outcome=Outcome.FAILED.value,
            reason=reason,
            depth=lease.depth,
            attempts=lease.attempt,
            pass_no=lease.pass_no,
        )
        return SettleOp.retry(
            lease.fp,
            reason,
            delay_s=max(delay, retry_after_s or 0.0),
            retry_after_s=domain_wait,
            record=encode_record(record),
            attempt=lease.attempt,
        )

    async def _commit(self, lease: Lease, commit: _Commit) -> None:
        """Hand the page's links and settle op to the committer; retried while Redis is down."""
        prepared = None
        if commit.links:
            prepared = self._admitter.prepare(
                commit.links,
                depth=commit.depth,
                base=commit.base,
                parent=lease.url,
                kinds=commit.kinds,
            )
        seen = [(netloc_of(u), fingerprint(u)) for u in commit.seen_urls or ()]
        try:
            result = await self.until_stored(
                lambda: self._committer.commit(commit.op, prepared, seen)
            )
        except OutputError:  # its record did not reach the sink: the committer released it
            self._stop_on_output("sink_failed")
            return
        if result is not None:
            self._count(commit.op, result)

    def _stop_on_output(self, reason: str) -> None:
        if not self.shutdown.stop.is_set():
            log.warning("stop_claiming", worker=self.worker_id, reason=reason)
            self.shutdown.request()

    def _admitted(self, report: AdmitReport) -> None:
        self._metrics.links_admitted.inc(len(report.admitted))
        if report.admitted:
            self.wake()

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
