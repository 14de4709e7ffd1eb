"""Trouble pages end in the right state with a reason, and never crash a worker."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import ROOT, PeakRss, SiteProcess, assert_no_traceback, read_pages

MB = 1024 * 1024


@pytest.mark.slow
def test_trouble_pages(site_factory: Callable[..., SiteProcess], tmp_path: Path) -> None:
    trouble = site_factory("--addresses", "127.0.0.5", "--pages", "5", "--trouble")
    delayed = site_factory("--addresses", "127.0.0.6", "--pages", "4", "--crawl-delay", "0.5")
    t, d = trouble.hosts[0], delayed.hosts[0]
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distcrawl.cli",
                "run",
                f"http://{t}/",
                f"http://{d}/",
                "--out",
                str(out),
                "--no-progress",
                "--allow-private",
                "--rate",
                "100",
                "--burst",
                "20",
                "--per-domain-inflight",
                "1",
                "--max-attempts",
                "2",
            ],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DISTCRAWL_FETCH__READ_TIMEOUT_S": "1"},
        )
        rss = PeakRss(proc.pid)
        proc.wait(timeout=240)
        crawler_peak_mb = rss.stop()
    err = log.read_text()
    assert proc.returncode == 0, err
    assert_no_traceback(err)
    pages = {r["url"]: r for r in read_pages(out)}

    def page(path: str) -> dict[str, object]:
        return pages[f"http://{t}{path}"]

    assert (page("/t/404")["outcome"], page("/t/404")["reason"]) == ("failed", "http_404")
    assert (page("/t/flaky")["outcome"], page("/t/flaky")["attempts"]) == ("done", 2)
    assert (page("/t/429")["outcome"], page("/t/429")["attempts"]) == ("done", 2)
    assert (page("/t/loop")["outcome"], page("/t/loop")["reason"]) == ("failed", "redirect_loop")
    assert page("/t/redirected")["final_url"] == f"http://{t}/t/target"
    assert f"http://{t}/t/target" not in pages  # the hop was marked seen, not fetched again
    huge = page("/t/huge")
    assert (huge["outcome"], huge["truncated"], huge["bytes"]) == ("done", True, 5 * MB)
    bomb = page("/t/gzipbomb")
    assert (bomb["outcome"], bomb["truncated"], bomb["bytes"]) == ("done", True, 5 * MB)
    assert (page("/t/doc.pdf")["outcome"], page("/t/doc.pdf")["reason"]) == (
        "skipped",
        "content_type",
    )
    assert (page("/t/slow")["outcome"], page("/t/slow")["reason"]) == ("failed", "timeout")
    assert page("/t/latin1")["title"] == "café"
    assert page("/t/badutf8")["outcome"] == "done"
    assert (page("/t/noindex")["outcome"], page("/t/noindex")["reason"]) == ("done", "noindex")
    assert page("/t/from-noindex")["outcome"] == "done"
    assert page("/t/nofollow")["outcome"] == "done"
    assert f"http://{t}/t/never" not in pages
    assert page("/t/malformed")["outcome"] == "done"
    assert page("/t/fine")["outcome"] == "done"
    assert (page("/private/secret")["outcome"], page("/private/secret")["reason"]) == (
        "skipped",
        "robots",
    )
    assert all(p["outcome"] == "done" for u, p in pages.items() if u.startswith(f"http://{d}"))

    requests = trouble.requests()
    paths = [r["path"] for r in requests]
    assert "/private/secret" not in paths
    assert "/t/never" not in paths
    # 429 + Retry-After: 2 -> this host's next request waits at least that long.
    first_429 = next(r for r in requests if r["path"] == "/t/429")
    after = [r["t"] for r in requests if r["t"] > first_429["t"]]
    assert after, "nothing was requested after the 429"
    assert min(after) - first_429["t"] >= 1.95
    # The PDF was refused on its headers: far less than its 12.5 MB body went out.
    pdf = next(r for r in requests if r["path"] == "/t/doc.pdf")
    assert pdf["sent"] < 2 * MB
    # robots.txt Crawl-delay: 0.5 s between requests to that host.
    stamps = sorted(r["t"] for r in delayed.requests() if r["path"] != "/robots.txt")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 5
    assert min(gaps) >= 0.45, gaps
    # A 50 MB body and a 100 MB gzip bomb left the crawler's memory bounded.
    assert 0 < crawler_peak_mb < 250, crawler_peak_mb
    assert all("distcrawl/" in r["ua"] for r in requests)
