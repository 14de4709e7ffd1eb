"""SIGTERM during a crawl: exit within the grace period, release leases, lose nothing."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import SiteProcess, assert_no_traceback, cli, produce, read_pages, spawn_cli


@pytest.mark.slow
def test_sigterm_releases_in_flight_and_a_second_run_finishes(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, crawl_args: list[str]
) -> None:
    site = site_factory("--addresses", "127.0.0.1,127.0.0.2", "--pages", "40", "--page-delay", "3")
    produce(crawl_args, site.roots, rate=100, burst=20, inflight=32)
    # Every fetch takes 3 s and the grace is 0.5 s: whatever is in flight at SIGTERM cannot
    # finish in time and must be released.
    worker = spawn_cli(
        "crawl", *crawl_args, "--allow-private", "--concurrency", "64", "--grace", "0.5"
    )

    def status() -> dict[str, int]:
        proc = cli("status", *crawl_args, "--json")
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    deadline = time.monotonic() + 60
    while status()["done"] < 10:
        assert time.monotonic() < deadline, "the worker made no progress"
        assert worker.poll() is None, worker.communicate()
        time.sleep(0.2)
    assert status()["in_flight"] > 0
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=15)  # grace 0.5 s: it must not hang
    assert worker.returncode == 0, err
    assert_no_traceback(err)
    released = re.search(r"released (\d+)", err)
    assert released is not None, err
    assert int(released.group(1)) > 0, err
    after = status()
    assert after["in_flight"] == 0
    assert after["pending"] > 0
    assert after["balanced"]

    finisher = cli(
        "crawl", *crawl_args, "--allow-private", "--concurrency", "64", "--drain", timeout=240
    )
    assert finisher.returncode == 0, finisher.stderr
    out = tmp_path / "export"
    assert cli("export", *crawl_args, "--out", str(out)).returncode == 0
    urls = [r["url"] for r in read_pages(out)]
    expected = {f"http://{h}/" for h in site.hosts} | {
        f"http://{h}/p/{i}.html" for h in site.hosts for i in range(40)
    }
    assert len(urls) == len(set(urls))
    assert set(urls) == expected
    final = status()
    assert (final["done"], final["pending"], final["in_flight"]) == (82, 0, 0)
