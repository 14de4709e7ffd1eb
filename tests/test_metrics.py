"""A running crawl worker serves distcrawl_* metrics, including crawl-wide gauges."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest

from distcrawl.redis_server import free_port
from distcrawl.sample_docs import make_docs
from tests.docscrawl import DocsCrawl
from tests.processes import MockProcess, SiteProcess, cli, produce, scrape_metrics, spawn_cli


def _scrape(port: int) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in scrape_metrics(port).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _samples_once(port: int, name: str, at_least: float) -> dict[str, float]:
    """The worker's samples once ``name`` reaches ``at_least`` (or the last seen after 60 s)."""
    deadline = time.monotonic() + 60
    samples: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            samples = _scrape(port)
        except OSError:
            samples = {}
        if samples.get(name, 0) >= at_least:
            break
        time.sleep(0.3)
    return samples


@pytest.mark.slow
def test_crawl_worker_serves_metrics(
    site_factory: Callable[..., SiteProcess], crawl_args: list[str]
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", "30", "--page-delay", "0.05")
    produce(crawl_args, site.roots, rate=20)
    port = free_port()
    worker = spawn_cli("crawl", *crawl_args, "--allow-private", "--metrics-port", str(port))
    try:
        samples = _samples_once(port, "distcrawl_crawl_done", 31)
        assert samples.get("distcrawl_crawl_done") == 31, samples
        assert samples['distcrawl_pages_total{outcome="done"}'] == 31
        assert samples['distcrawl_fetches_total{status_class="2xx"}'] >= 31
        assert samples["distcrawl_fetch_seconds_count"] >= 31
        assert samples["distcrawl_fetch_bytes_total"] > 0
        assert samples["distcrawl_links_found_total"] > samples["distcrawl_links_admitted_total"]
        assert samples["distcrawl_frontier_queued"] == 0
        assert samples["distcrawl_crawl_admitted"] == 31
        assert samples["distcrawl_redis_used_memory_bytes"] > 0
        assert "distcrawl_redis_maxmemory_bytes" in samples
        assert samples['distcrawl_pages_total{outcome="failed"}'] == 0  # preset label values
        assert samples['distcrawl_page_changes_total{change="new"}'] == 31
        health = cli("health", "--metrics-port", str(port))
        assert (health.returncode, health.stdout.split(":")[0]) == (0, "healthy"), health
        labels = {
            pair.split("=")[0]
            for name in samples
            if "{" in name
            for pair in name[name.index("{") + 1 : -1].split(",")
        }
        assert labels <= {"status_class", "outcome", "reason", "change", "le", "quantile"}, labels
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=20)
    assert worker.returncode == 0
    gone = cli("health", "--metrics-port", str(port), "--timeout", "1")
    assert gone.returncode == 1, gone
    assert "unhealthy" in gone.stderr


@pytest.mark.slow
async def test_summarize_worker_serves_metrics(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess]
) -> None:
    mock = mock_factory("--api-key", "sk-metrics", "--latency", "0.05")
    await docs_crawl.feed(make_docs(40))
    port = free_port()
    worker = docs_crawl.spawn(mock.worker_env("sk-metrics"), "--metrics-port", str(port))
    try:
        samples = await asyncio.to_thread(_samples_once, port, "distcrawl_docs_summarized", 40)
        assert samples.get("distcrawl_docs_summarized") == 40, samples
        assert samples['distcrawl_docs_total{outcome="summarized"}'] == 40
        assert samples['distcrawl_llm_requests_total{outcome="ok"}'] == 40
        assert samples["distcrawl_llm_seconds_count"] == 40
        assert samples['distcrawl_llm_tokens_total{kind="prompt",model="mock-model"}'] > 0
        assert samples["distcrawl_llm_adaptive_limit"] >= 1
        assert samples["distcrawl_docs_waiting"] == 0
        assert "sk-metrics" not in repr(samples)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.communicate, timeout=20)
    assert worker.returncode == 0
