"""Every distcrawl_* metric, on a registry per process role, and the /metrics endpoint.

Label values are bounded sets (status classes, outcomes, short reasons, the configured proxy
names): no URLs, no domains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "CrawlerMetrics",
    "PauseGauge",
    "SnapshotCollector",
    "SummarizerMetrics",
    "serve_metrics",
]

_FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class CrawlerMetrics:
    """The crawler's own counters; gauges about the whole crawl come from SnapshotCollector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.fetches = Counter(
            "distcrawl_fetches", "HTTP fetches by status class", ["status_class"], registry=r
        )
        self.fetch_seconds = Histogram(
            "distcrawl_fetch_seconds",
            "Fetch latency (headers and body)",
            buckets=_FETCH_BUCKETS,
            registry=r,
        )
        self.fetch_bytes = Counter("distcrawl_fetch_bytes", "Body bytes read", registry=r)
        self.pages = Counter("distcrawl_pages", "URLs settled by outcome", ["outcome"], registry=r)
        self.pages_parsed = Counter("distcrawl_pages_parsed", "HTML pages parsed", registry=r)
        self.changes = Counter(
            "distcrawl_page_changes",
            "Visits by what they found: new, changed, unchanged (304 or same text), gone",
            ["change"],
            registry=r,
        )
        self.links_found = Counter("distcrawl_links_found", "Links found on pages", registry=r)
        self.links_admitted = Counter(
            "distcrawl_links_admitted", "Links admitted to the frontier", registry=r
        )
        self.retries = Counter(
            "distcrawl_retries", "Fetches scheduled for retry", ["reason"], registry=r
        )
        self.dead_letters = Counter(
            "distcrawl_dead_letters", "URLs dead-lettered after their last attempt", registry=r
        )
        self.robots_skips = Counter(
            "distcrawl_robots_skips",
            "URLs skipped because robots.txt disallows them",
            registry=r,
        )
        self.in_flight = Gauge(
            "distcrawl_worker_in_flight", "URLs this process is working on", registry=r
        )
        self.reaped = Counter(
            "distcrawl_leases_reaped", "Expired leases returned to the frontier", registry=r
        )
        self.paused = PauseGauge(r)
        # Per proxy of the pool: its name (``#name`` in its URL, else p<index>), never its URL.
        self.proxy_fetches = Counter(
            "distcrawl_proxy_fetches",
            "Fetches through each proxy: ok (the proxy carried it), failed, refused (407)",
            ["proxy", "outcome"],
            registry=r,
        )
        self.proxy_up = Gauge(
            "distcrawl_proxy_up",
            "1 while this process may route through the proxy (not backed off, not refused)",
            ["proxy"],
            registry=r,
        )
        # Known label values start at 0, so rate() and ratios have a series before the first event.
        _preset(self.fetches, ("2xx", "3xx", "4xx", "5xx", "error"))
        _preset(self.pages, ("done", "failed", "skipped"))
        _preset(
            self.retries, ("timeout", "connect_error", "connection_reset", "http_429", "http_503")
        )


_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class SummarizerMetrics:
    """The summarizer's counters (model labels come from configuration: a bounded set)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "distcrawl_llm_requests",
            "LLM API calls by outcome (ok or a reason)",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "distcrawl_llm_seconds", "LLM call latency", buckets=_LLM_BUCKETS, registry=r
        )
        self.tokens = Counter(
            "distcrawl_llm_tokens", "Tokens by kind and model", ["kind", "model"], registry=r
        )
        self.cost = Counter(
            "distcrawl_llm_cost_usd", "Estimated cost by model", ["model"], registry=r
        )
        self.cache_hits = Counter(
            "distcrawl_llm_cache_hits", "Docs summarized from the content cache", registry=r
        )
        self.docs = Counter("distcrawl_docs", "Docs settled by outcome", ["outcome"], registry=r)
        self.adaptive_limit = Gauge(
            "distcrawl_llm_adaptive_limit", "Current adaptive concurrency limit", registry=r
        )
        self.rate_limit_waits = Counter(
            "distcrawl_llm_rate_limit_waits",
            "Times a call waited for the shared RPM/TPM buckets",
            registry=r,
        )
        self.in_flight = Gauge(
            "distcrawl_summarizer_in_flight", "Docs this process is working on", registry=r
        )
        self.paused = PauseGauge(r)
        _preset(self.requests, ("ok", "http_429", "timeout", "connection", "bad_response"))
        _preset(self.docs, ("summarized", "failed"))


class PauseGauge:
    """``distcrawl_worker_paused{reason}``: 1 while this process waits on purpose.

    Reasons: ``docs_backlog`` (a crawler, while the summarizers' backlog is at the crawl's
    bound), ``store_full`` (Redis at maxmemory refuses writes) and ``proxies_down`` (a crawler
    whose proxy pool has no usable proxy)."""

    REASONS = ("docs_backlog", "store_full", "proxies_down")

    def __init__(self, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(
            "distcrawl_worker_paused",
            "1 while this process waits on purpose, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in self.REASONS:
            self._gauge.labels(reason).set(0)

    def show(self, reason: str | None, previous: str | None) -> None:
        if previous is not None:
            self._gauge.labels(previous).set(0)
        if reason is not None:
            self._gauge.labels(reason).set(1)


def _preset(counter: Counter, values: Iterable[str]) -> None:
    for value in values:
        counter.labels(value)


class SnapshotCollector(Collector):
    """Gauges read from a snapshot (refreshed from Redis before each scrape)."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            family = GaugeMetricFamily(f"distcrawl_{name}", f"crawl-wide {name.replace('_', ' ')}")
            family.add_metric([], value)
            yield family


async def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    refresh: Callable[[], Awaitable[None]] | None = None,
    health: Callable[[], Awaitable[tuple[bool, str]]] | None = None,
    host: str = "0.0.0.0",
) -> web.AppRunner:
    """Serve /metrics (and /healthz) on ``port`` in this event loop; returns the runner."""

    async def metrics(_: web.Request) -> web.Response:
        if refresh is not None:
            with contextlib.suppress(Exception):  # a scrape must not fail because Redis blinked
                await refresh()
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def healthz(_: web.Request) -> web.Response:
        ok, why = (True, "ok") if health is None else await health()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
