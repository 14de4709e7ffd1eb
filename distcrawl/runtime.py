"""Wiring a process together: one Redis client, one HTTP session, one worker, one exit stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from common.docsqueue import DocsQueue, DocsStats
from common.errors import ConfigError
from common.heartbeat import Heartbeats
from common.keys import CrawlKeys
from common.leasedworker import LeasedWorker, WorkerTiming
from common.lifecycle import Shutdown
from common.logging import get_logger
from common.metrics import CrawlerMetrics, SnapshotCollector, SummarizerMetrics, serve_metrics
from common.scripts import CrawlScripts, ScriptRunner
from common.serde import doc_text_budget
from common.settings import Settings
from common.sinks import RecordWriter, Stream, open_writer
from common.spec import CrawlSpec
from common.store import open_store, redis_memory, translate_errors
from crawler.admission import Admitter
from crawler.extractor import Extractor
from crawler.fetch import Fetcher
from crawler.frontier import Frontier, FrontierStats
from crawler.proxies import check_proxy_addresses, configured_proxies, crawl_pool
from crawler.proxypool import ProxyHealth, ProxyPool, Route
from crawler.revisit import RevisitPolicy
from crawler.robots import RobotsCache
from crawler.warc import WarcArchive
from crawler.worker import CrawlWorker
from summarizer.cache import SummaryCache
from summarizer.engines import CallableEngine, Engine, ExtractiveEngine
from summarizer.limiter import AdaptiveLimit, SharedRateLimiter
from summarizer.profiles import Profiles

if TYPE_CHECKING:
    from summarizer.batch import BatchWorker
    from summarizer.worker import SummarizeWorker

__all__ = [
    "CrawlRuntime",
    "SummarizeRuntime",
    "build_engine",
    "crawl_runtime",
    "docs_gauges",
    "frontier_gauges",
    "store_session",
    "summarize_runtime",
]

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def store_session(
    settings: Settings, *, existing: bool = False
) -> AsyncIterator[tuple[Redis, Frontier]]:
    """The store and the crawl's frontier. ``existing``: the crawl must have been created (a
    reader such as status, top or export): a name that is not a crawl is a ConfigError naming
    the crawls there are, not an empty answer."""
    redis = await open_store(settings.redis)
    try:
        keys = CrawlKeys(settings.crawl)
        if existing:
            await _require_crawl(redis, keys)
        yield redis, Frontier(redis, keys)
    finally:
        await redis.aclose()


async def _require_crawl(redis: Redis, keys: CrawlKeys) -> None:
    async with translate_errors():
        if await redis.exists(keys.spec):
            return
        names = sorted(
            {
                key[len("distcrawl:{") : -len("}:spec")]
                async for key in redis.scan_iter(match="distcrawl:{*}:spec", count=1000)
                if ":" not in key[len("distcrawl:{") : -len("}:spec")]  # not a shard's copy
            }
        )
    there = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise ConfigError(
        f"no crawl named {keys.crawl!r} in this store"
        + (f"; crawls here: {there}" if names else "; it holds no crawl")
    )


def frontier_gauges(stats: FrontierStats) -> dict[str, float]:
    return {
        "frontier_queued": stats.queued,
        "frontier_delayed": stats.delayed,
        "frontier_in_flight": stats.in_flight,
        "frontier_ready_domains": stats.ready_domains,
        "frontier_domains": stats.domains,
        "crawl_admitted": stats.admitted,
        "crawl_done": stats.done,
        "crawl_failed": stats.failed,
        "crawl_skipped": stats.skipped,
        "crawl_dead_letters": stats.dead_letters,
    }


S = TypeVar("S")


async def _serve_with_gauges(
    stack: contextlib.AsyncExitStack,
    registry: CollectorRegistry,
    port: int,
    redis: Redis,
    read: Callable[[], Awaitable[S]],
    gauges: Callable[[S], dict[str, float]],
    worker: LeasedWorker[Any],
) -> None:
    """Serve /metrics on ``port`` until ``stack`` closes, with crawl-wide gauges from ``read()``
    and Redis' memory refreshed from Redis at every scrape; /healthz answers 200 while Redis
    answers PING and the worker's heartbeats are fresh."""
    latest: list[dict[str, float]] = []

    async def refresh() -> None:
        snapshot = gauges(await read())
        snapshot.update(await redis_memory(redis))
        latest[:] = [snapshot]

    async def health() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(redis.ping(), 2)
        except Exception:
            return False, "unhealthy: Redis does not answer"
        paused = f" (paused: {worker.paused})" if worker.paused else ""
        if worker.healthy():
            return True, "ok" + paused
        return False, "unhealthy: heartbeats do not reach Redis" + paused

    registry.register(SnapshotCollector(lambda: latest[0] if latest else {}))
    runner = await serve_metrics(registry, port, refresh, health)
    stack.push_async_callback(runner.cleanup)


