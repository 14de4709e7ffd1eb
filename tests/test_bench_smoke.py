"""The frontier and crawl benchmarks run end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.crawl import HEADER as CRAWL_HEADER
from bench.frontier import HEADER
from bench.memory import HEADER as HEADER_MEMORY
from tests.processes import ROOT, run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_frontier_bench_quick() -> None:
    stdout, output = run_quick_bench("bench.frontier", 120, HEADER)
    assert "FAILED" not in output, output
    words = [line.split() for line in stdout.splitlines()]
    cells = [(w[0], w[1], w[2]) for w in words if len(w) > 3 and w[1] in ("1", "4")]
    assert cells == [
        (store, procs, batch)
        for store in ("redis", "embedded")
        for procs in ("1", "4")
        for batch in ("1", "16")
    ], output


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_memory_bench_quick() -> None:
    stdout, output = run_quick_bench("bench.memory", 150, HEADER_MEMORY)
    rows = [line for line in stdout.splitlines() if "(" in line and "s)" in line]
    assert len(rows) == 3, output
    for row in rows:
        assert int(row.split()[-7].replace(",", "")) > 100, row  # pages crawled


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_crawl_bench_quick() -> None:
    """Both crawlers get every page of the small site, and the table has its three rows."""
    stdout, output = run_quick_bench("bench.crawl", 150, CRAWL_HEADER)
    assert "FAILED" not in output, output
    rows = [line.split(" | ")[0] for line in stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "| careful loop",
        "| distcrawl crawl, 1 process",
        "| distcrawl crawl, 2 processes",
        "| distcrawl crawl, 1 process, --warc",
        "| distcrawl crawl, 1 process, folder sink",
        "| distcrawl run (embedded, no summaries), first 75 pages",
        "| distcrawl run (embedded, no summaries), all pages",
    ], output


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_crawl_bench_ab_rounds_against_a_baseline_checkout() -> None:
    """``--baseline DIR`` (here this checkout again): each round's two one-process crawls get
    every page, and one A/B line per round compares them."""
    args = ["--quick", "--baseline", str(ROOT), "--rounds", "2", "--skip-two", "--skip-warc"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.crawl", *args, "--skip-sink", "--skip-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "FAILED" not in output, output
    rows = [line.split(" | ")[0] for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "| careful loop",
        *["| distcrawl crawl, 1 process, baseline", "| distcrawl crawl, 1 process, this checkout"]
        * 2,
        "| distcrawl crawl, 1 process",
    ], output
    assert [line.split(":")[0] for line in output.splitlines() if "A/B" in line] == [
        "# A/B round 1",
        "# A/B round 2",
    ], output
