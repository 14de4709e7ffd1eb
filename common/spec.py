"""The crawl spec: seeds, scope, limits and politeness defaults, written once to Redis.

The producer writes it; every worker reads it, so workers are stateless and any number of them,
on any host, can join a crawl knowing only its name.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from common.errors import ConfigError
from common.keys import MAX_SHARDS
from common.serde import DEFAULT_LLM_INPUT_TOKENS, decode_versioned, doc_text_budget
from common.sinks import SINK_REDIS
from common.urls import DEFAULT_TRACKING_PARAMS

__all__ = ["SPEC_VERSION", "CrawlSpec", "DomainPolicy", "decode_spec", "encode_spec"]

SPEC_VERSION = 1


class DomainPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-domain overrides of the politeness defaults (None keeps the default)."""

    rate: float | None = None
    burst: int | None = None
    per_domain_inflight: int | None = None


class CrawlSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything about a crawl that all of its workers must agree on."""

    seeds: list[str] = msgspec.field(default_factory=list)
    allowed_domains: list[str] = msgspec.field(default_factory=list)  # empty: any domain
    include: list[str] = msgspec.field(default_factory=list)  # regexes; empty: everything
    exclude: list[str] = msgspec.field(default_factory=list)
    strip_params: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_TRACKING_PARAMS))
    max_depth: int = -1  # -1: unlimited
    max_pages: int = 0  # 0: unlimited
    max_domain_pages: int = 0  # 0: unlimited
    rate: float = 2.0  # requests per second per domain, across all workers
    burst: int = 4
    per_domain_inflight: int = 4
    max_attempts: int = 3  # fetches of one URL (crawler deaths included) before it fails
    max_doc_leases: int = 3  # summarizer deaths holding one doc before it fails
    lease_s: float = 120.0
    obey_robots: bool = True
    domains: dict[str, DomainPolicy] = msgspec.field(default_factory=dict)
    # The summarizer stage: whether pages become docs at all, the most docs that may wait for
    # (or be in) the summarizer before crawlers pause, and the most text one doc carries.
    summarize: bool = True
    max_docs_backlog: int = 5000
    doc_max_chars: int = doc_text_budget(DEFAULT_LLM_INPUT_TOKENS)
    # The seen set: "set" (exact) or "bloom" (scalable Bloom filters: error, first capacity).
    seen: Literal["set", "bloom"] = "set"
    seen_error: float = 1e-6
    seen_capacity: int = 1_000_000
    # Shards (common/keys.py): the frontier and docs queue in S parts, each in its own Redis
    # Cluster slot. Fixed when the crawl is created; crawls made before shards existed have 1.
    shards: int = 1
    # The proxy pool (crawler/proxies.py): URLs with any password replaced by "***", in pool
    # order; empty: fetches go direct. Workers bring the passwords themselves.
    proxies: list[str] = msgspec.field(default_factory=list)
    # Where page and summary records go (common/sinks.py): "redis" (the shards' hashes),
    # file:///folder or s3://bucket/prefix, normalized; export reads from the same place.
    sink: str = SINK_REDIS
    # Revisits (docs/revisits.md): whether done URLs keep their validators and text hash so a
    # later pass or a schedule can revisit them; the first interval between visits (0: at the
    # next pass only) and the bounds the adaptive interval moves within (0: after / 4 and
    # after x 16).
    revisit: bool = True
    revisit_after_s: float = 0.0
    revisit_min_s: float = 0.0
    revisit_max_s: float = 0.0
    # Whether the feeds pages advertise (<link rel="alternate" type="application/rss+xml">) are
    # followed: read for their items, and kept for revisits like pages (crawler/feeds.py).
    follow_feeds: bool = False
    v: int = SPEC_VERSION

    def __post_init__(self) -> None:
        # (field, lowest allowed, whether the lowest itself is allowed)
        floors = (
            ("rate", 0, False),
            ("burst", 1, True),
            ("per_domain_inflight", 1, True),
            ("max_attempts", 1, True),
            ("max_doc_leases", 1, True),
            ("lease_s", 0, False),
            ("max_depth", -1, True),
            ("max_pages", 0, True),
            ("max_domain_pages", 0, True),
            ("max_docs_backlog", 1, True),
            ("doc_max_chars", 100, True),
            ("seen_error", 0, False),
            ("seen_capacity", 1000, True),
            ("shards", 1, True),
            ("revisit_after_s", 0, True),
            ("revisit_min_s", 0, True),
            ("revisit_max_s", 0, True),
        )
        problems = [
            f"{name.replace('_', ' ')} must be {'>=' if inclusive else '>'} {low}"
            f" (got {getattr(self, name)})"
            for name, low, inclusive in floors
            if not (getattr(self, name) >= low if inclusive else getattr(self, name) > low)
        ]
        if self.shards > MAX_SHARDS:
            problems.append(f"shards must be <= {MAX_SHARDS} (got {self.shards})")
        if self.shards > 1 and self.max_pages:
            problems.append(
                "max pages needs a one-shard crawl (a crawl-wide cap cannot be checked in one"
                " atomic step across shards): use --shards 1, or --max-domain-pages"
            )
        if self.sink != SINK_REDIS and not self.sink.startswith(("file:///", "s3://")):
            problems.append(f"sink must be redis, file:///folder or s3://bucket (got {self.sink})")
        if (self.revisit_min_s or self.revisit_max_s) and not self.revisit_after_s:
            problems.append("revisit min/max need --revisit-after (the first interval)")
        if self.revisit_after_s and not self.revisit:
            problems.append("--revisit-after needs revisits (drop --no-revisit)")
        low, high = self.revisit_bounds_ms
        if low > high:
            problems.append(
                f"revisit min must be <= revisit max (got {low / 1000}s > {high / 1000}s)"
            )
        if self.seen_error >= 0.5:
            problems.append(f"seen error must be < 0.5 (got {self.seen_error})")
        if problems:
            raise ConfigError("invalid crawl spec: " + "; ".join(problems))

    @property
    def revisit_bounds_ms(self) -> tuple[int, int]:
        """(shortest, longest) interval between visits of one URL, in ms."""
        after = self.revisit_after_s
        low = self.revisit_min_s or after / 4
        high = self.revisit_max_s or after * 16
        return int(low * 1000), int(high * 1000)

    def next_interval_ms(self, previous_ms: int | None, changed: bool) -> int:
        """The interval until a URL's next visit: the spec's first interval for a new page;
        then half the previous one when the page changed, twice when it did not, within the
        bounds (StormCrawler's and Nutch's adaptive fetch schedule). 0: no schedule, the URL
        waits for the next pass."""
        if not self.revisit_after_s:
            return 0
        if previous_ms is None or previous_ms <= 0:
            return int(self.revisit_after_s * 1000)
        low, high = self.revisit_bounds_ms
        interval = previous_ms // 2 if changed else previous_ms * 2
        return max(low, min(high, interval))

    def lua_fields(self) -> dict[str, str]:
        """The fields the Lua scripts read from the spec hash."""
        return {
            "rate": repr(float(self.rate)),
            "burst": str(self.burst),
            "per_domain_inflight": str(self.per_domain_inflight),
            "max_attempts": str(self.max_attempts),
            "max_doc_leases": str(self.max_doc_leases),
            "lease_ms": str(int(self.lease_s * 1000)),
            "max_depth": str(self.max_depth),
            "max_pages": str(self.max_pages),
            "max_domain_pages": str(self.max_domain_pages),
            "summarize": "1" if self.summarize else "0",
            "max_docs_backlog": str(self.max_docs_backlog),
            "seen": self.seen,
            "seen_error": repr(float(self.seen_error)),
            "seen_capacity": str(self.seen_capacity),
            "shards": str(self.shards),
        }

    def for_shard(self) -> CrawlSpec:
        """The spec one shard's scripts enforce: the crawl-wide bounds (docs backlog, Bloom
        capacity) split evenly over the shards; per-domain limits are whole (a domain lives in
        one shard)."""
        if self.shards <= 1:
            return self
        return msgspec.structs.replace(
            self,
            max_docs_backlog=-(-self.max_docs_backlog // self.shards),
            seen_capacity=max(1000, -(-self.seen_capacity // self.shards)),
        )


def encode_spec(spec: CrawlSpec) -> str:
    return msgspec.json.encode(spec).decode()


_spec_decoder = msgspec.json.Decoder(CrawlSpec)


def decode_spec(raw: str | bytes) -> CrawlSpec:
    return decode_versioned(_spec_decoder, raw, "crawl spec", SPEC_VERSION)