@dataclass
class CrawlRuntime:
    worker: CrawlWorker
    frontier: Frontier
    spec: CrawlSpec
    metrics: CrawlerMetrics
    archive: WarcArchive | None = None
    proxies: ProxyPool | None = None
    sink: RecordWriter | None = None

    def check_output(self) -> None:
        """Raise the OutputError (or the proxies' ConfigError) that stopped the worker, if one
        did."""
        if self.archive is not None and self.archive.failure is not None:
            raise self.archive.failure
        if self.sink is not None and self.sink.failure is not None:
            raise self.sink.failure
        if self.proxies is not None and self.proxies.fatal is not None:
            raise self.proxies.fatal


async def open_proxy_pool(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    spec: CrawlSpec,
    redis: Redis,
    keys: CrawlKeys,
    metrics: CrawlerMetrics,
) -> ProxyPool | None:
    """The crawl's proxy pool with this worker's credentials, one session per proxy (closed
    with ``stack``); None when the crawl has no pool."""
    pool = crawl_pool(spec.proxies, configured_proxies(settings.proxy))
    if not pool:
        return None
    await check_proxy_addresses(pool, allow_private=settings.proxy.allow_private)
    routes = []
    for proxy in pool:
        session = await stack.enter_async_context(
            Fetcher.open_session(
                settings.fetch,
                allow_private=settings.allow_private,
                proxy=proxy,
                allow_private_proxy=settings.proxy.allow_private,
            )
        )
        routes.append(Route(proxy, session, None if proxy.scheme == "socks5" else proxy.url))
    health = ProxyHealth(CrawlScripts(ScriptRunner(redis), keys))
    log.info("proxy_pool", proxies=[p.redacted for p in pool])
    return ProxyPool(routes, health, rotate_on=frozenset(settings.proxy.rotate_on), metrics=metrics)


async def open_sink(
    stack: contextlib.AsyncExitStack, settings: Settings, spec: CrawlSpec, stream: Stream
) -> RecordWriter | None:
    """This worker's writer of the crawl's sink (None: Redis, written by the settle scripts),
    checked before any work is claimed and closed (last segment published) with ``stack``."""
    sink = open_writer(spec.sink, stream, settings.sink)
    if sink is None:
        return None
    await sink.start()
    stack.push_async_callback(sink.aclose)
    return sink


async def open_archive(stack: contextlib.AsyncExitStack, settings: Settings) -> WarcArchive | None:
    """The worker's WARC writer (--warc DIR), closed (flushed, fsynced) with ``stack``."""
    if settings.warc.dir is None:
        return None
    from distcrawl import __version__

    archive = WarcArchive(
        settings.warc,
        {
            "software": f"distcrawl/{__version__}",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
            "warc-format/warc-1.1/",
            "isPartOf": settings.crawl,
            "http-header-user-agent": settings.fetch.user_agent,
            "description": "payloads as sent (content coding intact); Transfer-Encoding "
            "stored as X-Crawler-Transfer-Encoding, the payload being the entity body",
        },
    )
    await archive.start()
    stack.push_async_callback(archive.aclose)
    return archive


