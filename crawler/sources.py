"""Seed sources on the web: sitemaps, RSS/Atom feeds and robots.txt ``Sitemap:`` lines, all
fetched through the crawler's Fetcher.

Like every other fetch they go through ``Fetcher``: the SSRF guard (a sitemap or feed on a
private address needs ``--allow-private``, as a page does), the timeouts, the bounded inflating
of compressed bodies, the user agent. A sitemap, feed or robots.txt the user named (directly or
through a seed's site) that cannot be read stops the producer with one line naming it and why.
What a site names in turn, an index's child sitemaps and the sitemaps its robots.txt lists, is
the site's data: one that cannot be read is logged (``sitemap_skipped``) and the rest are read.

Sitemaps are parsed by crawler/sitemaps.py (entries with their ``<lastmod>``). Feeds are parsed
with ``feedparser`` (RSS 0.9x, 1.0 and 2.0, Atom 0.3 and 1.0, and the broken variants it
repairs): each entry's ``link`` (else its first ``alternate`` link) becomes a seed.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from urllib.parse import urljoin

from protego import Protego

from common.errors import ClassifiedError, ConfigError, InvalidUrl, PermanentError, RetryableError
from common.logging import get_logger
from common.settings import Settings
from common.urls import canonicalize, netloc_of
from crawler.feeds import FEED, parse_feed
from crawler.fetch import Fetcher
from crawler.produce import SeedLine
from crawler.robots import MAX_ROBOTS_BYTES
from crawler.sitemaps import SitemapEntry, parse_sitemap

__all__ = [
    "MAX_SITEMAP_DEPTH",
    "MAX_SOURCE_BYTES",
    "MAX_SOURCE_URLS",
    "feed_urls",
    "open_fetcher",
    "robots_sitemaps",
    "seed_origins",
    "sitemap_entries",
    "source_seed_lines",
]

log = get_logger(__name__)

MAX_SOURCE_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit, uncompressed
MAX_SOURCE_URLS = 1_000_000  # pages read from one --sitemap, its index's children included
MAX_SITEMAP_DEPTH = 3  # index -> index -> index -> sitemap; deeper children are not read


@contextlib.asynccontextmanager
async def open_fetcher(settings: Settings) -> AsyncIterator[Fetcher]:
    """A Fetcher for seed sources: the worker's fetch settings with the sitemap size limit."""
    fetch = settings.fetch.model_copy(update={"max_body_bytes": MAX_SOURCE_BYTES})
    async with Fetcher.open_session(fetch, allow_private=settings.allow_private) as session:
        yield Fetcher(fetch, session, allow_private=settings.allow_private)


def _unreadable(what: str, url: str, exc: ClassifiedError) -> ConfigError:
    return ConfigError(f"{what} {url}: {exc.reason} ({exc})")


async def _get(fetcher: Fetcher, url: str, what: str) -> bytes:
    try:
        result = await fetcher.fetch(url, accept_any_type=True)
    except (RetryableError, PermanentError) as exc:  # (SkipPage, blocked_address included)
        raise _unreadable(what, url, exc) from exc
    body = result.body
    if body[:2] == b"\x1f\x8b":  # a .xml.gz file (not a Content-Encoding: that is undone)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_SOURCE_BYTES)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise ConfigError(f"{what} {url}: broken gzip ({exc})") from exc
        if inflater.unconsumed_tail:
            log.warning("source_truncated", url=url, bytes=MAX_SOURCE_BYTES)
    elif result.truncated:
        log.warning("source_truncated", url=url, bytes=MAX_SOURCE_BYTES)
    return body


