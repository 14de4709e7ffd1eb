"""--extractor module:function: a user's function on every page, its dict in the record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import SiteProcess, assert_no_traceback, cli, read_pages

FAST = ["--rate", "200", "--burst", "50", "--allow-private", "--no-summarize", "--no-progress"]


@pytest.mark.parametrize("fn", ["headline", "headline_async"])
def test_every_page_gets_the_functions_data(
    fn: str, site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", "12")
    out = tmp_path / "out"
    seed = f"http://{site.hosts[0]}/"
    proc = cli("run", seed, "--out", str(out), "--extractor", f"tests.extractors:{fn}", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    pages = read_pages(out)
    assert len(pages) == 13
    assert {p["outcome"] for p in pages} == {"done"}
    for p in pages:
        data = p["data"]
        assert data["url"] == p["url"]
        assert data["final"] == p["final_url"]
        assert data["chars"] > 100
        if p["url"] != seed:  # the pages' own <h1>, read from the tree the function got
            number = p["url"].rsplit("/", 1)[1].split(".")[0]
            assert data["h1"].startswith(f"Page {number}: ")
        else:
            assert data["h1"] == "Demo site"


def test_a_failing_function_fails_its_page_not_the_worker(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", "12")
    out = tmp_path / "out"
    seed = f"http://{site.hosts[0]}/"
    proc = cli("run", seed, "--out", str(out), "--extractor", "tests.extractors:picky", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    pages = {p["url"].rsplit("/", 1)[1]: p for p in read_pages(out)}
    assert len(pages) == 13  # the failed pages' links were still followed
    failed = {name: p for name, p in pages.items() if p["outcome"] == "failed"}
    assert set(failed) == {"1.html", "2.html", "3.html"}
    assert {p["reason"] for p in failed.values()} == {"extractor_error"}
    assert "ValueError: no price on this page" in failed["1.html"]["error"]
    assert "returned list, not a dict" in failed["2.html"]["error"]
    assert "not JSON" in failed["3.html"]["error"]
    assert all(p.get("data") is None for p in failed.values())
    assert all(p["data"]["h1"] for n, p in pages.items() if n not in failed)


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("tests.extractors", "expected 'module:function'"),
        ("tests.no_such_module:f", "cannot load extractor"),
        ("tests.extractors:missing", "cannot load extractor"),
        ("tests.extractors:NOT_CALLABLE", "is not callable"),
    ],
)
def test_a_bad_extractor_is_one_line(path: str, needle: str, tmp_path: Path) -> None:
    proc = cli("run", "http://127.0.0.1:9/", "--out", str(tmp_path), "--extractor", path, *FAST)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert_no_traceback(proc.stderr)
