"""`distcrawl run` and the distributed commands, end to end, as separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from distcrawl.redis_server import RedisClusterServer, RedisServer
from tests.processes import (
    ROOT,
    MockProcess,
    SiteProcess,
    assert_no_traceback,
    cli,
    produce,
    read_pages,
    spawn_cli,
)

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
    proc = cli("run", *site.roots, "--out", str(out), "--no-progress", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    _check_every_page_once(site, out, _expected(site, 166))
    assert "wrote 501 page records" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis_server", "redis_cluster"])
def test_distributed_produce_three_crawlers_two_summarizers_export(
    backend: str,
    request: pytest.FixtureRequest,
    site_factory: Callable[..., SiteProcess],
    tmp_path: Path,
) -> None:
    """2,010 pages on 6 hosts, 3 crawl and 2 summarize processes, then export: every page
    fetched, recorded and summarized exactly once, on one redis-server and on a three-master
    Redis Cluster (same URL form; there the crawl has 16 shards spread over every master)."""
    server: RedisServer | RedisClusterServer = request.getfixturevalue(backend)
    hosts = ",".join(f"127.0.0.{i}" for i in range(1, 7))
    site = site_factory("--addresses", hosts, "--pages", "334")
    crawl = f"dist{tmp_path.name[-8:]}"
    store = ["--redis", server.url, "--crawl", crawl]
    assert "admitted 6 seeds" in produce(store, site.roots, rate=500, burst=100, inflight=16)
    mock = MockProcess("--api-key", "sk-dist", "--latency", "0.01")
    try:
        env = mock.worker_env("sk-dist")
        workers = [
            spawn_cli("crawl", *store, "--drain", "--allow-private", "--concurrency", "16")
            for _ in range(3)
        ] + [
            spawn_cli("summarize", *store, "--drain", "--concurrency", "16", env=env)
            for _ in range(2)
        ]
        for w in workers:
            _, err = w.communicate(timeout=240)
            assert w.returncode == 0, err
            assert_no_traceback(err)
    finally:
        mock.stop()
    out = tmp_path / "export"
    exported = cli("export", *store, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    expected = _expected(site, 334)
    _check_every_page_once(site, out, expected)
    summaries = [json.loads(line) for line in (out / "summaries.jsonl").read_text().splitlines()]
    assert sorted(s["url"] for s in summaries) == sorted(expected)
    status = cli("status", *store, "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert (doc["admitted"], doc["done"]) == (2010, 2010)
    assert (doc["pending"], doc["in_flight"], doc["failed"], doc["skipped"]) == (0, 0, 0, 0)
    assert doc["balanced"] is True
    assert (doc["docs"]["summarized"], doc["docs"]["pending"]) == (2010, 0)
    assert doc["docs"]["balanced"] is True
    if isinstance(server, RedisClusterServer):
        per_master = server.keys_per_master(f"distcrawl:{{{crawl}:*")
        assert len(per_master) == 3
        assert all(n > 0 for n in per_master.values()), per_master


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_demo_run_needs_nothing_but_the_package(tmp_path: Path) -> None:
    """... and runs one crawl process per CPU it may use (here two: `run` and a child)."""
    out = tmp_path / "demo"
    args = ["run", "--demo", "--out", str(out), "--no-progress", "--rate", "200", "--burst", "50"]
    proc = subprocess.run(
        [sys.executable, "-m", "distcrawl.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=lambda: os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2]),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("worker_started worker=crawl:") == 2, proc.stderr
    assert proc.stderr.count("crawl worker finished:") == 1, proc.stderr  # the child's
    records = read_pages(out)
    assert len(records) == 61
    assert {r["outcome"] for r in records} == {"done"}
