"""Admission: turn raw links into canonical, in-scope, not-yet-seen frontier candidates.

This is the crawler's hot path: most links on a page were seen before. They are filtered
in-process first (a bounded cache of recently seen URLs, scope checks on plain strings) so that
only what is left of a page reaches Redis, in one batched admit call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Required, TypedDict, Unpack

from common.errors import InvalidUrl
from common.serde import UrlEntry, encode_url_entry
from common.spec import CrawlSpec
from common.urls import LinkResolver, ParamFilter, canonicalize, fingerprint, netloc_of
from crawler.frontier import AdmitCode, Candidate, Frontier
from crawler.scope import Scope

__all__ = ["AdmitReport", "Admitter", "Prepared", "RecentCache"]


class RecentCache:
    """A bounded map of recently judged URLs to the reason they need not be admitted again.

    The oldest entries are forgotten first (FIFO): forgetting only costs a Redis round trip.
    """

    __slots__ = ("_items", "_limit", "get")

    def __init__(self, limit: int) -> None:
        self._items: dict[str, str] = {}
        self._limit = limit
        # the dict's own method: one call per link on the hot path instead of two
        self.get: Callable[[str], str | None] = self._items.get

    def put(self, key: str, reason: str) -> None:
        items = self._items
        if key in items:
            return
        items[key] = reason
        if len(items) > self._limit:
            del items[next(iter(items))]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class AdmitReport:
    """What became of a batch of links."""

    admitted: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (raw, why) for seeds

    @property
    def considered(self) -> int:
        return len(self.admitted) + sum(self.rejected.values())


@dataclass(slots=True)
class Prepared:
    """Links of one page after the in-process filters, ready for one admit call."""

    report: AdmitReport = field(default_factory=AdmitReport)
    batch: dict[str, Candidate] = field(default_factory=dict)  # canonical URL -> candidate


class Found(TypedDict, total=False):
    """Where links were found: ``Admitter.prepare``'s keyword arguments."""

    depth: Required[int]
    base: str | None
    parent: str | None
    keep_invalid: bool
    lastmod: Mapping[str, float] | None
    kinds: Mapping[str, str] | None


class Admitter:
    """Canonicalizes, scopes and dedupes links, then admits the survivors in one call."""

    def __init__(self, frontier: Frontier, spec: CrawlSpec, cache_size: int = 200_000) -> None:
        self._frontier = frontier
        self._scope = Scope(spec.allowed_domains, spec.include, spec.exclude)
        self._params = ParamFilter(spec.strip_params)
        self._max_depth = spec.max_depth
        self._seen = RecentCache(cache_size)

    async def admit(self, links: Iterable[str], **found: Unpack[Found]) -> AdmitReport:
        """Admit ``links`` (see ``prepare`` for where they were found) in one script call."""
        prepared = self.prepare(links, **found)
        codes = await self._frontier.admit(
            list(prepared.batch.values()), dict(prepared.report.rejected)
        )
        return self.apply(prepared, codes)

    def prepare(
        self,
        links: Iterable[str],
        *,
        depth: int,
        base: str | None = None,
        parent: str | None = None,
        keep_invalid: bool = False,
        lastmod: Mapping[str, float] | None = None,
        kinds: Mapping[str, str] | None = None,
    ) -> Prepared:
        """The in-process half of admission (no I/O): canonicalize, scope, local dedupe.
        ``links`` were found at ``depth`` on the page ``base`` (None for seeds) whose URL is
        ``parent``; ``lastmod``: a sitemap's <lastmod> (epoch seconds) of some of them, by
        link text; ``kinds``: the kind of those that are not pages (crawler.feeds.FEED)."""
        prepared = Prepared()
        report, batch = prepared.report, prepared.batch
        rejected = report.rejected
        seen = self._seen
        if 0 <= self._max_depth < depth:
            for _ in links:
                rejected["max_depth"] += 1
            return prepared
        if base is None:
            params = self._params

            def resolve(href: str) -> str:
                return canonicalize(href, None, params)

        else:  # the page's base split and checked once, not once per link
            resolve = LinkResolver(base, self._params).canonicalize
        # (a URL with a sitemap's lastmod goes to the script even when known: it may be due)
        shortcut = not lastmod
        for raw in links:
            # Most links of a page are absolute ones judged before, written as their canonical
            # form. The cache holds only canonical URLs, and a canonical URL resolves to itself
            # against any base: a hit on the link as written needs no resolving.
            known = seen.get(raw) if shortcut else None
            if known is not None:
                rejected[known] += 1
                continue
            try:
                url = resolve(raw)
            except InvalidUrl as exc:
                rejected["invalid"] += 1
                if keep_invalid:
                    report.invalid.append((raw, str(exc)))
                continue
            modified = int(lastmod.get(raw, 0) * 1000) if lastmod else 0
            known = None if modified else seen.get(url)
            reason = known or ("duplicate" if url in batch else None)
            if reason is None:
                reason = self._scope.reject_reason(url)
                if reason is not None:
                    seen.put(url, reason)  # scope is fixed for the crawl: the verdict holds
            if reason is not None:
                rejected[reason] += 1
                continue
            kind = kinds.get(raw) if kinds else None
            payload = encode_url_entry(UrlEntry(u=url, d=depth, p=parent, k=kind))
            batch[url] = Candidate(netloc_of(url), fingerprint(url), depth, payload, modified)
        return prepared

    def apply(self, prepared: Prepared, codes: list[AdmitCode]) -> AdmitReport:
        """Fold the admit script's answers into the report and the local cache."""
        report = prepared.report
        for url, code in zip(prepared.batch, codes, strict=True):
            if code is AdmitCode.ADMITTED:
                report.admitted.append(url)
            else:
                report.rejected[code.name.lower()] += 1  # as admit.lua counts it
            if code in (AdmitCode.ADMITTED, AdmitCode.DUPLICATE):
                self._seen.put(url, "duplicate")
        return report
