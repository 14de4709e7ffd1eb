"""`distcrawl run` and the distributed commands, end to end, as separate processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisServer
from tests.processes import SiteProcess, assert_no_traceback, cli, read_pages, spawn_cli

FAST = ["--rate", "500", "--burst", "100", "--per-domain-inflight", "16", "--allow-private"]
ADDRESSES = "127.0.0.1,127.0.0.2,127.0.0.3"


def _expected(site: SiteProcess, pages: int) -> set[str]:
    roots = {f"http://{h}/" for h in site.hosts}
    return roots | {f"http://{h}/p/{i}.html" for h in site.hosts for i in range(pages)}


def _check_every_page_once(site: SiteProcess, out: Path, expected: set[str]) -> None:
    records = read_pages(out)
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls)), "a URL appears twice in pages.jsonl"
    assert set(urls) == expected
    assert {r["outcome"] for r in records} == {"done"}
    assert all(r["status"] == 200 and r["title"] for r in records)
    hits = site.hits()
    fetched_twice = {u: n for u, n in hits.items() if u in expected and n != 1}
    assert not fetched_twice, f"pages fetched more than once: {fetched_twice}"
    for host in site.hosts:
        assert hits[f"http://{host}/robots.txt"] == 1


@pytest.mark.slow
def test_run_reaches_every_page_exactly_once(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--addresses", ADDRESSES, "--pages", "166")
    out = tmp_path / "out"
    seeds = [f"http://{h}/" for h in site.hosts]
    proc = cli("run", *seeds, "--out", str(out), "--no-progress", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    _check_every_page_once(site, out, _expected(site, 166))
    assert "wrote 501 page records" in proc.stderr


@pytest.mark.slow
def test_distributed_produce_three_crawlers_export(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    site = site_factory("--addresses", ADDRESSES, "--pages", "166")
    store = ["--redis", redis_server.url, "--crawl", f"dist{tmp_path.name[-8:]}"]
    seeds = [f"http://{h}/" for h in site.hosts]
    produced = cli(
        "produce", *store, *seeds, "--rate", "500", "--burst", "100", "--per-domain-inflight", "16"
    )
    assert produced.returncode == 0, produced.stderr
    assert "admitted 3 seeds" in produced.stdout
    workers = [
        spawn_cli("crawl", *store, "--drain", "--allow-private", "--concurrency", "16")
        for _ in range(3)
    ]
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
        assert_no_traceback(err)
    out = tmp_path / "export"
    exported = cli("export", *store, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    _check_every_page_once(site, out, _expected(site, 166))
    status = cli("status", *store, "--json")
    assert status.returncode == 0, status.stderr
    import json

    doc = json.loads(status.stdout)
    assert doc["admitted"] == 501
    assert doc["done"] == 501
    assert (doc["pending"], doc["in_flight"], doc["failed"], doc["skipped"]) == (0, 0, 0, 0)
    assert doc["balanced"] is True


def test_demo_run_needs_nothing_but_the_package(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = cli(
        "run", "--demo", "--out", str(out), "--no-progress", "--rate", "200", "--burst", "50"
    )
    assert proc.returncode == 0, proc.stderr
    records = read_pages(out)
    assert len(records) == 61
    assert {r["outcome"] for r in records} == {"done"}
