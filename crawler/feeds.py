"""RSS and Atom feeds: their entries' links (feedparser), and feeds advertised by pages.

A feed is a change source: its items are admitted at depth 0 each time it is read (new ones
become pages, known ones are duplicates), and, kept for revisits like a page, it is read again
at every pass or on its schedule (docs/revisits.md). Reading runs feedparser, which is pure
Python: callers on the event loop run it in a thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import feedparser

__all__ = ["FEED", "FEED_TYPES", "Feed", "parse_feed"]

FEED = "feed"  # the kind (common.serde.UrlEntry.k) of a frontier entry that is a feed
# <link rel="alternate" type=...> values that advertise a feed (--follow-feeds)
FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml"})


@dataclass(slots=True)
class Feed:
    links: list[str] = field(default_factory=list)  # the entries' links, in the feed's order
    title: str = ""
    version: str = ""  # feedparser's name of the format ("rss20", "atom10" ...); "": none
    error: str | None = None  # why it is not a feed with entries, when it is not

    @property
    def items_hash(self) -> str:
        """What a revisit compares: the entries' links (a feed whose build date moved but
        whose items did not is unchanged)."""
        return hashlib.blake2b("\n".join(self.links).encode(), digest_size=8).hexdigest()


def parse_feed(body: bytes) -> Feed:
    """The entries' links of an RSS 0.9x/1.0/2.0 or Atom feed (each entry's ``link``, else its
    first ``alternate`` link)."""
    parsed = feedparser.parse(body)
    feed = Feed(
        title=str(parsed.get("feed", {}).get("title") or "")[:1000],
        version=str(parsed.get("version") or ""),
    )
    for entry in parsed.entries:
        link = entry.get("link") or next(
            (x.get("href") for x in entry.get("links", []) if x.get("rel") == "alternate"), None
        )
        if isinstance(link, str) and link.strip():
            feed.links.append(link.strip())
    if not feed.links and (parsed.get("bozo") or not feed.version):
        feed.error = str(parsed.get("bozo_exception") or "no RSS or Atom document")
    return feed
