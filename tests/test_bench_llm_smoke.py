"""The LLM summarizer benchmark runs end to end at smoke-test sizes. No speed is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.llm import HEADER, HEADER2

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_llm_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.llm", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert HEADER in proc.stdout, output
    assert HEADER2 in proc.stdout, output
    assert not [line for line in output.splitlines() if line.startswith("FAILED")], output
    assert "Traceback" not in output, output
