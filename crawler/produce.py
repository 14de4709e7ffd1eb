"""Producing seeds: from arguments, files, stdin and sitemaps, into a crawl's frontier.

The first producer of a crawl writes its spec (scope, limits, politeness); later producers add
seeds to the same crawl and must not try to change the spec.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError, InvalidUrl
from common.logging import get_logger
from common.serde import doc_text_budget
from common.settings import Settings
from common.spec import CrawlSpec
from common.urls import DEFAULT_TRACKING_PARAMS, canonicalize, host_of
from crawler.admission import AdmitReport, Admitter
from crawler.proxies import configured_proxies

__all__ = [
    "ProduceReport",
    "SeedLine",
    "build_spec",
    "produce",
    "read_seed_lines",
]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SeedLine:
    source: str  # "argv", a file name, or "stdin"
    line: int
    text: str
    lastmod: float | None = None  # a sitemap's <lastmod> (epoch seconds), when it gave one
    kind: str | None = None  # crawler.feeds.FEED: a feed, read for its items (None: a page)


@dataclass(slots=True)
class ProduceReport:
    admitted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # "file:line: why" per bad seed

    def add(self, report: AdmitReport) -> None:
        self.admitted += len(report.admitted)
        for reason, n in report.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n


def read_seed_lines(args: Iterable[str], files: Iterable[str]) -> Iterator[SeedLine]:
    """Seeds from the command line, then each file (``-`` is stdin); ``#`` lines are comments."""
    for i, arg in enumerate(args, 1):
        yield SeedLine("argv", i, arg)
    for name in files:
        if name == "-":
            stream: Iterable[str] = sys.stdin
            label = "stdin"
        else:
            path = Path(name)
            if not path.is_file():
                raise ConfigError(f"seed file not found: {name}")
            stream = path.read_text(encoding="utf-8", errors="replace").splitlines()
            label = name
        for i, raw in enumerate(stream, 1):
            text = raw.strip()
            if text and not text.startswith("#"):
                yield SeedLine(label, i, text)


# Shards of a new crawl on a Redis Cluster: enough to spread over a few masters evenly.
AUTO_CLUSTER_SHARDS = 16


def build_spec(
    settings: Settings,
    seeds: list[str],
    *,
    allow_domains: list[str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    cluster: bool = False,
) -> CrawlSpec:
    """The spec for a new crawl from the settings' frontier section; allowed domains default to
    the seeds' hosts, and a doc carries what the summarizers' input budget can read. Unless
    the settings say, a crawl has one shard on a single Redis and AUTO_CLUSTER_SHARDS on a
    Redis Cluster (``cluster``), one then too when it caps its pages (--max-pages)."""
    shards = settings.frontier.shards
    if not shards:
        sharded = cluster and not settings.frontier.max_pages
        shards = AUTO_CLUSTER_SHARDS if sharded else 1
    domains = list(allow_domains or [])
    if not domains:
        for seed in seeds:
            try:
                host = host_of(canonicalize(seed))
            except InvalidUrl:
                continue
            if host not in domains:
                domains.append(host)
    return CrawlSpec(
        seeds=seeds[:1000],
        allowed_domains=domains,
        include=include or [],
        exclude=exclude or [],
        strip_params=list(DEFAULT_TRACKING_PARAMS),
        doc_max_chars=doc_text_budget(settings.llm.doc_tokens),
        shards=shards,
        proxies=[p.redacted for p in configured_proxies(settings.proxy)],
        **settings.frontier.spec_fields(),
    )


async def produce(
    admitter: Admitter, lines: Iterable[SeedLine], batch: int = 1000
) -> ProduceReport:
    """Admit seed lines at depth 0; a bad line is reported with its place, the rest go in."""
    report = ProduceReport()
    chunk: list[SeedLine] = []

    async def flush() -> None:
        lastmod = {s.text: s.lastmod for s in chunk if s.lastmod is not None}
        kinds = {s.text: s.kind for s in chunk if s.kind is not None}
        result = await admitter.admit(
            [s.text for s in chunk], depth=0, keep_invalid=True, lastmod=lastmod, kinds=kinds
        )
        report.add(result)
        bad = {raw for raw, _ in result.invalid}
        for seed in chunk:
            if seed.text in bad:
                why = next(w for raw, w in result.invalid if raw == seed.text)
                report.errors.append(f"{seed.source}:{seed.line}: {why}")
        chunk.clear()

    for line in lines:
        chunk.append(line)
        if len(chunk) >= batch:
            await flush()
    if chunk:
        await flush()
    return report
