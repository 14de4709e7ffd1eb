"""`distcrawl run --out DIR` on its embedded store: SIGKILL and resume, --fresh, a bad binary.

Real processes throughout: the CLI, its private Valkey server, the test site.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.docsqueue import DocsQueue
from common.keys import CrawlKeys
from common.private_server import private_server
from common.settings import EmbeddedSettings
from common.store import open_store
from crawler.frontier import Frontier
from tests.processes import ROOT, SiteProcess, assert_no_traceback, cli, read_pages, spawn_cli

ADDRESSES = "127.0.0.1,127.0.0.2,127.0.0.3"
CONCURRENCY = 8
# 8 pages in flight that each take 0.2 s to serve: the crawl lasts long enough to be killed in
# the middle, with leases held.
SLOW = [
    "--rate",
    "500",
    "--burst",
    "100",
    "--per-domain-inflight",
    "16",
    "--allow-private",
    "--concurrency",
    str(CONCURRENCY),
    "--no-progress",
]


def _read_summaries(out: Path) -> list[dict[str, Any]]:
    path = out / "summaries.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _pages(site: SiteProcess, pages: int) -> set[str]:
    roots = {f"http://{h}/" for h in site.hosts}
    return roots | {f"http://{h}/p/{i}.html" for h in site.hosts for i in range(pages)}


def _server_pid(out: Path) -> int:
    return int((out / ".store" / "valkey.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _settled_hits(site: SiteProcess) -> Counter[str]:
    """The site's hits once the requests cut off by the kill are logged (when they end)."""
    previous = -1
    while len(site.requests()) != previous:
        previous = len(site.requests())
        time.sleep(0.5)  # longer than a page takes to serve
    return site.hits()


def _check_once_each(out: Path, expected: set[str]) -> list[dict[str, Any]]:
    records = read_pages(out)
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls)), "a URL appears twice in pages.jsonl"
    assert set(urls) == expected
    assert {r["outcome"] for r in records} == {"done"}
    summaries = _read_summaries(out)
    summarized = [s["url"] for s in summaries]
    assert len(summarized) == len(set(summarized)), "a URL appears twice in summaries.jsonl"
    assert set(summarized) == expected
    assert {s["outcome"] for s in summaries} == {"summarized"}
    return records