async def sitemap_entries(
    fetcher: Fetcher,
    url: str,
    *,
    max_urls: int = MAX_SOURCE_URLS,
    max_depth: int = MAX_SITEMAP_DEPTH,
    required: bool = True,
) -> list[SitemapEntry]:
    """The pages a sitemap lists, each with its lastmod; a sitemap index's children are read in
    their order, down to ``max_depth`` levels of indexes. ``url`` itself must be a readable
    sitemap (else ConfigError; with ``required=False`` it is skipped like a broken child)."""
    found: list[SitemapEntry] = []
    queue = deque([(url, 0)])
    seen = {url}
    while queue and len(found) < max_urls:
        current, depth = queue.popleft()
        try:
            body = await _get(fetcher, current, "sitemap")
            parsed = parse_sitemap(body, current, limit=max_urls - len(found))
            if not parsed.is_sitemap:
                root = f"; its root element is <{parsed.kind}>" if parsed.kind else ""
                raise ConfigError(
                    f"sitemap {current}: not a sitemap (no <urlset> or <sitemapindex>{root})"
                )
        except ConfigError as exc:
            if depth == 0 and required:
                raise
            log.warning("sitemap_skipped", url=current, listed_by=url, error=str(exc))
            continue
        found += parsed.pages
        children = [c.loc for c in parsed.sitemaps if c.loc not in seen]
        if children and depth >= max_depth:
            log.warning("sitemap_too_deep", url=current, children=len(children), depth=depth)
            continue
        seen.update(children)
        queue.extend((child, depth + 1) for child in children)
    log.info("sitemap_read", url=url, urls=len(found), sitemaps=len(seen))
    return found


async def feed_urls(fetcher: Fetcher, url: str) -> list[str]:
    """The entries' links of an RSS or Atom feed, in the feed's order."""
    feed = parse_feed(await _get(fetcher, url, "feed"))
    if feed.error is not None:
        raise ConfigError(f"feed {url}: not a feed with entries ({feed.error})")
    log.info("feed_read", url=url, format=feed.version or "?", urls=len(feed.links))
    return feed.links


def seed_origins(lines: Iterable[SeedLine]) -> list[str]:
    """``scheme://host[:port]`` of each seed, once each, in the seeds' order (a seed that is not
    a URL is skipped here: the producer reports it with its place)."""
    origins: dict[str, None] = {}
    for line in lines:
        try:
            canonical = canonicalize(line.text)
        except InvalidUrl:
            continue
        origins.setdefault(f"{canonical.split('://', 1)[0]}://{netloc_of(canonical)}")
    return list(origins)


async def robots_sitemaps(fetcher: Fetcher, origin: str) -> list[str]:
    """The sitemaps an origin's robots.txt lists (``Sitemap:`` lines, read by protego). No
    robots.txt (a 4xx) means none; a host that cannot be reached, or that the SSRF guard
    refuses, is a ConfigError, as for a sitemap."""
    url = f"{origin}/robots.txt"
    try:
        result = await fetcher.fetch(url, accept_any_type=True)
    except PermanentError as exc:
        if exc.reason == "blocked_address":
            raise _unreadable("robots.txt", url, exc) from exc
        log.info("robots_sitemaps", origin=origin, sitemaps=0, reason=exc.reason)
        return []
    except RetryableError as exc:
        raise _unreadable("robots.txt", url, exc) from exc
    parser = Protego.parse(result.text()[:MAX_ROBOTS_BYTES])
    found = list(dict.fromkeys(urljoin(url, s.strip()) for s in parser.sitemaps if s.strip()))
    log.info("robots_sitemaps", origin=origin, sitemaps=len(found), reason="listed")
    return found


async def source_seed_lines(
    settings: Settings,
    sitemaps: Sequence[str],
    feeds: Sequence[str],
    *,
    robots_of: Sequence[SeedLine] = (),
) -> list[SeedLine]:
    """The seeds that ``--sitemap`` and ``--feed`` URLs list, and, for the sites of
    ``robots_of`` (``--sitemaps-from-robots``), the sitemaps their robots.txt lists. Each line
    names its source; a sitemap's carry their ``<lastmod>``."""
    lines: list[SeedLine] = []
    if not sitemaps and not feeds and not robots_of:
        return lines
    async with open_fetcher(settings) as fetcher:
        named = dict.fromkeys(sitemaps)
        listed: dict[str, None] = {}
        for origin in seed_origins(robots_of):
            listed.update(dict.fromkeys(await robots_sitemaps(fetcher, origin)))
        for url in [*named, *(u for u in listed if u not in named)]:
            found = await sitemap_entries(fetcher, url, required=url in named)
            source = f"sitemap {url}"
            lines += [SeedLine(source, i, e.loc, e.lastmod) for i, e in enumerate(found, 1)]
        for url in feeds:
            urls = await feed_urls(fetcher, url)
            lines += [SeedLine(f"feed {url}", i, u) for i, u in enumerate(urls, 1)]
            # ... and the feed itself, kept in the frontier like a page: read again at every
            # pass and on the crawl's revisit schedule (docs/revisits.md)
            lines.append(SeedLine("--feed", 0, url, kind=FEED))
    return lines
