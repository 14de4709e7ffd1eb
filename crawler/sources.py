"""Seed sources on the web: sitemaps and RSS/Atom feeds, fetched through the crawler's Fetcher.

Like every other fetch they go through ``Fetcher``: the SSRF guard (a sitemap or feed on a
private address needs ``--allow-private``, as a page does), the timeouts, the bounded inflating
of compressed bodies, the user agent. A sitemap or feed that cannot be read stops the producer
with one line naming it and why (it is the user's input, not a page of the crawl).

Feeds are parsed with ``feedparser`` (RSS 0.9x, 1.0 and 2.0, Atom 0.3 and 1.0, and the broken
variants it repairs): each entry's ``link`` (else its first ``alternate`` link) becomes a seed.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import zlib
from collections.abc import AsyncIterator, Sequence

import feedparser

from common.errors import ConfigError, PermanentError, RetryableError
from common.logging import get_logger
from common.settings import Settings
from crawler.classify import SkipPage
from crawler.fetch import Fetcher
from crawler.produce import SeedLine

__all__ = ["MAX_SOURCE_BYTES", "feed_urls", "open_fetcher", "sitemap_urls", "source_seed_lines"]

log = get_logger(__name__)

MAX_SOURCE_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit, uncompressed
_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>", re.I)


@contextlib.asynccontextmanager
async def open_fetcher(settings: Settings) -> AsyncIterator[Fetcher]:
    """A Fetcher for seed sources: the worker's fetch settings with the sitemap size limit."""
    fetch = settings.fetch.model_copy(update={"max_body_bytes": MAX_SOURCE_BYTES})
    async with Fetcher.open_session(fetch, allow_private=settings.allow_private) as session:
        yield Fetcher(fetch, session, allow_private=settings.allow_private)


async def _get(fetcher: Fetcher, url: str, what: str) -> bytes:
    try:
        result = await fetcher.fetch(url, accept_any_type=True)
    except (RetryableError, PermanentError, SkipPage) as exc:
        raise ConfigError(f"{what} {url}: {exc.reason} ({exc})") from exc
    body = result.body
    if body[:2] == b"\x1f\x8b":  # a .xml.gz file (not a Content-Encoding: that is undone)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_SOURCE_BYTES)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise ConfigError(f"{what} {url}: broken gzip ({exc})") from exc
    return body


async def sitemap_urls(
    fetcher: Fetcher, url: str, max_urls: int = 1_000_000, max_depth: int = 3
) -> list[str]:
    """Page URLs listed by a sitemap (following sitemap indexes up to ``max_depth``)."""
    found: list[str] = []
    queue = [(url, 0)]
    seen: set[str] = set()
    while queue and len(found) < max_urls:
        current, depth = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        body = await _get(fetcher, current, "sitemap")
        is_index = b"<sitemapindex" in body[:2048]
        for match in _LOC.finditer(body):
            loc = match.group(1).decode("utf-8", "replace").replace("&amp;", "&")
            if is_index and depth < max_depth:
                queue.append((loc, depth + 1))
            elif not is_index:
                found.append(loc)
    log.info("sitemap_read", url=url, urls=len(found))
    return found[:max_urls]


async def feed_urls(fetcher: Fetcher, url: str) -> list[str]:
    """The entries' links of an RSS or Atom feed, in the feed's order."""
    body = await _get(fetcher, url, "feed")
    parsed = feedparser.parse(body)
    links: list[str] = []
    for entry in parsed.entries:
        link = entry.get("link") or next(
            (x.get("href") for x in entry.get("links", []) if x.get("rel") == "alternate"), None
        )
        if isinstance(link, str) and link.strip():
            links.append(link.strip())
    if not links and (parsed.get("bozo") or not parsed.get("version")):
        why = parsed.get("bozo_exception") or "no RSS or Atom document"
        raise ConfigError(f"feed {url}: not a feed with entries ({why})")
    log.info("feed_read", url=url, format=parsed.get("version") or "?", urls=len(links))
    return links


async def source_seed_lines(
    settings: Settings, sitemaps: Sequence[str], feeds: Sequence[str]
) -> list[SeedLine]:
    """The seeds that ``--sitemap`` and ``--feed`` URLs list (each line names its source)."""
    lines: list[SeedLine] = []
    if not sitemaps and not feeds:
        return lines
    async with open_fetcher(settings) as fetcher:
        for url in sitemaps:
            found = await sitemap_urls(fetcher, url)
            lines += [SeedLine(f"sitemap {url}", i, u) for i, u in enumerate(found, 1)]
        for url in feeds:
            found = await feed_urls(fetcher, url)
            lines += [SeedLine(f"feed {url}", i, u) for i, u in enumerate(found, 1)]
    return lines
