"""The LLM summarizer benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import pytest

from bench.llm import HEADER, HEADER2
from tests.processes import run_quick_bench


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_llm_bench_quick() -> None:
    run_quick_bench("bench.llm", 180, HEADER, HEADER2)
