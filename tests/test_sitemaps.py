"""Sitemaps: the parser (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.sitemaps import SitemapEntry, parse_lastmod, parse_sitemap

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


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
        f'<urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">'
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
        f'<sitemapindex xmlns="{NS}"><sitemap><loc>http://a.test/s1.xml.gz</loc>'
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
