"""Chaos: network trouble between the crawler and the site, through tests/faultproxy.py.

Four hosts of one local site, each behind a different fault: added latency (healthy but slow),
connections reset mid-body half of the time, a half-open peer that never answers, and a
100 bytes/s trickle. Timeouts fire, failures are retried with the domain pushed back, every URL
ends with a reason, and the healthy host keeps its pace while the others stall.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisServer
from tests.chaos import Fleet, check_invariants, concurrency
from tests.processes import SiteProcess, produce, read_pages, spawn_ready, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(240)]

FAULTS = {
    "127.0.0.1": "latency:0.05",
    "127.0.0.2": "reset:0.5",
    "127.0.0.3": "blackhole",
    "127.0.0.4": "throttle:100",
}
PAGES = 40
TIMEOUTS = {
    "DISTCRAWL_FETCH__CONNECT_TIMEOUT_S": "1",
    "DISTCRAWL_FETCH__READ_TIMEOUT_S": "1.5",
    "DISTCRAWL_FETCH__TOTAL_TIMEOUT_S": "3",
    "DISTCRAWL_LOG_FORMAT": "json",
}


class ProxyProcess:
    def __init__(self, upstream_port: int, log: Path) -> None:
        listen = [arg for addr, fault in FAULTS.items() for arg in ("--listen", f"{addr}={fault}")]
        self.log = log
        self.proc, ready = spawn_ready(
            "tests.faultproxy", "--upstream-port", str(upstream_port), "--log", str(log), *listen
        )
        self.port = int(ready)

    def requests(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in self.log.read_text().splitlines() if x]


@pytest.fixture
def proxied_site(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> Iterator[tuple[SiteProcess, ProxyProcess]]:
    site = site_factory("--addresses", ",".join(FAULTS), "--pages", str(PAGES))
    proxy = ProxyProcess(site.port, tmp_path / "proxy.log")
    yield site, proxy
    stop_process(proxy.proc)


def test_latency_resets_half_open_and_trickle(
    proxied_site: tuple[SiteProcess, ProxyProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    _, proxy = proxied_site
    host = {addr: f"{addr}:{proxy.port}" for addr in FAULTS}
    store = ["--redis", redis_server.url, "--crawl", f"net{tmp_path.name[-8:]}"]
    produce(store, [f"http://{h}/" for h in host.values()], rate=20, burst=4, max_attempts=3)
    fleet = Fleet(tmp_path, store, env=TIMEOUTS, args=concurrency(crawl=16))
    fleet.run_one_crawler(timeout=180)
    figures = check_invariants(
        "network faults (proxy)",
        store,
        tmp_path / "export",
        logs=fleet.logs(),
        faults=3,
        max_rss_mb=fleet.peak_rss_mb(),
    )
    pages = {p["url"]: p for p in read_pages(tmp_path / "export")}

    # Healthy but slow: every page done.
    healthy = {u: p for u, p in pages.items() if host["127.0.0.1"] in u}
    assert len(healthy) == PAGES + 1
    assert {p["outcome"] for p in healthy.values()} == {"done"}

    # Half-open and trickle: the timeouts fire; each root ends failed after 3 attempts.
    for addr in ("127.0.0.3", "127.0.0.4"):
        root = pages[f"http://{host[addr]}/"]
        assert (root["outcome"], root["reason"], root["attempts"]) == ("failed", "timeout", 3)

    # Resets: retried (the reason says what broke); the equation held (checked above).
    assert figures.extra["retries"] > 0
    reset_pages = [p for u, p in pages.items() if host["127.0.0.2"] in u]
    assert any(p["attempts"] > 1 and p["outcome"] == "done" for p in reset_pages), reset_pages
    assert {p["reason"] for p in reset_pages if p["outcome"] == "failed"} <= {
        "connection_reset",
        "bad_body",
    }

    # Back-off, measured at the proxy: the half-open host got one request per attempt (its
    # robots.txt, which comes first), spaced by at least the timeout plus the retry delay.
    log = proxy.requests()
    blackhole = sorted(float(str(r["t"])) for r in log if r["addr"] == "127.0.0.3")
    assert len(blackhole) == 3, log
    assert all(b - a >= 2.5 for a, b in itertools.pairwise(blackhole)), blackhole

    # The healthy host kept its pace: all of it was fetched before the half-open host's last
    # attempt (its retries wait seconds; the healthy host needs about 2 s at 20/s).
    healthy_times = [float(str(r["t"])) for r in log if r["addr"] == "127.0.0.1"]
    assert max(healthy_times) < blackhole[-1], (max(healthy_times), blackhole)
