"""The batch-vs-live benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import pytest

from bench.llm_batch import HEADER
from tests.processes import run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_llm_batch_bench_quick() -> None:
    stdout, _ = run_quick_bench("bench.llm_batch", 150, HEADER)
    rows = {
        cells[0]: cells
        for cells in (line.split() for line in stdout.splitlines())
        if cells and cells[0] in ("live", "batch") and cells[1].isdigit()
    }
    assert rows["live"][1] == rows["batch"][1] == "60"  # every doc, both ways
    assert (rows["live"][2], rows["live"][3]) == ("60", "0")  # live: 60 calls, no batch
    assert (rows["batch"][2], rows["batch"][3], rows["batch"][4]) == ("0", "60", "3")
    [ratio] = [line.split()[-1] for line in stdout.splitlines() if line.startswith("batch /")]
    assert float(ratio) == pytest.approx(0.5, abs=0.01)  # the same tokens at half the price
    assert "FAILED" not in stdout
