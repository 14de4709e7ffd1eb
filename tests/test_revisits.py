"""Continuous crawling (docs/revisits.md): passes, conditional revisits, change tracking.

A folder site (distcrawl/foldersite.py: real ETag/Last-Modified/304) changes between two passes of
one crawl; the server's log and the mock LLM's call count show what each pass fetched and
summarized.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.docsqueue import DocsQueue, DocsStats
from common.keys import CrawlKeys
from common.private_server import private_server
from common.settings import EmbeddedSettings
from common.store import open_store
from crawler.frontier import Frontier, FrontierStats
from tests.processes import ROOT, MockProcess, SiteProcess, assert_no_traceback, cli

pytestmark = pytest.mark.slow

KEY = "sk-revisit"
FAST = ["--rate", "200", "--burst", "50", "--per-domain-inflight", "8", "--allow-private"]
PAGES = 20  # p0..p19, linked from the index


def _page(name: str, text: str, links: list[str] | None = None) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links or [])
    return (
        f"<html><head><title>{name}</title></head><body><p>{text}</p>"
        f'<a href="/">home</a> {anchors}</body></html>'
    )


def _feed(base: str, items: list[str]) -> str:
    entries = "".join(f"<item><title>{i}</title><link>{base}/{i}.html</link></item>" for i in items)
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>news</title>'
        f"<link>{base}/</link><description>d</description>{entries}</channel></rss>"
    )


class Folder:
    """The site's files, edited between passes (a touch of the mtime to the second after,
    so If-Modified-Since sees the edit even within the same second)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()

    def write(self, name: str, body: str) -> None:
        path = self.root / name
        path.write_text(body)
        bump = time.time() + 2
        os.utime(path, (bump, bump))

    def delete(self, name: str) -> None:
        (self.root / name).unlink()


@pytest.fixture
def folder_site(tmp_path: Path) -> Iterator[tuple[Folder, SiteProcess]]:
    folder = Folder(tmp_path / "site")
    site = SiteProcess(
        tmp_path / "site.log", "--root", str(folder.root), module="distcrawl.foldersite"
    )
    yield folder, site
    site.stop()


@dataclass(frozen=True)
class News:
    """The news site of the two-pass tests, as it is before its first pass."""

    folder: Folder
    site: SiteProcess
    base: str


@pytest.fixture
def news(folder_site: tuple[Folder, SiteProcess]) -> News:
    folder, site = folder_site
    base = f"http://127.0.0.1:{site.port}"
    _first_site(folder, base)
    return News(folder, site, base)


