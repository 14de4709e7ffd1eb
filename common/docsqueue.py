"""The docs queue: parsed pages waiting for the summarizer, leased like frontier URLs.

The crawler fills it inside its settle script; summarizer workers claim, renew, settle and reap.
Outcome equation: ``queued = summarized + failed + pending`` (pending = waiting + in flight).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner
from common.store import hash_items

__all__ = ["CacheWrite", "DocKind", "DocLease", "DocOp", "DocResult", "DocsQueue", "DocsStats"]


class DocKind(enum.StrEnum):
    """How a doc's lease ends (docs_settle.lua knows exactly these)."""

    SUMMARIZED = "summarized"
    FAILED = "failed"
    RELEASE = "release"  # back to the head of the queue, untouched (shutdown)


class DocResult(enum.IntEnum):
    STALE = 0
    SETTLED = 1
    REQUEUED = 2


@dataclass(frozen=True, slots=True)
class DocLease:
    fp: str
    attempt: int  # 1 on the first claim
    payload: str  # the crawler's Doc JSON


@dataclass(frozen=True, slots=True)
class CacheWrite:
    """A computed summary to store under its content key (summarizer.cache), and whether to
    drop the key's lock (the computing caller took it)."""

    key: str
    summary: str
    unlock: bool


@dataclass(frozen=True, slots=True)
class DocOp:
    kind: DocKind
    fp: str
    reason: str = ""
    record: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micro_usd: int = 0
    attempt: int = 0  # the lease's attempt; 0: any attempt of this worker's lease
    # A summary computed for the content cache, stored in the same step (even when the lease
    # turns out stale: the summary is good for the next doc with the same text).
    cache: CacheWrite | None = None

    def args(self) -> list[str]:
        cache = self.cache
        return [
            self.kind,
            self.fp,
            self.reason,
            self.record,
            self.model,
            str(self.prompt_tokens),
            str(self.completion_tokens),
            str(self.cost_micro_usd),
            str(self.attempt),
            cache.key if cache else "",
            cache.summary if cache else "",
            "1" if cache and cache.unlock else "",
        ]


@dataclass(frozen=True, slots=True)
class DocsStats:
    waiting: int
    in_flight: int
    dead: int
    counts: dict[str, int]

    @property
    def queued(self) -> int:
        return self.counts.get("docs_queued", 0)

    @property
    def summarized(self) -> int:
        return self.counts.get("docs_summarized", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("docs_failed", 0)

    @property
    def pending(self) -> int:
        return self.waiting + self.in_flight

    @property
    def balanced(self) -> bool:
        return self.queued == self.summarized + self.failed + self.pending

    def per_model(self, kind: str) -> dict[str, int]:
        prefix = f"llm_{kind}:"
        return {k[len(prefix) :]: v for k, v in self.counts.items() if k.startswith(prefix)}


class DocsQueue:
    """Typed access to one crawl's docs queue; ``clock`` (ms) replaces the server clock."""

    def __init__(
        self,
        redis: Redis,
        keys: CrawlKeys,
        scripts: ScriptRunner | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._redis = redis
        self.keys = keys
        self._run = CrawlScripts(scripts or ScriptRunner(redis), keys, clock)

    async def claim(self, worker: str, n: int, lease_s: float) -> list[DocLease]:
        res = await self._run.rows("docs_claim", [n, worker, int(lease_s * 1000)])
        leases = []
        for entry in res[1:]:
            fp, attempts, payload = str(entry).split("\t", 2)
            leases.append(DocLease(fp, int(attempts) + 1, payload))
        return leases

    async def settle(self, worker: str, ops: Sequence[DocOp]) -> list[DocResult]:
        if not ops:
            return []
        args: list[str | int] = [worker]
        for op in ops:
            args += op.args()
        res = await self._run.rows("docs_settle", args)
        return [DocResult(int(r)) for r in res]

    async def renew(self, worker: str, fps: Sequence[str], lease_s: float) -> int:
        if not fps:
            return 0
        return int(str(await self._run("docs_renew", [worker, int(lease_s * 1000), *fps])))

    async def reap(self, limit: int = 1000, *, every_lease: bool = False) -> tuple[int, int]:
        """Return expired leases to the queue; (requeued, failed). ``every_lease``: expired or
        not, for a store whose lease holders are all known dead."""
        res = await self._run.rows("docs_reap", [limit, "+inf"] if every_lease else [limit])
        return int(res[0]), int(res[1])

    async def stats(self) -> DocsStats:
        res = await self._run.rows("docs_stats", [])
        flat = res[3]
        counts = {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return DocsStats(int(res[0]), int(res[1]), int(res[2]), counts)

    def summary_records(self) -> AsyncIterator[tuple[str, str]]:
        """Every (fingerprint, summary record JSON), in no particular order."""
        return hash_items(self._redis, self.keys.summaries)
