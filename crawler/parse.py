"""HTML parsing with selectolax (Lexbor): metadata, links and boilerplate-free main text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import xxhash
from selectolax.lexbor import LexborHTMLParser, LexborNode

from common.text import collapse_whitespace
from crawler.feeds import FEED_TYPES

__all__ = ["MAX_NESTING", "ParsedPage", "flatten_deep_nesting", "parse_html", "text_hash"]

_BOILERPLATE = [
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "aside",
    "svg",
    "iframe",
    "form",
    "button",
    "select",
]
_SKIP_HREF = ("#", "javascript:", "mailto:", "tel:", "data:", "sms:", "ftp:", "file:")


@dataclass(slots=True)
class ParsedPage:
    title: str = ""
    description: str = ""
    lang: str | None = None
    base_href: str | None = None
    noindex: bool = False
    nofollow: bool = False
    links: list[str] = field(default_factory=list)
    # Main text, at most max_text_chars: each text node stripped, joined by one space, its
    # whitespace otherwise as in the page (a doc's reader collapses it: common.text).
    text: str = ""
    text_chars: int = 0  # the length of the whole main text (before the cut)
    # With hash_text: a hash of the title and the whole main text, what a revisit compares to
    # tell a changed page from one whose markup changed around the same text (ads, dates).
    text_hash: str = ""
    # With find_feeds: the feeds the page advertises (<link rel="alternate" type="...rss+xml">)
    feeds: list[str] = field(default_factory=list)


def _attr(node: LexborNode | None, name: str) -> str | None:
    if node is None:
        return None
    value = node.attributes.get(name)
    return value.strip() if value else None


# Lexbor's tree builder is quadratic in nesting depth (100k nested <div> take a minute of CPU,
# blocking the event loop). Pages with many tags get tags nested deeper than this dropped
# (their text stays), as Blink's parser caps DOM depth at 512.
MAX_NESTING = 512
_CHECK_ABOVE_TAGS = 10_000
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(/?)>")
_NOT_NESTING = frozenset(
    {  # void elements, and those a parser closes implicitly
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
        "param",
        "p",
        "li",
        "dt",
        "dd",
        "option",
        "optgroup",
        "tr",
        "td",
        "th",
        "thead",
        "tbody",
        "tfoot",
        "a",
    }
)


def flatten_deep_nesting(html: str) -> str:
    """``html`` with tags deeper than MAX_NESTING removed (only pages of over 10,000 tags are
    scanned; below that the parser's worst case stays well under a second)."""
    if html.count("<") < _CHECK_ABOVE_TAGS:
        return html
    depth = 0

    def keep(m: re.Match[str]) -> str:
        nonlocal depth
        if m.group(3) or m.group(2).lower() in _NOT_NESTING:
            return m.group(0)
        if m.group(1):  # a closing tag
            depth = max(0, depth - 1)
            return m.group(0) if depth < MAX_NESTING else ""
        depth += 1
        return m.group(0) if depth <= MAX_NESTING else ""

    return _TAG.sub(keep, html)


def parse_html(
    html: str | bytes, max_text_chars: int, *, hash_text: bool = False, find_feeds: bool = False
) -> ParsedPage:
    """Parse a page (text, or bytes in UTF-8); never raises on malformed markup."""
    if isinstance(html, bytes) and html.count(b"<") >= _CHECK_ABOVE_TAGS:
        html = html.decode("utf-8", errors="replace")  # flattening works on text
    tree = LexborHTMLParser(html if isinstance(html, bytes) else flatten_deep_nesting(html))
    page = ParsedPage()
    head = _head_nodes(tree)
    title = head.get("title")
    if title is not None:
        page.title = collapse_whitespace(title.text())[:1000]
    page.description = (_attr(head.get("meta:description"), "content") or "")[:2000]
    page.lang = _attr(tree.css_first("html"), "lang")
    page.base_href = _attr(head.get("base"), "href")
    robots = (_attr(head.get("meta:robots"), "content") or "").lower()
    page.noindex = "noindex" in robots or "none" in robots
    page.nofollow = "nofollow" in robots or "none" in robots
    links = page.links
    for node in tree.css("a[href], area[href]"):
        href = node.attributes.get("href")
        if not href:
            continue
        href = href.strip()
        if not href or href.lower().startswith(_SKIP_HREF):
            continue
        links.append(href)
    if find_feeds:
        for node in tree.css('link[rel="alternate"][href]'):
            kind = (node.attributes.get("type") or "").strip().lower()
            href = (node.attributes.get("href") or "").strip()
            if kind in FEED_TYPES and href:
                page.feeds.append(href)
    tree.strip_tags(_BOILERPLATE)
    body = tree.body
    # Collapsing the whitespace is left to the doc's reader (common.text): on the bench page
    # it cost as much as building the tree, and the summarizer, not the crawl, has time for it.
    raw = body.text(separator=" ", strip=True, skip_empty=True) if body is not None else ""
    page.text, page.text_chars = raw[:max_text_chars], len(raw)
    if hash_text:
        page.text_hash = text_hash(page.title, raw)
    return page


def text_hash(title: str, text: str) -> str:
    """What a revisit compares (docs/revisits.md): XXH3-64 of the title and the text, 16 hex
    digits. Not a cryptographic hash: a page's own server can make its change look like none
    anyway (with a 304); what matters is that no accidental change goes unseen (odds 2^-64).

    The strings are hashed as UTF-16: CPython encodes a non-ASCII string to UTF-16 2-3x as fast
    as to UTF-8, and the encoding, not the hash, is most of the cost."""
    head = title.encode("utf-16-le", "surrogatepass")
    h = xxhash.xxh3_64(len(head).to_bytes(8, "little"))  # where the title ends
    h.update(head)
    h.update(text.encode("utf-16-le", "surrogatepass"))
    return h.hexdigest()


def _head_nodes(tree: LexborHTMLParser) -> dict[str, LexborNode]:
    """The first ``title``, ``base[href]`` and ``meta`` by name, keyed "title", "base",
    "meta:<name>" (lower case): one walk of the tree instead of one per selector."""
    found: dict[str, LexborNode] = {}
    for node in tree.css("title, base[href], meta[name]"):
        tag = node.tag
        if tag == "title" or tag == "base":
            key = tag
        else:
            key = f"meta:{(node.attributes.get('name') or '').lower()}"
        if key not in found:
            found[key] = node
    return found