def _requests_since(site: SiteProcess, t: float) -> list[dict[str, Any]]:
    return [r for r in site.requests() if r["t"] >= t]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _by_change(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in _records(path):
        out.setdefault(r["change"], set()).add(r["url"].rsplit("/", 1)[1])
    return out


def _first_site(folder: Folder, base: str) -> None:
    folder.write(
        "index.html",
        _page("home", "The front page of the news site.", [f"p{i}.html" for i in range(PAGES)]),
    )
    for i in range(PAGES):
        folder.write(f"p{i}.html", _page(f"p{i}", f"Story number {i} tells its own tale {i}."))
    for name in ("f0", "f1"):
        folder.write(f"{name}.html", _page(name, f"Feed story {name}, only in the feed."))
    folder.write("feed.xml", _feed(base, ["f0", "f1"]))


def _second_site(folder: Folder, base: str) -> None:
    """k = 3 changed (p0 links two new pages), j = 2 gone, m = 3 new (n0, n1 and a feed item)."""
    folder.write("p0.html", _page("p0", "Story 0, rewritten with news.", ["n0.html", "n1.html"]))
    folder.write("p1.html", _page("p1", "Story 1, corrected."))
    folder.write("p2.html", _page("p2", "Story 2, updated with a follow-up."))
    folder.delete("p18.html")
    folder.delete("p19.html")
    for name in ("n0", "n1", "f2"):
        folder.write(f"{name}.html", _page(name, f"A brand new story {name}."))
    folder.write("feed.xml", _feed(base, ["f0", "f1", "f2"]))


CHANGED = {"p0.html", "p1.html", "p2.html"}
GONE = {"p18.html", "p19.html"}
NEW = {"n0.html", "n1.html", "f2.html"}


def test_second_run_revisits_conditionally_and_summarizes_only_changes(
    news: News,
    mock_factory: type[MockProcess],
    tmp_path: Path,
) -> None:
    folder, site, base = news.folder, news.site, news.base
    mock = mock_factory("--api-key", KEY)
    out = tmp_path / "out"
    args = ["run", f"{base}/", "--feed", f"{base}/feed.xml", "--out", str(out), "--no-progress"]
    env = mock.worker_env(KEY)

    first = cli(*args, *FAST, env=env)
    assert first.returncode == 0, first.stderr
    pass1 = _by_change(out / "changes-1.jsonl")
    assert set(pass1) == {"new"}
    known = {"", *(f"p{i}.html" for i in range(PAGES)), "f0.html", "f1.html"}
    assert pass1["new"] == known | {"feed.xml"}  # the feed is kept too, read at every pass
    calls_1 = mock.stats()["requests"]
    assert calls_1 == len(known)  # every page's text summarized once

    _second_site(folder, base)
    started = time.time()
    second = cli(*args, *FAST, env=env)
    assert second.returncode == 0, second.stderr
    assert_no_traceback(second.stderr)
    assert "pass 2:" in second.stderr, second.stderr

    # At the server: every known URL asked conditionally, 304 where nothing changed; the
    # changes file lists exactly the k changed, m new and j gone.
    _check_pass_two(site, started, out / "changes-2.jsonl")

    # Only the new and changed texts went to the LLM: k + m calls.
    assert mock.stats()["requests"] - calls_1 == len(CHANGED) + len(NEW)

    # pages.jsonl: the latest state of every URL; an unchanged page keeps its pass-1 record.
    pages = {r["url"].rsplit("/", 1)[1]: r for r in _records(out / "pages.jsonl")}
    assert set(pages) == known | NEW | {"feed.xml"}
    assert pages["feed.xml"]["kind"] == "feed"
    assert pages["feed.xml"]["links"] == 3
    assert pages["p5.html"]["pass"] == 1
    assert pages["p5.html"]["change"] == "new"
    assert pages["p0.html"]["pass"] == 2
    assert pages["p0.html"]["change"] == "changed"
    assert pages["p18.html"]["outcome"] == "failed"
    assert pages["p18.html"]["change"] == "gone"
    summaries = {r["url"].rsplit("/", 1)[1]: r for r in _records(out / "summaries.jsonl")}
    assert set(summaries) == known | NEW  # gone pages keep their last summary

    # A third run with nothing changed: everything 304, no LLM call, an empty changes file.
    calls_2 = mock.stats()["requests"]
    third = cli(*args, *FAST, env=env)
    assert third.returncode == 0, third.stderr
    assert mock.stats()["requests"] == calls_2
    assert _records(out / "changes-3.jsonl") == []


def _check_pass_two(site: SiteProcess, started: float, changes: Path) -> None:
    """What the second pass asked the server and what it reported (k changed, m new, j gone)."""
    known = {"", *(f"p{i}.html" for i in range(PAGES)), "f0.html", "f1.html"}
    seen: dict[str, list[dict[str, Any]]] = {}
    feed: list[dict[str, Any]] = []
    for r in _requests_since(site, started):
        if r["path"] == "/feed.xml":  # read by the producer, then revisited by a worker
            feed.append(r)
        else:
            seen.setdefault(r["path"].lstrip("/"), []).append(r)
    assert [(r["status"], bool(r["if_none_match"])) for r in feed] == [(200, False), (200, True)]
    assert all(len(v) == 1 for v in seen.values()), {k: len(v) for k, v in seen.items()}
    revisits = {p: v[0] for p, v in seen.items() if v[0]["if_none_match"]}
    assert set(revisits) == known
    assert {p for p, r in revisits.items() if r["status"] == 304} == known - CHANGED - GONE
    assert {p for p, r in revisits.items() if r["status"] == 404} == GONE
    assert {p for p, v in seen.items() if not v[0]["if_none_match"]} == NEW
    assert _by_change(changes) == {"changed": CHANGED | {"feed.xml"}, "new": NEW, "gone": GONE}


def _drain(store: list[str], env: dict[str, str], crawlers: int = 2) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "distcrawl.cli", "crawl", *store, "--drain", "--allow-private"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(crawlers)
    ]
    workers.append(
        subprocess.Popen(
            [sys.executable, "-m", "distcrawl.cli", "summarize", *store, "--drain"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
    )
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
        assert_no_traceback(err)


@pytest.mark.parametrize("backend", ["redis_server", "redis_cluster"])
def test_distributed_recrawl_pass(
    backend: str,
    request: pytest.FixtureRequest,
    news: News,
    mock_factory: type[MockProcess],
    tmp_path: Path,
) -> None:
    """produce, 2 crawl processes and a summarizer; then `produce --recrawl` and the same
    fleet: the second pass is the same as run's (on a cluster, over 16 shards)."""
    server = request.getfixturevalue(backend)
    folder, site, base = news.folder, news.site, news.base
    mock = mock_factory("--api-key", KEY)
    env = mock.worker_env(KEY)
    store = ["--redis", server.url, "--crawl", f"rv{tmp_path.name[-8:]}"]
    seeds = [f"{base}/", "--feed", f"{base}/feed.xml", "--allow-private"]
    produced = cli("produce", *store, *seeds, *FAST[:6])
    assert produced.returncode == 0, produced.stderr
    _drain(store, env)
    calls_1 = mock.stats()["requests"]
    assert calls_1 == PAGES + 3

    _second_site(folder, base)
    started = time.time()
    recrawl = cli("produce", *store, *seeds, "--recrawl")
    assert recrawl.returncode == 0, recrawl.stderr
    assert "pass 2 of crawl" in recrawl.stdout
    assert "24 known pages" in recrawl.stdout  # 23 pages and the feed
    _drain(store, env)
    out = tmp_path / "export"
    exported = cli("export", *store, "--out", str(out), "--since", "2")
    assert exported.returncode == 0, exported.stderr
    _check_pass_two(site, started, out / "changes.jsonl")
    assert mock.stats()["requests"] - calls_1 == len(CHANGED) + len(NEW)
    status = json.loads(cli("status", *store, "--json").stdout)
    assert status["balanced"]
    assert status["pending"] == 0
    assert status["revisits"]["pass"] == 2
    assert status["revisits"]["revisits"] == 24
    assert status["revisits"]["changes"] == {"changed": 4, "unchanged": 18, "gone": 2}


def test_a_sigkill_during_the_second_pass_loses_nothing(
    news: News,
    mock_factory: type[MockProcess],
    tmp_path: Path,
) -> None:
    folder, site, base = news.folder, news.site, news.base
    mock = mock_factory("--api-key", KEY, "--latency", "0.05")
    env = {**os.environ, **mock.worker_env(KEY)}
    out = tmp_path / "out"
    # 4 pages/s: the second pass takes about 6 s, and the kill lands in it.
    args = ["run", f"{base}/", "--feed", f"{base}/feed.xml", "--out", str(out), "--no-progress"]
    # (one crawl process: the kill must land on the whole of pass 2's crawling)
    slow = ["--rate", "4", "--burst", "1", "--allow-private", "--processes", "1"]
    first = cli(*args, *slow, env=env)
    assert first.returncode == 0, first.stderr
    _second_site(folder, base)
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "distcrawl.cli", *args, *slow],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for _ in range(300):  # until a few revisits have settled at the server
            if len([r for r in _requests_since(site, started) if r["if_none_match"]]) >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # killed mid-pass, not finished
    resumed = cli(*args, *slow, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "pass 3" not in resumed.stderr  # the same pass, resumed
    assert _by_change(out / "changes-2.jsonl") == {
        "changed": CHANGED | {"feed.xml"},
        "new": NEW,
        "gone": GONE,
    }
    # Every known page was revisited in pass 2, and none twice except what was in flight.
    revisited = {r["path"] for r in _requests_since(site, started) if r["if_none_match"]}
    assert len(revisited) == 24  # 23 pages and the feed
    stats, docs = asyncio.run(_embedded_stats(out))
    assert stats.balanced
    assert stats.pending == 0
    assert stats.pass_no == 2
    assert docs.balanced
    assert docs.pending == 0
    summaries = {r["url"].rsplit("/", 1)[1] for r in _records(out / "summaries.jsonl")}
    assert summaries >= NEW | CHANGED


async def _embedded_stats(out: Path) -> tuple[FrontierStats, DocsStats]:
    """Both queues' stats from a run's own store, opened again as `run` does."""
    async with private_server(out / ".store", EmbeddedSettings()) as url:
        redis = await open_store(url)
        try:
            keys = CrawlKeys("default")
            return await Frontier(redis, keys).stats(), await DocsQueue(redis, keys).stats()
        finally:
            await redis.aclose()


def _gaps(site: SiteProcess, path: str) -> list[float]:
    times = [r["t"] for r in site.requests() if r["path"] == path]
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


def test_continuous_workers_revisit_on_an_adaptive_schedule(
    redis_server: Any, folder_site: tuple[Folder, SiteProcess], tmp_path: Path
) -> None:
    """`crawl` (no --drain) with --revisit-after 2s: a page that changes every second is
    revisited at 2 s, then 1 s, then 0.5 s (halving down to the minimum, after/4); a page that
    never changes at 2 s, then 4 s (doubling). Measured at the server."""
    folder, site = folder_site
    base = f"http://127.0.0.1:{site.port}"
    folder.write("still.html", "<html><head><title>still</title></head><body>same</body></html>")
    store = ["--redis", redis_server.url, "--crawl", f"cont{tmp_path.name[-8:]}"]
    produced = cli(
        "produce", *store, f"{base}/live/clock", f"{base}/still.html", *FAST[:6],
        "--no-summarize", "--revisit-after", "2s",
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    worker = subprocess.Popen(
        [sys.executable, "-m", "distcrawl.cli", "crawl", *store, "--allow-private"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(400):  # until the still page's second revisit (at about 6 s)
            if len(_gaps(site, "/still.html")) >= 2 and len(_gaps(site, "/live/clock")) >= 5:
                break
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    live, still = _gaps(site, "/live/clock"), _gaps(site, "/still.html")
    # (lower bounds are exact: a page is never due early; upper bounds leave 1.5 s of slack
    # for a loaded machine)
    assert 2.0 <= live[0] <= 3.5, live
    assert 1.0 <= live[1] <= 2.5, live
    assert all(0.5 <= g <= 1.5 for g in live[2:5]), live
    assert 2.0 <= still[0] <= 3.5, still
    assert 4.0 <= still[1] <= 5.5, still
    status = json.loads(cli("status", *store, "--json").stdout)
    assert status["revisits"]["changes"]["unchanged"] >= 2
    # (at 0.5 s two visits may fall in the same second of the live page: unchanged then)
    assert status["revisits"]["changes"]["changed"] >= 3
    assert status["balanced"]


def test_follow_feeds_reads_the_feeds_pages_advertise(
    folder_site: tuple[Folder, SiteProcess], tmp_path: Path
) -> None:
    folder, site = folder_site
    base = f"http://127.0.0.1:{site.port}"
    link = '<link rel="alternate" type="application/rss+xml" href="/feed.xml">'
    folder.write("index.html", f"<html><head>{link}</head><body>front page</body></html>")
    folder.write("f0.html", _page("f0", "Only the feed links this story."))
    folder.write("feed.xml", _feed(base, ["f0"]))
    args = ["run", f"{base}/", "--no-progress", "--no-summarize", *FAST]
    plain = cli(*args, "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    assert {r["url"] for r in _records(tmp_path / "plain" / "pages.jsonl")} == {f"{base}/"}
    followed = cli(*args, "--out", str(tmp_path / "out"), "--follow-feeds")
    assert followed.returncode == 0, followed.stderr
    pages = {r["url"]: r for r in _records(tmp_path / "out" / "pages.jsonl")}
    assert set(pages) == {f"{base}/", f"{base}/feed.xml", f"{base}/f0.html"}
    assert pages[f"{base}/feed.xml"]["kind"] == "feed"
    assert pages[f"{base}/f0.html"]["depth"] == 0  # a feed's items are seeds


def _sitemap(base: str, pages: dict[str, str]) -> str:
    urls = "".join(
        f"<url><loc>{base}/{name}</loc><lastmod>{lastmod}</lastmod></url>"
        for name, lastmod in pages.items()
    )
    return (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{urls}</urlset>"
    )


def test_a_sitemap_lastmod_decides_what_a_pass_fetches(
    folder_site: tuple[Folder, SiteProcess], tmp_path: Path
) -> None:
    """Pages whose <lastmod> is older than their last visit get no request at all in the next
    pass; one whose lastmod moved past it is fetched again."""
    folder, site = folder_site
    base = f"http://127.0.0.1:{site.port}"
    old = "2020-01-01T00:00:00Z"
    for i in range(5):
        folder.write(f"s{i}.html", _page(f"s{i}", f"Sitemap story {i}."))
    folder.write("sitemap.xml", _sitemap(base, {f"s{i}.html": old for i in range(5)}))
    args = ["run", "--sitemap", f"{base}/sitemap.xml", "--out", str(tmp_path / "out")]
    args += ["--no-progress", "--no-summarize", "--max-depth", "0", *FAST]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    folder.write("s2.html", _page("s2", "Sitemap story 2, revised."))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    folder.write(
        "sitemap.xml", _sitemap(base, {f"s{i}.html": later if i == 2 else old for i in range(5)})
    )
    started = time.time()
    second = cli(*args)
    assert second.returncode == 0, second.stderr
    fetched = [r["path"] for r in _requests_since(site, started)]
    assert sorted(fetched) == ["/s2.html", "/sitemap.xml"]
    assert _by_change(tmp_path / "out" / "changes-2.jsonl") == {"changed": {"s2.html"}}
