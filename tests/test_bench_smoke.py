"""The frontier benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import pytest

from bench.frontier import HEADER
from tests.helpers import run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_frontier_bench_quick() -> None:
    proc, output = run_quick_bench("bench.frontier", timeout=120)
    assert proc.returncode == 0, output
    assert HEADER in proc.stdout, output
    assert "FAILED" not in output, output
    words = [line.split() for line in proc.stdout.splitlines()]
    cells = [(w[0], w[1], w[2]) for w in words if len(w) > 3 and w[1] in ("1", "4")]
    assert cells == [
        (store, procs, batch)
        for store in ("redis", "embedded")
        for procs in ("1", "4")
        for batch in ("1", "16")
    ], output
