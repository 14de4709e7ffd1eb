"""Chaos: hostile pages (tests/hostile.py) crawled by a real worker with a bounded memory.

Every page ends in a terminal state with a reason, the spider traps stop at the depth and
per-domain caps, nothing but http(s) on the crawl's own host is ever admitted, and the worker's
peak RSS stays under a fixed bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distcrawl.redis_server import RedisServer
from tests.chaos import Fleet, check_invariants, concurrency
from tests.processes import SiteProcess, cli, produce, read_pages

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(240)]

MAX_DEPTH = 6
DOMAIN_CAP = 300
RSS_BOUND_MB = 300


def test_hostile_pages(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    # The 10,000-link page is seeded on a second host, so its links fill that host's page cap
    # while the traps on the first host show the depth limit.
    site = site_factory("--hostile", "--addresses", "127.0.0.1,127.0.0.2")
    root, links_host = f"http://{site.hosts[0]}", f"http://{site.hosts[1]}"
    store = ["--redis", redis_server.url, "--crawl", f"hostile{tmp_path.name[-8:]}"]
    limits = ["--max-depth", str(MAX_DEPTH), "--max-domain-pages", str(DOMAIN_CAP)]
    seeds = [f"{root}/", f"{links_host}/h/links"]
    produce(store, seeds, *limits, rate=200, burst=50, inflight=16, max_attempts=2)
    fleet = Fleet(
        tmp_path,
        store,
        env={"DISTCRAWL_LOG_FORMAT": "json"},
        args=concurrency(crawl=16),
    )
    fleet.run_one_crawler(timeout=200)
    rss = fleet.peak_rss_mb()
    figures = check_invariants(
        "hostile pages", store, tmp_path / "export", logs=fleet.logs(), faults=15, max_rss_mb=rss
    )
    assert rss < RSS_BOUND_MB, rss
    exported = read_pages(tmp_path / "export")
    pages = {p["url"].removeprefix(root): p for p in exported if p["url"].startswith(root)}
    flood = [p for p in exported if p["url"].startswith(links_host)]
    assert len(flood) == DOMAIN_CAP
    status = json.loads(cli("status", *store, "--json").stdout)
    assert figures.admitted == len(exported)
    _check_pages(pages, status)


def _check_pages(pages: dict[str, dict[str, Any]], status: dict[str, Any]) -> None:
    def page(path: str) -> dict[str, Any]:
        return pages[path]

    # The per-domain cap holds however many links a page has (10,000 here).
    assert status["rejected"]["max_domain_pages"] >= 10_000 - DOMAIN_CAP, status["rejected"]
    # Depth stops the spider traps: the deepest level is crawled, the next is refused.
    assert max(p["depth"] for p in pages.values()) == MAX_DEPTH
    assert "/h/a" + "/a" * (MAX_DEPTH - 1) + "/" in pages
    assert "/h/a" + "/a" * MAX_DEPTH + "/" not in pages
    calendar = [path for path in pages if path.startswith("/h/cal/")]
    assert len(calendar) == 2 * MAX_DEPTH - 1, calendar  # one day further each way per level
    assert status["rejected"]["max_depth"] > 0, status["rejected"]
    # Big, deep and badly encoded pages parse.
    assert page("/h/oneline")["outcome"] == "done"
    assert page("/h/oneline")["title"] == "one line"
    assert page("/h/nested")["outcome"] == "done"
    assert page("/h/mixed")["outcome"] == "done"
    assert page("/h/utf16")["title"] == "utf-16 page"
    # Bodies that never end, lie, or explode are cut at the cap or fail with a reason.
    assert page("/h/endless")["truncated"] is True
    assert page("/t/gzipbomb")["truncated"] is True
    assert page("/h/lies-long")["outcome"] == "failed"
    assert page("/h/lies-long")["reason"] == "bad_body"
    # Bytes after the declared length would be the next response: a protocol error.
    assert (page("/h/lies-short")["outcome"], page("/h/lies-short")["reason"]) == (
        "failed",
        "bad_response",
    )
    assert (page("/h/chain/0")["outcome"], page("/h/chain/0")["reason"]) == ("failed", "redirects")
    # Only http(s) on our own host; 10 KB URLs refused, the 2 KB one crawled.
    assert all(path.startswith("/") for path in pages), [p for p in pages if p[:1] != "/"]
    assert not any(len(path) > 8192 for path in pages)
    assert any(path.startswith("/h/long/ok/") for path in pages)
