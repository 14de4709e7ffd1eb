"""The revisit benchmark runs end to end at smoke-test size. No speed is asserted."""

from __future__ import annotations

import pytest

from bench.revisit import HEADER
from tests.processes import run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_revisit_bench_quick() -> None:
    stdout, _ = run_quick_bench("bench.revisit", 150, HEADER)
    second = next(line.split() for line in stdout.splitlines() if line.startswith("   2 "))
    assert second[2] == "475"  # 304s: every unchanged page of 500, 25 of them changed
    assert second[4] == "25"  # LLM calls: exactly the changed pages
    assert "exactly the changed pages" in stdout
