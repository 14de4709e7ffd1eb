"""The LLM summarizer benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import pytest

from bench.llm import HEADER, HEADER2
from tests.processes import run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_llm_bench_quick() -> None:
    proc, output = run_quick_bench("bench.llm", timeout=180)
    assert proc.returncode == 0, output
    assert HEADER in proc.stdout, output
    assert HEADER2 in proc.stdout, output
    assert not [line for line in output.splitlines() if line.startswith("FAILED")], output
    assert "Traceback" not in output, output
