"""Sitemaps: the parser (pure), reading them through the Fetcher from a real local site, and the
CLI's answers (robots.txt ``Sitemap:`` lines, unreachable and private sitemaps)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.settings import build_settings
from crawler.sitemaps import SitemapEntry, parse_lastmod, parse_sitemap
from crawler.sources import open_fetcher, sitemap_entries
from distcrawl.redis_server import RedisServer, free_port
from tests.processes import SiteProcess, assert_no_traceback, cli, log_events, read_pages
from tests.site import LASTMODS, SITEMAP_NS


def _ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, hours: int = 0) -> float:
    """Epoch seconds of a wall time at UTC+``hours``."""
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp() - hours * 3600


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", _ts(2026, 11, 1)),
        ("2026", _ts(2026, 1, 1)),
        ("2026-11", _ts(2026, 11, 1)),
        ("2026-11-02T10:30+02:00", _ts(2026, 11, 2, 10, 30, hours=2)),
        ("2026-11-02T10:30:15Z", _ts(2026, 11, 2, 10, 30, 15)),
        ("2026-11-02t10:30:15.250-05:00", _ts(2026, 11, 2, 10, 30, 15, hours=-5) + 0.25),
        ("2026-11-02T10:30:15", _ts(2026, 11, 2, 10, 30, 15)),  # no zone: UTC
        ("  2026-11-01\n", _ts(2026, 11, 1)),
        ("Mon, 02 Nov 2026 10:30:00 GMT", _ts(2026, 11, 2, 10, 30)),  # RFC 2822, seen in the wild
        ("2026-02-30", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_lastmod_forms(text: str | None, expected: float | None) -> None:
    assert parse_lastmod(text) == expected


def test_urlset_is_read_whatever_its_namespace() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="{SITEMAP_NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">'
        "<!-- generated -->"
        "<url><loc> http://a.test/?x=1&amp;y=2 </loc><lastmod>2026-11-01</lastmod>"
        "<image:image><image:loc>http://img.test/1.png</image:loc></image:image></url>"
        "<url><loc>http://a.test/q?x=1&y=2&amp;z=3</loc></url>"  # a bare & (a common bug)
        "<url><loc><![CDATA[http://a.test/c?d=1&e=2]]></loc></url>"
        "<url><loc>/relative/page</loc></url>"
        "<url><lastmod>2026-11-01</lastmod></url>"  # no loc: nothing
        "</urlset>"
    ).encode()
    parsed = parse_sitemap(body, "http://a.test/sitemap.xml")
    assert parsed.kind == "urlset"
    assert parsed.sitemaps == []
    assert parsed.pages == [
        SitemapEntry("http://a.test/?x=1&y=2", _ts(2026, 11, 1)),
        SitemapEntry("http://a.test/q?x=1&y=2&z=3"),
        SitemapEntry("http://a.test/c?d=1&e=2"),
        SitemapEntry("http://a.test/relative/page"),
    ]
    bare = parse_sitemap(b"<urlset><url><loc>http://b.test/</loc></url></urlset>", "x")
    assert bare.pages == [SitemapEntry("http://b.test/")]


def test_index_and_text_sitemaps_and_other_documents() -> None:
    index = parse_sitemap(
        f'<sitemapindex xmlns="{SITEMAP_NS}"><sitemap><loc>http://a.test/s1.xml.gz</loc>'
        "<lastmod>2026-11-03T08:00Z</lastmod></sitemap><sitemap><loc>s2.xml</loc></sitemap>"
        "</sitemapindex>".encode(),
        "http://a.test/maps/index.xml",
    )
    assert index.kind == "sitemapindex"
    assert index.pages == []
    assert index.sitemaps == [
        SitemapEntry("http://a.test/s1.xml.gz", _ts(2026, 11, 3, 8)),
        SitemapEntry("http://a.test/maps/s2.xml"),
    ]
    text = parse_sitemap(b"\xef\xbb\xbfhttp://a.test/1\r\n\r\nhttps://a.test/2\n", "x")
    assert text.kind == "text"
    assert [e.loc for e in text.pages] == ["http://a.test/1", "https://a.test/2"]
    for body, kind in [(b"<html><p>hi</p></html>", "html"), (b"", ""), (b'{"a": 1}', "")]:
        other = parse_sitemap(body, "x")
        assert (other.kind, other.is_sitemap, other.pages) == (kind, False, [])


def _with_dtd(dtd: str, ref: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE urlset [{dtd}]><urlset>'
        f"<url><loc>http://a.test/{ref}</loc></url><url><loc>http://a.test/ok</loc></url>"
        "</urlset>"
    ).encode()


def test_entities_are_never_expanded(tmp_path: Path) -> None:
    """XXE (a local file) and a billion-laughs bomb: the references stay unexpanded."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = parse_sitemap(_with_dtd(f'<!ENTITY x SYSTEM "file://{secret}">', "&x;"), "x")
    assert [e.loc for e in xxe.pages] == ["http://a.test/", "http://a.test/ok"]
    laughs = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)
    )
    bomb = parse_sitemap(_with_dtd(laughs, "&i;"), "x")  # 10^8 "lol"s if expanded
    # libxml2 stops reading at the bomb: what came before it is all there is, unexpanded
    assert [e.loc for e in bomb.pages] == ["http://a.test/"]


