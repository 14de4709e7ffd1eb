"""Producing seeds: command line, files with garbage lines, stdin, sitemaps."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from distcrawl.redis_server import RedisServer
from tests.processes import SiteProcess, assert_no_traceback, cli, read_pages


def _status(store: list[str]) -> dict[str, object]:
    proc = cli("status", *store, "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_seed_file_with_garbage_lines(tmp_path: Path, redis_server: RedisServer) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "# news sites\n"
        "http://a.test/one\n"
        "not a url at all\n"
        "\n"
        "mailto:someone@a.test\n"
        "HTTP://A.TEST/one#dup\n"
        "http://b.test/two\n"
        "http://[broken/\n"
    )
    store = ["--redis", redis_server.url, "--crawl", f"seed{tmp_path.name[-8:]}"]
    proc = cli("produce", *store, "--file", str(seeds))
    assert proc.returncode == 1  # some lines were bad: the good ones still went in
    assert_no_traceback(proc.stderr)
    errors = proc.stderr.strip().splitlines()
    assert [e.split(": ")[1] for e in errors] == [f"skipped seed {seeds}:{n}" for n in (3, 5, 8)]
    assert "admitted 2 seeds" in proc.stdout
    status = _status(store)
    assert status["admitted"] == 2
    assert status["rejected"] == {"duplicate": 1, "invalid": 3}


def test_seeds_from_stdin(tmp_path: Path, redis_server: RedisServer) -> None:
    store = ["--redis", redis_server.url, "--crawl", f"stdin{tmp_path.name[-8:]}"]
    proc = cli("produce", *store, "--file", "-", input_text="http://a.test/1\nhttp://a.test/2\n")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 2 seeds" in proc.stdout


def test_sitemap_index_is_followed(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    site = site_factory("--pages", "25")
    store = ["--redis", redis_server.url, "--crawl", f"map{tmp_path.name[-8:]}"]
    sitemap = f"http://{site.hosts[0]}/sitemap.xml"
    # fetched like a page: a local address needs --allow-private (the SSRF guard holds)
    refused = cli("produce", *store, "--sitemap", sitemap)
    assert refused.returncode == 2, refused.stderr
    assert "sitemap http://" in refused.stderr
    assert "blocked_address" in refused.stderr
    assert "Traceback" not in refused.stderr
    proc = cli("produce", *store, "--sitemap", sitemap, "--allow-private")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 25 seeds" in proc.stdout
    assert _status(store)["admitted"] == 25
    gz = f"http://{site.hosts[0]}/sitemap-pages.xml.gz"
    again = cli("produce", *store, "--sitemap", gz, "--allow-private")
    assert again.returncode == 0, again.stderr
    assert "admitted 0 seeds" in again.stdout  # the same 25 URLs, read from the .xml.gz
    assert _status(store)["rejected"] == {"duplicate": 25}


def test_feeds_seed_their_entries(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    """RSS 2.0 (item links) and Atom 1.0 (rel=alternate links), parsed by feedparser."""
    site = site_factory("--pages", "12")
    host = site.hosts[0]
    store = ["--redis", redis_server.url, "--crawl", f"feed{tmp_path.name[-8:]}"]
    feeds = ["--feed", f"http://{host}/feed.rss", "--feed", f"http://{host}/feed.atom"]
    proc = cli("produce", *store, *feeds, "--allow-private")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 12 seeds" in proc.stdout  # 10 entries, and the 2 feeds themselves
    bad = cli("produce", *store, "--feed", f"http://{host}/p/1.html", "--allow-private")
    assert bad.returncode == 2, bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, bad.stderr
    assert f"feed http://{host}/p/1.html: not a feed" in lines[0]
    missing = cli("produce", *store, "--feed", f"http://{host}/nothing.rss", "--allow-private")
    assert missing.returncode == 2, missing.stderr
    assert "http_404" in missing.stderr


def test_run_crawls_what_a_feed_lists(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--pages", "12")
    out = tmp_path / "out"
    proc = cli(
        "run", "--feed", f"http://{site.hosts[0]}/feed.rss", "--out", str(out),
        "--allow-private", "--no-progress", "--no-summarize", "--max-depth", "0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pages = read_pages(out)
    urls = sorted(p["url"] for p in pages if p.get("kind") != "feed")
    assert urls == sorted(f"http://{site.hosts[0]}/p/{i}.html" for i in range(5))
    feeds = [p for p in pages if p.get("kind") == "feed"]  # kept, to be read at every pass
    assert [(f["url"], f["links"]) for f in feeds] == [(f"http://{site.hosts[0]}/feed.rss", 5)]


def test_second_producer_keeps_the_spec(tmp_path: Path, redis_server: RedisServer) -> None:
    store = ["--redis", redis_server.url, "--crawl", f"two{tmp_path.name[-8:]}"]
    assert cli("produce", *store, "http://a.test/", "--rate", "3").returncode == 0
    same = cli("produce", *store, "http://a.test/again", "--rate", "3")
    assert "already has a spec" not in same.stderr
    proc = cli("produce", *store, "http://a.test/more", "--rate", "9")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 1 seeds" in proc.stdout
    assert "already has a spec (rate 3.0/s" in proc.stderr
    spec = cli("status", *store, "--json")
    assert spec.returncode == 0