async def _check_equations(out: Path, pages: int) -> None:
    """Open the run's own store again (as `run` does) and read both outcome equations."""
    async with private_server(out / ".store", EmbeddedSettings()) as url:
        redis = await open_store(url)
        try:
            keys = CrawlKeys("default")
            stats = await Frontier(redis, keys).stats()
            docs = await DocsQueue(redis, keys).stats()
        finally:
            await redis.aclose()
    assert stats.admitted == stats.done + stats.failed + stats.skipped + stats.pending
    assert (stats.admitted, stats.done, stats.pending, stats.in_flight) == (pages, pages, 0, 0)
    assert docs.balanced
    assert (docs.queued, docs.summarized, docs.pending) == (pages, pages, 0)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkilled_run_resumes_and_exports_each_page_once(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--addresses", ADDRESSES, "--pages", "100", "--page-delay", "0.2")
    expected = _pages(site, 100)
    out = tmp_path / "out"
    seeds = [f"http://{h}/" for h in site.hosts]

    # One crawl process: then the leases the resume returns are all that is fetched twice (a
    # `crawl` child is sent SIGTERM when `run` dies, and drains: what it releases is fetched
    # again too, uncounted).
    first = spawn_cli("run", *seeds, "--out", str(out), *SLOW, "--processes", "1")
    _wait_for(lambda: len(site.requests()) >= 80, 120, "the first run to fetch 80 pages")
    server = _server_pid(out)
    assert _alive(server)
    # the store is the first run's while it lives: a second run on DIR refuses to start
    clash = cli("run", *seeds, "--out", str(out), *SLOW, timeout=60)
    assert clash.returncode == 2, clash.stderr
    assert "another distcrawl process is using the store" in clash.stderr
    assert_no_traceback(clash.stderr)

    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    _wait_for(lambda: not _alive(server), 30, "the private server to die with its parent")
    assert not (out / "pages.jsonl").exists()  # killed before its export
    fetched_before = _settled_hits(site)
    assert sum(n for u, n in fetched_before.items() if u in expected) < len(expected)

    second = cli("run", *seeds, "--out", str(out), *SLOW, timeout=180)
    assert second.returncode == 0, second.stderr
    assert_no_traceback(second.stderr)
    resumed = re.search(r"resuming the crawl .*\((\d+) leases of the previous run", second.stderr)
    assert resumed is not None, second.stderr
    returned = int(resumed.group(1))
    assert returned >= 1  # 8 pages were in flight, each taking 0.2 s, when it was killed

    records = _check_once_each(out, expected)
    hits = site.hits()
    for host in site.hosts:
        assert hits[f"http://{host}/robots.txt"] == 1  # robots rules came from the store
    refetched = {u for u in expected if hits[u] > 1}
    assert all(hits[u] <= 2 for u in expected)
    assert refetched <= {u for u in expected if fetched_before[u]}
    # only the dead run's leases are fetched again: what it had settled is done
    assert len(refetched) <= returned
    assert {r["url"] for r in records if r["attempts"] == 2} <= refetched
    asyncio.run(_check_equations(out, len(expected)))


def test_rerun_on_a_finished_dir_is_its_next_pass_and_fresh_starts_over(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--pages", "20")
    expected = _pages(site, 20)
    out = tmp_path / "out"
    seed = f"http://{site.hosts[0]}/"
    fast = ["--rate", "500", "--burst", "100", "--allow-private", "--no-progress"]

    done = cli("run", seed, "--out", str(out), *fast)
    assert done.returncode == 0, done.stderr
    _check_once_each(out, expected)

    # A finished crawl run again is its next pass: every page revisited once (this site sends
    # no validators: full fetches, found unchanged by their text), one record per URL still.
    again = cli("run", seed, "--out", str(out), *fast)
    assert again.returncode == 0, again.stderr
    assert "resuming the crawl" not in again.stderr
    assert "pass 2: 21 known pages to revisit" in again.stderr
    assert "done 42, failed 0, skipped 0, pending 0" in again.stderr
    _check_once_each(out, expected)
    assert all(site.hits()[u] == 2 for u in expected)
    assert (out / "changes-2.jsonl").read_text() == ""  # nothing changed

    # another crawl's seeds would run under this one's scope: refused, with the way out
    other = cli("run", "http://127.0.0.9:9/", "--out", str(out), *fast)
    assert other.returncode == 2, other.stderr
    assert other.stderr.startswith("distcrawl: error: ")
    assert "holds another crawl" in other.stderr
    assert "--fresh" in other.stderr
    seedless = cli("run", "--out", str(out), *fast)  # a pass (or a resume) needs no seed
    assert seedless.returncode == 0, seedless.stderr
    assert "pass 3:" in seedless.stderr
    _check_once_each(out, expected)

    fresh = cli("run", seed, "--out", str(out), "--fresh", *fast)
    assert fresh.returncode == 0, fresh.stderr
    assert_no_traceback(fresh.stderr)
    assert "resuming" not in fresh.stderr
    _check_once_each(out, expected)
    assert all(site.hits()[u] == 4 for u in expected)  # the crawl started over: one fetch


@pytest.mark.parametrize(
    ("binary", "code", "message"),
    [
        ("/bin/false", 3, "the embedded store's server exited with code 1 while starting"),
        ("/nonexistent/valkey-server", 2, "is not an executable file"),
    ],
)
def test_a_server_that_cannot_start_is_one_error_line(
    tmp_path: Path, binary: str, code: int, message: str
) -> None:
    proc = cli(
        "run",
        "http://127.0.0.1:9/",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        env={"DISTCRAWL_EMBEDDED__BINARY": binary},
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("distcrawl: error: ")
    assert message in lines[0]


def test_fresh_with_a_shared_redis_is_refused(tmp_path: Path) -> None:
    proc = cli(
        "run",
        "http://127.0.0.1:9/",
        "--redis",
        "redis://127.0.0.1:9/0",
        "--fresh",
        "--out",
        str(tmp_path / "out"),
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--fresh deletes the embedded store" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_drains_into_the_store_and_the_next_run_finishes(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the server is in its
    own session, so it outlives `run`'s drain (leases released, partial export) and stops."""
    site = site_factory("--pages", "150", "--page-delay", "0.2")
    expected = _pages(site, 150)
    out = tmp_path / "out"
    seed = f"http://{site.hosts[0]}/"
    first = subprocess.Popen(
        [sys.executable, "-m", "distcrawl.cli", "run", seed, "--out", str(out), *SLOW],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    _wait_for(lambda: len(site.requests()) >= 30, 120, "the first run to fetch 30 pages")
    os.killpg(first.pid, signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert_no_traceback(err)
    partial = read_pages(out)
    assert 0 < len(partial) < len(expected)

    second = cli("run", seed, "--out", str(out), *SLOW, timeout=180)
    assert second.returncode == 0, second.stderr
    assert f"done {len(partial)}, " in second.stderr
    assert "(0 leases of the previous run returned)" in second.stderr  # it released them
    _check_once_each(out, expected)
    hits = _settled_hits(site)
    assert all(hits[u] == 1 for u in expected)  # nothing fetched twice after a clean stop


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_three_crawl_processes_share_the_store_and_stop_with_run(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    """`run --processes 3`: two `crawl` children on run's private server. SIGTERM to `run`
    alone reaches them too (all drain and release); the next run finishes the crawl."""
    site = site_factory("--addresses", ADDRESSES, "--pages", "100", "--page-delay", "0.1")
    expected = _pages(site, 100)
    out = tmp_path / "out"
    seeds = [f"http://{h}/" for h in site.hosts]
    args = ["run", *seeds, "--out", str(out), *SLOW, "--processes", "3"]

    first = spawn_cli(*args)
    assert first.stderr is not None
    started: list[str] = []
    while len(started) < 3:  # this process's crawl worker and its two children's
        line = first.stderr.readline()
        assert line, "run ended before three crawl workers started"
        started += [line] if "worker_started worker=crawl:" in line else []
    _wait_for(lambda: len(site.requests()) >= 30, 120, "the first run to fetch 30 pages")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert_no_traceback(err)
    assert err.count("crawl worker finished:") == 2, err  # both children drained
    # the children were claiming before the 30th page (all three workers had started), so
    # they took part: shared work is shown here, where it does not depend on start-up time
    first_children = re.findall(r"crawl worker finished: done (\d+)", err)
    assert sum(int(n) for n in first_children) > 0, err

    second = cli(*args, timeout=180)
    assert second.returncode == 0, second.stderr
    assert_no_traceback(second.stderr)
    assert "(0 leases of the previous run returned)" in second.stderr
    children = re.findall(r"crawl worker finished: done (\d+)", second.stderr)
    assert len(children) == 2, second.stderr  # (on a busy host they may start after the end)
    _check_once_each(out, expected)
    hits = _settled_hits(site)
    assert all(hits[u] == 1 for u in expected)


def test_the_demo_keeps_its_store_out_of_dir(tmp_path: Path) -> None:
    """Its site is new every run: nothing to resume, and DIR stays free for a real crawl."""
    out = tmp_path / "out"
    proc = cli("run", "--demo", "--out", str(out), "--no-progress", "--rate", "200")
    assert proc.returncode == 0, proc.stderr
    assert len(read_pages(out)) == 61
    assert not (out / ".store").exists()
    assert "resuming" not in proc.stderr
