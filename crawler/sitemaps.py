"""Parsing one sitemap document (sitemaps.org protocol 0.9): pages, an index's children, lastmod.

Pure: bytes in, entries out; fetching (and the ``.xml.gz`` layer) is crawler/sources.py's job.
XML is read by lxml's incremental parser with every door to the outside shut: no DTD loaded, no
entity resolved (an XXE or a "billion laughs" entity stays an unexpanded reference), no network,
libxml2's size limits kept (``huge_tree`` off). Elements are matched by local name, so a missing
or unusual namespace does not matter, and each ``<url>`` is dropped once read, so a 50 MB
sitemap does not become a 50 MB tree. Real sitemaps are often broken: a bare ``&`` in a query
string is escaped before parsing (libxml2's recovery would silently drop it from the URL),
other damage is recovered from, and a text sitemap (one URL per line) is read too.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

from lxml import etree

__all__ = ["SITEMAP_KINDS", "ParsedSitemap", "SitemapEntry", "parse_lastmod", "parse_sitemap"]

SITEMAP_KINDS = frozenset({"urlset", "sitemapindex", "text"})
# A bare "&" (not an entity or character reference), outside CDATA sections, which keep theirs.
_BARE_AMP = re.compile(
    rb"<!\[CDATA\[.*?\]\]>|&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#[xX][0-9A-Fa-f]+);)", re.S
)
_YEAR_MONTH = re.compile(r"(\d{4})(?:-(\d{2}))?")
_LEADING = b"\xef\xbb\xbf \t\r\n"


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """A URL a sitemap lists and its ``<lastmod>`` in epoch seconds (None: absent, unreadable)."""

    loc: str
    lastmod: float | None = None


@dataclass(slots=True)
class ParsedSitemap:
    """What one document holds: ``kind`` is ``urlset``, ``sitemapindex`` or ``text`` for a
    sitemap, else the root element's name ("" for no document at all)."""

    kind: str = ""
    pages: list[SitemapEntry] = field(default_factory=list)
    sitemaps: list[SitemapEntry] = field(default_factory=list)  # an index's children

    @property
    def is_sitemap(self) -> bool:
        return self.kind in SITEMAP_KINDS


def parse_lastmod(text: str | None) -> float | None:
    """A W3C datetime (``2024``, ``2024-05``, ``2024-05-01``, ``2024-05-01T10:00+02:00``, with
    seconds, fractions, ``Z``) or, as some servers write, an RFC 2822 date, in epoch seconds;
    a time without a zone is taken as UTC. Anything else is None, never an error."""
    value = (text or "").strip()
    if not value:
        return None
    try:
        if partial := _YEAR_MONTH.fullmatch(value):
            when = datetime(int(partial[1]), int(partial[2] or 1), 1, tzinfo=UTC)
        elif value[:4].isdigit():
            when = datetime.fromisoformat(value.upper())
        else:
            when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, TypeError, OverflowError):
        return None


def parse_sitemap(body: bytes, base_url: str, limit: int = 1_000_000) -> ParsedSitemap:
    """The entries of a sitemap, a sitemap index or a text sitemap (at most ``limit`` pages);
    relative locations are resolved against ``base_url``, the sitemap's own URL."""
    head = body.lstrip(_LEADING)
    if head and not head.startswith(b"<"):
        return _parse_text(head, limit)
    return _parse_xml(_BARE_AMP.sub(_escape_amp, body), base_url, limit)


def _escape_amp(match: re.Match[bytes]) -> bytes:
    return b"&amp;" if match[0] == b"&" else match[0]


def _parse_text(body: bytes, limit: int) -> ParsedSitemap:
    lines = (line.strip() for line in body.decode("utf-8", "replace").splitlines())
    pages = [SitemapEntry(line) for line in lines if line.startswith(("http://", "https://"))]
    return ParsedSitemap("text" if pages else "", pages[:limit])


def _parse_xml(body: bytes, base_url: str, limit: int) -> ParsedSitemap:
    parsed = ParsedSitemap()
    events = etree.iterparse(
        io.BytesIO(body),
        events=("start", "end"),
        recover=True,
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        for event, element in events:
            name = _local(element.tag)
            if event == "start":
                parsed.kind = parsed.kind or name
            elif name in ("url", "sitemap"):
                entry = _entry(element, base_url)
                if entry is not None:
                    (parsed.pages if name == "url" else parsed.sitemaps).append(entry)
                _release(element)
                if len(parsed.pages) >= limit:
                    break
    except etree.XMLSyntaxError:
        pass  # recovery reads past damage: only a document with no element at all ends here
    return parsed


def _local(tag: object) -> str:
    """An element's name without its namespace ("" for a node that is not an element)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _entry(element: etree._Element, base_url: str) -> SitemapEntry | None:
    loc = (element.findtext("{*}loc") or "").strip()
    if not loc:
        return None
    if not loc.startswith(("http://", "https://")):
        with contextlib.suppress(ValueError):  # left as written: admission says why not
            loc = urljoin(base_url, loc)
    return SitemapEntry(loc, parse_lastmod(element.findtext("{*}lastmod")))


def _release(element: etree._Element) -> None:
    """Drop a read element and the siblings before it: memory stays flat however long the file."""
    element.clear(keep_tail=True)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