def test_page_limit() -> None:
    urls = "".join(f"<url><loc>http://a.test/{i}</loc></url>" for i in range(100))
    parsed = parse_sitemap(f"<urlset>{urls}</urlset>".encode(), "x", limit=7)
    assert [e.loc for e in parsed.pages] == [f"http://a.test/{i}" for i in range(7)]


async def test_sitemaps_through_the_fetcher(site_factory: Callable[..., SiteProcess]) -> None:
    """Content-Encoding: gzip with lastmods, a .xml.gz file, an index of two children, the
    depth bound, and a missing sitemap (an error, or skipped when not required)."""
    site = site_factory("--pages", "6")
    base = f"http://{site.hosts[0]}"
    async with open_fetcher(build_settings(allow_private=True)) as fetcher:
        encoded = await sitemap_entries(fetcher, f"{base}/sitemap-lastmod.xml")
        assert [e.loc for e in encoded] == [f"{base}/p/{i}.html" for i in range(len(LASTMODS))]
        assert [e.lastmod for e in encoded] == [
            _ts(2026, 11, 1),
            _ts(2026, 11, 2, 10, 30, hours=2),
            _ts(2026, 11, 3, 8),
            None,  # "soon"
        ]
        gz = await sitemap_entries(fetcher, f"{base}/sitemap-pages.xml.gz")
        assert [e.loc for e in gz] == [f"{base}/p/{i}.html?a=1&b=2" for i in range(6)]
        split = await sitemap_entries(fetcher, f"{base}/sitemap-split.xml")
        assert [e.loc for e in split] == [f"{base}/p/{i}.html" for i in (0, 2, 4, 1, 3, 5)]
        assert await sitemap_entries(fetcher, f"{base}/sitemap-split.xml", max_depth=0) == []
        assert await sitemap_entries(fetcher, f"{base}/nowhere.xml", required=False) == []
        with pytest.raises(ConfigError, match=r"sitemap http://.*/nowhere.xml: http_404"):
            await sitemap_entries(fetcher, f"{base}/nowhere.xml")
        with pytest.raises(ConfigError, match=r"/p/1.html: not a sitemap \(no <urlset> or <si"):
            await sitemap_entries(fetcher, f"{base}/p/1.html")
    hits = site.hits()
    assert hits[f"{base}/sitemap-half/0.xml"] == hits[f"{base}/sitemap-half/1.xml"] == 1


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert_no_traceback(stderr)
    assert lines[0].startswith("distcrawl: error: ")
    return lines[0]