@contextlib.asynccontextmanager
async def crawl_runtime(
    settings: Settings, redis: Redis, frontier: Frontier, shutdown: Shutdown
) -> AsyncIterator[CrawlRuntime]:
    """A ready crawl worker for an initialised crawl (its spec must be in Redis)."""
    spec = await frontier.spec()
    if spec is None:
        raise ConfigError(
            f"crawl {settings.crawl!r} has no spec in Redis: run `distcrawl produce` first"
        )
    metrics = CrawlerMetrics()
    async with contextlib.AsyncExitStack() as stack:
        sink = await open_sink(stack, settings, spec, "pages")
        archive = await open_archive(stack, settings)
        session = await stack.enter_async_context(
            Fetcher.open_session(settings.fetch, allow_private=settings.allow_private)
        )
        proxies = await open_proxy_pool(stack, settings, spec, redis, frontier.keys, metrics)
        fetcher = Fetcher(
            settings.fetch,
            session,
            allow_private=settings.allow_private,
            archive=archive,
            proxies=proxies,
        )
        robots = None
        if spec.obey_robots:
            robots = RobotsCache(
                redis,
                frontier.keys,
                frontier,
                fetcher,
                settings.fetch.user_agent,
                settings.fetch.robots_ttl_s,
            )
        c, w = settings.crawler, settings.worker
        timing = WorkerTiming(
            grace_s=w.grace_s,
            reap_interval_s=w.reap_interval_s,
            heartbeat_s=w.heartbeat_s,
            lease_s=spec.lease_s,
            claim_batch=c.claim_batch,
        )
        worker = CrawlWorker(
            concurrency=c.concurrency,
            timing=timing,
            frontier=frontier,
            heartbeats=Heartbeats(redis, frontier.keys),
            admitter=Admitter(frontier, spec),
            fetcher=fetcher,
            robots=robots,
            metrics=metrics,
            shutdown=shutdown,
            doc_max_chars=spec.doc_max_chars if spec.summarize else 0,
            proxies=proxies,
            extractor=Extractor(c.extractor) if c.extractor else None,
            sink=sink,
            revisits=RevisitPolicy(spec) if spec.revisit else None,
            follow_feeds=spec.follow_feeds,
        )
        if settings.metrics_port is not None:
            await _serve_with_gauges(
                stack,
                metrics.registry,
                settings.metrics_port,
                redis,
                frontier.stats,
                frontier_gauges,
                worker,
            )
        yield CrawlRuntime(worker, frontier, spec, metrics, archive, proxies, sink)


@dataclass
class SummarizeRuntime:
    worker: SummarizeWorker | BatchWorker
    engine: Engine
    metrics: SummarizerMetrics
    sink: RecordWriter | None = None

    def check_output(self) -> None:
        """Raise the error that stopped the worker (a misconfiguration, a sink that failed)."""
        if self.worker.fatal is not None:
            raise self.worker.fatal
        if self.sink is not None and self.sink.failure is not None:
            raise self.sink.failure


def build_engine(
    settings: Settings,
    rate: SharedRateLimiter,
    adaptive: AdaptiveLimit,
    metrics: SummarizerMetrics,
) -> Engine:
    """auto: the OpenAI-compatible API when a key or base URL is configured, else extractive."""
    # The openai package takes most of a second to import: only the API engine loads it, so
    # `status`, `crawl` and extractive runs start fast.
    from summarizer.client import OpenAIEngine, open_client, resolve_api_key

    llm = settings.llm
    key = resolve_api_key(llm)
    kind = llm.summarizer
    if kind == "auto":
        kind = "openai" if (key or llm.base_url) else "extractive"
    if kind == "extractive":
        return ExtractiveEngine()
    if kind != "openai":
        return CallableEngine(kind)

    def observe(outcome: str, latency: float) -> None:
        metrics.requests.labels(outcome).inc()
        metrics.latency.observe(latency)

    return OpenAIEngine(open_client(llm, key), llm, rate, adaptive, observe)


