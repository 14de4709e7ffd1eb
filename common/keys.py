"""Every Redis key name of a crawl, built in one place.

A crawl's own keys (spec, heartbeats, LLM buckets, robots.txt) share the
prefix ``distcrawl:{<crawl>}:``. A crawl of S > 1 shards keeps its frontier and docs queue in
S parts, shard k under ``distcrawl:{<crawl>:<k>-<n>}:`` (``shard_tag``; a domain's queue,
state and pages live in shard ``shard_of(domain, S)``); a one-shard crawl keeps them under the
crawl's prefix. The
braces are a Redis Cluster hash tag: every key of one prefix hashes to one slot, so each Lua
script call touches one node, the shards of a crawl spread over a cluster's masters, and
several crawls can share a Redis. See docs/frontier.md.

The summary cache belongs to no crawl: every crawl on one Redis shares it (``summary_cache_key``),
each entry under a hash tag of its own content key's first characters, so the entries spread
over a cluster's masters.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from common.errors import ConfigError

__all__ = [
    "FIXED_KEYS",
    "MAX_SHARDS",
    "PART_KEYS",
    "SUMMARY_CACHE_MATCH",
    "CrawlKeys",
    "shard_of",
    "summary_cache_key",
    "summary_lock_key",
    "validate_crawl_name",
]

MAX_SHARDS = 1024

_CRAWL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_crawl_name(name: str) -> str:
    """Return ``name`` if it can be a crawl name (it becomes part of every key), else raise."""
    if not _CRAWL_NAME.match(name):
        raise ConfigError(f"invalid crawl name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


# The one declaration of the key layout: each fixed key's name after the crawl prefix, and the
# prefix of each key built from one part (a domain, a content key). CrawlKeys builds Python's
# names from these tables and common/scripts.py generates the Lua names from them (K_SPEC,
# queue_key(d) ...), so a key is never spelled twice. tests/test_keys.py checks both.
FIXED_KEYS: dict[str, str] = {
    "spec": "spec",
    "seen": "seen",
    "seen_bloom": "seen-bloom",
    "ready": "ready",
    "delayed": "delayed",
    "inflight": "inflight",
    "leases": "leases",
    "domains": "domains",
    "counts": "counts",
    "dead": "dead",
    "pages": "pages",
    "docs": "docs",
    "docs_inflight": "docs-inflight",
    "docs_leases": "docs-leases",
    "docs_dead": "docs-dead",
    "summaries": "summaries",
    "llm": "llm",
    "workers": "workers",
    "proxies": "proxies",
    "llm_batches": "llm-batches",
    "llm_batch_pollers": "llm-batch-pollers",
    "revisit": "revisit",
    "due": "due",
}
PART_KEYS: dict[str, str] = {
    "queue": "q:",
    "domain": "d:",
    "robots": "robots:",
    "robots_lock": "robots-lock:",
}


# The summary cache, shared by every crawl on one Redis (summarizer/cache.py). An entry is one
# string, ``distcrawl:summary-cache:{<tag>}:<content key>`` (tag: the content key's first
# SUMMARY_CACHE_TAG_CHARS hex characters: 65,536 tags over the 16,384 cluster slots, so entries
# spread evenly over the masters), and its single-flight lock is the same name + ":lock", in the
# same slot, so one script reads the entry and takes the lock.
_SUMMARY_CACHE = "distcrawl:summary-cache:"
SUMMARY_CACHE_TAG_CHARS = 4
SUMMARY_CACHE_MATCH = _SUMMARY_CACHE + "*"
"""A SCAN pattern that matches every entry and lock of the summary cache (and nothing else)."""


def summary_cache_key(content_key: str) -> str:
    """The shared cache entry of one content key (summarizer.cache.content_key)."""
    return f"{_SUMMARY_CACHE}{{{content_key[:SUMMARY_CACHE_TAG_CHARS]}}}:{content_key}"


def summary_lock_key(content_key: str) -> str:
    """The single-flight lock of one content key (short-lived, kept alive while computing)."""
    return summary_cache_key(content_key) + ":lock"


def shard_of(domain: str, shards: int) -> int:
    """The shard that holds ``domain`` (its queue, state, seen URLs, pages and docs)."""
    return zlib.crc32(domain.encode()) % shards if shards > 1 else 0


@cache
def shard_tag(crawl: str, shard: int, shards: int) -> str:
    """The hash tag of one shard: ``<crawl>:<shard>-<n>`` with the smallest n that puts it in
    the shard's share of the 16,384 cluster slots, so a crawl's shards spread evenly over the
    slot space (and so over a cluster's masters, which own contiguous ranges of it) instead of
    wherever their names happen to hash."""
    low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    for n in range(1_000_000):
        tag = f"{crawl}:{shard}-{n}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    raise AssertionError("unreachable: crc16 covers every slot range")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class CrawlKeys:
    """The key names of one crawl (``shard`` None), or of one shard of it. Domain-specific
    keys are methods taking the domain."""

    crawl: str
    shard: int | None = None  # None: the crawl's own prefix (also shard 0 of a 1-shard crawl)
    shards: int = 1  # how many the crawl has (with ``shard``)

    def __post_init__(self) -> None:
        validate_crawl_name(self.crawl)

    @property
    def prefix(self) -> str:
        if self.shard is None:
            return f"distcrawl:{{{self.crawl}}}:"
        return f"distcrawl:{{{shard_tag(self.crawl, self.shard, self.shards)}}}:"

    @property
    def crawl_level(self) -> CrawlKeys:
        return replace(self, shard=None, shards=1)

    def shard_keys(self, count: int) -> list[CrawlKeys]:
        """The keys of each shard of a crawl of ``count`` shards (one: the crawl's own)."""
        if count <= 1:
            return [self.crawl_level]
        return [replace(self, shard=k, shards=count) for k in range(count)]

    @property
    def spec(self) -> str:
        return self.prefix + FIXED_KEYS["spec"]

    @property
    def seen(self) -> str:
        return self.prefix + FIXED_KEYS["seen"]

    @property
    def seen_bloom(self) -> str:
        """The Bloom seen filters' meta hash (``--seen bloom``); bits in bloom_chunk keys."""
        return self.prefix + FIXED_KEYS["seen_bloom"]

    def bloom_chunk(self, filter_index: int, chunk: int) -> str:
        """One string of a Bloom filter's bits (common/lua/lib_seen.lua)."""
        return f"{self.seen_bloom}:{filter_index}:{chunk}"

    @property
    def ready(self) -> str:
        return self.prefix + FIXED_KEYS["ready"]

    @property
    def delayed(self) -> str:
        return self.prefix + FIXED_KEYS["delayed"]

    @property
    def inflight(self) -> str:
        return self.prefix + FIXED_KEYS["inflight"]

    @property
    def leases(self) -> str:
        return self.prefix + FIXED_KEYS["leases"]

    @property
    def domains(self) -> str:
        return self.prefix + FIXED_KEYS["domains"]

    @property
    def counts(self) -> str:
        return self.prefix + FIXED_KEYS["counts"]

    @property
    def dead(self) -> str:
        return self.prefix + FIXED_KEYS["dead"]

    @property
    def pages(self) -> str:
        return self.prefix + FIXED_KEYS["pages"]

    @property
    def docs(self) -> str:
        """Parsed pages waiting for the summarizer (a leased queue like the frontier)."""
        return self.prefix + FIXED_KEYS["docs"]

    @property
    def docs_inflight(self) -> str:
        return self.prefix + FIXED_KEYS["docs_inflight"]

    @property
    def docs_leases(self) -> str:
        return self.prefix + FIXED_KEYS["docs_leases"]

    @property
    def docs_dead(self) -> str:
        return self.prefix + FIXED_KEYS["docs_dead"]

    @property
    def summaries(self) -> str:
        """The summaries sink: fp -> summary record JSON."""
        return self.prefix + FIXED_KEYS["summaries"]

    @property
    def llm(self) -> str:
        """The shared LLM rate-limit buckets (requests and tokens per minute)."""
        return self.prefix + FIXED_KEYS["llm"]

    @property
    def workers(self) -> str:
        """Heartbeats: worker id -> JSON with role, host, pid and the time of its last beat."""
        return self.prefix + FIXED_KEYS["workers"]

    @property
    def proxies(self) -> str:
        """The proxy pool's shared health: proxy name -> "failures until_ms" (crawl-wide)."""
        return self.prefix + FIXED_KEYS["proxies"]

    @property
    def llm_batches(self) -> str:
        """Batch API jobs in flight (crawl-wide): job id -> record JSON (summarizer.batchjob)."""
        return self.prefix + FIXED_KEYS["llm_batches"]

    @property
    def llm_batch_pollers(self) -> str:
        """Who polls each batch job: job id -> "worker \t hold-until ms" (llm_batches.lua)."""
        return self.prefix + FIXED_KEYS["llm_batch_pollers"]

    @property
    def revisit(self) -> str:
        """Revisit state of every done URL: fp -> "domain \t interval_ms \t fetched_ms \t
        held_pass \t payload" (docs/revisits.md)."""
        return self.prefix + FIXED_KEYS["revisit"]

    @property
    def due(self) -> str:
        """URLs asleep until their next visit: fp scored by when it is due (+inf: next pass)."""
        return self.prefix + FIXED_KEYS["due"]

    def robots(self, domain: str) -> str:
        return self.prefix + PART_KEYS["robots"] + domain

    def robots_lock(self, domain: str) -> str:
        return self.prefix + PART_KEYS["robots_lock"] + domain

    def queue(self, domain: str) -> str:
        return self.prefix + PART_KEYS["queue"] + domain

    def domain(self, domain: str) -> str:
        return self.prefix + PART_KEYS["domain"] + domain

    def all_fixed(self) -> list[str]:
        """The keys that do not depend on a domain (for the one-slot test and for cleanup)."""
        return [self.prefix + suffix for suffix in FIXED_KEYS.values()]
