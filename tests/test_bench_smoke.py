"""The frontier benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.frontier import HEADER

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_frontier_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.frontier", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert HEADER in proc.stdout, output
    assert "FAILED" not in output, output
    words = [line.split() for line in proc.stdout.splitlines()]
    cells = [(w[0], w[1], w[2]) for w in words if len(w) > 3 and w[1] in ("1", "4")]
    assert cells == [
        (store, procs, batch)
        for store in ("redis", "embedded") for procs in ("1", "4") for batch in ("1", "16")
    ], output
    assert proc.stdout.count("n/a (in-process store)") == 2, output