@contextlib.asynccontextmanager
async def summarize_runtime(
    settings: Settings, redis: Redis, keys: CrawlKeys, shutdown: Shutdown
) -> AsyncIterator[SummarizeRuntime]:
    llm = settings.llm
    spec = await Frontier(redis, keys).spec()
    if spec is not None and spec.doc_max_chars < doc_text_budget(llm.doc_tokens):
        log.warning(
            "docs_shorter_than_budget",
            doc_max_chars=spec.doc_max_chars,
            doc_tokens=llm.doc_tokens,
            hint="the crawl's producer set a smaller --llm-max-input-tokens or "
            "--llm-max-doc-tokens, or --llm-long-pages cut",
        )
    metrics = SummarizerMetrics()
    scripts = ScriptRunner(redis)
    queue = DocsQueue(redis, keys, scripts)
    rate = SharedRateLimiter(
        scripts,
        keys,
        llm.rpm,
        llm.tpm,
        on_wait=metrics.rate_limit_waits.inc,
        window_s=llm.limit_window_s,
    )
    adaptive = AdaptiveLimit(llm.concurrency)
    profiles = Profiles.from_settings(llm)  # (a bad schema or profile stops us here)
    engine = build_engine(settings, rate, adaptive, metrics)
    if profiles.extracts and engine.name != "openai":
        await engine.aclose()
        raise ConfigError(
            f"a schema (--llm-schema or a profile's schema) needs an LLM API: the {engine.name} "
            "summarizer cannot fill one (set --llm-base-url or OPENAI_API_KEY)"
        )
    w = settings.worker
    timing = WorkerTiming(
        grace_s=w.grace_s,
        reap_interval_s=w.reap_interval_s,
        heartbeat_s=w.heartbeat_s,
        lease_s=llm.lease_s,
        claim_batch=min(64, llm.concurrency),
    )
    # one per process: its single flight covers the live and the batch worker
    cache = SummaryCache(redis, ttl_s=llm.cache_ttl_s, scripts=scripts)
    # (imported here: it brings the openai package, a second of CPU that crawl processes,
    # which import this module too, do not need)
    from summarizer.worker import SummarizeWorker

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.aclose)
        sink = await open_sink(stack, settings, spec, "summaries") if spec is not None else None
        worker = SummarizeWorker(
            concurrency=llm.concurrency,
            timing=timing,
            queue=queue,
            heartbeats=Heartbeats(redis, keys),
            engine=engine,
            profiles=profiles,
            cache=cache,
            prices=dict(llm.prices),
            metrics=metrics,
            shutdown=shutdown,
            adaptive=adaptive if engine.calls_api else None,
            sink=sink,
        )
        runner: SummarizeWorker | BatchWorker = worker
        if llm.mode == "batch":
            runner = _batch_worker(settings, redis, worker, engine, queue, keys, scripts, shutdown)
        if settings.metrics_port is not None:
            await _serve_with_gauges(
                stack,
                metrics.registry,
                settings.metrics_port,
                redis,
                queue.stats,
                docs_gauges,
                runner,
            )
        yield SummarizeRuntime(runner, engine, metrics, sink)


def _batch_worker(
    settings: Settings,
    redis: Redis,
    live: SummarizeWorker,
    engine: Engine,
    queue: DocsQueue,
    keys: CrawlKeys,
    scripts: ScriptRunner,
    shutdown: Shutdown,
) -> BatchWorker:
    """``--llm-mode batch``: the Batch API worker, with ``live`` for the docs sent live."""
    from summarizer.batch import BatchWorker
    from summarizer.batchapi import BatchApi
    from summarizer.client import OpenAIEngine

    llm, w = settings.llm, settings.worker
    if not isinstance(engine, OpenAIEngine):
        raise ConfigError(
            f"--llm-mode batch needs an LLM API with a Batch API: the {engine.name} summarizer "
            "has none (set --llm-base-url or OPENAI_API_KEY, or use --llm-mode live)"
        )
    timing = WorkerTiming(
        grace_s=w.grace_s,
        reap_interval_s=w.reap_interval_s,
        heartbeat_s=w.heartbeat_s,
        lease_s=llm.batch_lease_s,
        claim_batch=llm.batch_in_flight,
    )
    return BatchWorker(
        llm=llm,
        timing=timing,
        queue=queue,
        keys=keys,
        scripts=scripts,
        heartbeats=Heartbeats(redis, keys),
        engine=engine,
        live=live,
        cache=live.cache,
        api=BatchApi(engine.client, llm.batch_window),
        shutdown=shutdown,
    )


def docs_gauges(stats: DocsStats) -> dict[str, float]:
    return {
        "docs_waiting": stats.waiting,
        "docs_in_flight": stats.in_flight,
        "docs_queued": stats.queued,
        "docs_summarized": stats.summarized,
        "docs_failed": stats.failed,
    }