@pytest.mark.parametrize("command", ["produce", "run"])
def test_unreachable_sitemap_is_one_line(
    command: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    sitemap = f"http://127.0.0.1:{free_port()}/sitemap.xml"  # a closed port
    where = ["--redis", redis_server.url, "--crawl", "x"] if command == "produce" else []
    out = ["--out", str(tmp_path / "out"), "--no-progress"] if command == "run" else []
    proc = cli(command, *where, *out, "--sitemap", sitemap, "--allow-private")
    assert proc.returncode == 2
    assert f"sitemap {sitemap}: connect_error (" in _one_line_error(proc.stderr)


def test_sitemaps_from_robots(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    """127.0.0.1's robots.txt lists an index (two children) and a missing sitemap (skipped);
    127.0.0.2 has no robots.txt (none listed); each origin's robots.txt is read once."""
    site = site_factory(
        "--pages", "6", "--addresses", "127.0.0.1,127.0.0.2",
        "--robots-sitemaps", "--no-robots-on", "127.0.0.2",
    )  # fmt: skip
    one, two = site.hosts
    store = ["--redis", redis_server.url, "--crawl", f"rob{tmp_path.name[-8:]}"]
    seeds = [f"http://{one}/", f"http://{two}/", f"http://{one}/p/1.html"]
    proc = cli(
        "produce", *store, *seeds, "--sitemaps-from-robots", "--allow-private",
        "--log-format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    assert "admitted 8 seeds" in proc.stdout  # 3 seeds + 6 sitemap pages, /p/1.html twice
    events = log_events(proc.stderr)
    robots = {e["origin"]: e["sitemaps"] for e in events if e["event"] == "robots_sitemaps"}
    assert robots == {f"http://{one}": 2, f"http://{two}": 0}
    skipped = [e["url"] for e in events if e["event"] == "sitemap_skipped"]
    assert skipped == [f"http://{one}/nowhere.xml"]
    hits = site.hits()
    assert hits[f"http://{one}/robots.txt"] == hits[f"http://{two}/robots.txt"] == 1
    assert hits[f"http://{one}/sitemap-half/1.xml"] == 1


def test_robots_sitemaps_refused_or_unreachable(
    site_factory: Callable[..., SiteProcess], redis_server: RedisServer
) -> None:
    site = site_factory("--pages", "2", "--robots-sitemaps")
    store = ["--redis", redis_server.url, "--crawl", "never"]
    seed = f"http://{site.hosts[0]}/"
    refused = cli("produce", *store, seed, "--sitemaps-from-robots")
    assert refused.returncode == 2
    line = _one_line_error(refused.stderr)
    assert f"robots.txt {seed}robots.txt: blocked_address" in line
    assert "--allow-private" in line
    closed = f"http://127.0.0.1:{free_port()}/"
    unreachable = cli("produce", *store, closed, "--sitemaps-from-robots", "--allow-private")
    assert unreachable.returncode == 2
    assert f"robots.txt {closed}robots.txt: connect_error" in _one_line_error(unreachable.stderr)
    alone = cli("produce", *store, "--sitemap", f"{seed}sitemap.xml", "--sitemaps-from-robots")
    assert alone.returncode == 2
    assert "give a SEED or --file F" in _one_line_error(alone.stderr)
    assert site.hits()[f"{seed}robots.txt"] == 0  # nothing was fetched from the refused site


def test_run_crawls_what_robots_sitemaps_list(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--pages", "6", "--robots-sitemaps")
    base = f"http://{site.hosts[0]}"
    out = tmp_path / "out"
    proc = cli(
        "run", f"{base}/p/0.html", "--sitemaps-from-robots", "--out", str(out),
        "--allow-private", "--no-progress", "--no-summarize", "--max-depth", "0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p["url"] for p in read_pages(out)) == [f"{base}/p/{i}.html" for i in range(6)]
