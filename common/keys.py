"""Every Redis key name of a crawl, built in one place.

All keys of one crawl share the prefix ``distcrawl:{<crawl>}:``. The braces are a Redis
Cluster hash tag: every key of a crawl hashes to one slot, so one crawl's Lua scripts touch
one node, and several crawls can share a Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import ConfigError

__all__ = ["CrawlKeys", "validate_crawl_name"]

_CRAWL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_crawl_name(name: str) -> str:
    """Return ``name`` if it can be a crawl name (it becomes part of every key), else raise."""
    if not _CRAWL_NAME.match(name):
        raise ConfigError(f"invalid crawl name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


@dataclass(frozen=True, slots=True)
class CrawlKeys:
    """The key names of one crawl. Domain-specific keys are methods taking the domain."""

    crawl: str

    def __post_init__(self) -> None:
        validate_crawl_name(self.crawl)

    @property
    def prefix(self) -> str:
        return f"distcrawl:{{{self.crawl}}}:"

    # The frontier. The Lua scripts build the same names from the prefix (common/lua/prelude.lua);
    # tests/test_keys.py checks that the two agree.
    @property
    def spec(self) -> str:
        return self.prefix + "spec"

    @property
    def seen(self) -> str:
        return self.prefix + "seen"

    @property
    def seen_bloom(self) -> str:
        """The Bloom seen filters' meta hash (``--seen bloom``); bits in bloom_chunk keys."""
        return self.prefix + "seen-bloom"

    def bloom_chunk(self, filter_index: int, chunk: int) -> str:
        """One string of a Bloom filter's bits (common/lua/lib_seen.lua)."""
        return f"{self.seen_bloom}:{filter_index}:{chunk}"

    @property
    def ready(self) -> str:
        return self.prefix + "ready"

    @property
    def delayed(self) -> str:
        return self.prefix + "delayed"

    @property
    def inflight(self) -> str:
        return self.prefix + "inflight"

    @property
    def leases(self) -> str:
        return self.prefix + "leases"

    @property
    def domains(self) -> str:
        return self.prefix + "domains"

    @property
    def counts(self) -> str:
        return self.prefix + "counts"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def pages(self) -> str:
        return self.prefix + "pages"

    @property
    def docs(self) -> str:
        """Parsed pages waiting for the summarizer (a leased queue like the frontier)."""
        return self.prefix + "docs"

    @property
    def docs_inflight(self) -> str:
        return self.prefix + "docs-inflight"

    @property
    def docs_leases(self) -> str:
        return self.prefix + "docs-leases"

    @property
    def docs_dead(self) -> str:
        return self.prefix + "docs-dead"

    @property
    def summaries(self) -> str:
        """The summaries sink: fp -> summary record JSON."""
        return self.prefix + "summaries"

    @property
    def summary_cache(self) -> str:
        """Content-hash cache: sha256(model, prompt, text) -> summary JSON."""
        return self.prefix + "summary-cache"

    def summary_lock(self, content_key: str) -> str:
        """The single-flight lock of one content key (short-lived, kept alive while computing)."""
        return self.summary_cache + ":lock:" + content_key

    @property
    def llm(self) -> str:
        """The shared LLM rate-limit buckets (requests and tokens per minute)."""
        return self.prefix + "llm"

    @property
    def workers(self) -> str:
        """Heartbeats: worker id -> JSON with role, host, pid and the time of its last beat."""
        return self.prefix + "workers"

    def robots(self, domain: str) -> str:
        return self.prefix + "robots:" + domain

    def robots_lock(self, domain: str) -> str:
        return self.prefix + "robots-lock:" + domain

    def queue(self, domain: str) -> str:
        return self.prefix + "q:" + domain

    def domain(self, domain: str) -> str:
        return self.prefix + "d:" + domain

    def all_fixed(self) -> list[str]:
        """The keys that do not depend on a domain (for the one-slot test and for cleanup)."""
        return [
            self.spec,
            self.seen,
            self.seen_bloom,
            self.ready,
            self.delayed,
            self.inflight,
            self.leases,
            self.domains,
            self.counts,
            self.dead,
            self.pages,
            self.docs,
            self.workers,
            self.docs_inflight,
            self.docs_leases,
            self.docs_dead,
            self.summaries,
            self.summary_cache,
            self.llm,
        ]
