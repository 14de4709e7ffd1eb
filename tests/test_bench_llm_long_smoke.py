"""The long-pages benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import pytest

from bench.llm_long import HEADER3
from tests.processes import run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_llm_long_bench_quick() -> None:
    stdout, _ = run_quick_bench("bench.llm_long", 150, HEADER3)
    rows = {
        line.split()[0]: line.split()
        for line in stdout.splitlines()
        if line[:4] in ("cut ", "map-")
    }
    assert rows["cut"][4] == "30%"  # the input budget's share of a 10,000-token page
    assert rows["map-reduce"][4] == "100%"  # read whole
    assert rows["map-reduce"][-1] == "0"  # none truncated
