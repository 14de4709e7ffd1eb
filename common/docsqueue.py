"""The docs queue: parsed pages waiting for the summarizer, leased like frontier URLs.

The crawler fills it inside its settle script; summarizer workers claim, renew, settle and reap.
Outcome equation: ``queued = summarized + failed + pending`` (pending = waiting + in flight).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner
from common.shards import LeaseRoutes, ShardSchedule, gather_shards, read_shard_count
from common.store import hash_items, translate_errors

__all__ = [
    "CacheWrite",
    "DocKind",
    "DocLease",
    "DocOp",
    "DocResult",
    "DocsQueue",
    "DocsShard",
    "DocsStats",
]


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


class DocsShard:
    """Typed access to one shard of a crawl's docs queue (all of it in a one-shard crawl);
    ``clock`` (ms) replaces the server clock."""

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

    async def held(self, holder: str, fps: Sequence[str]) -> list[DocLease]:
        """The leases of ``fps`` that ``holder`` holds in this shard (read only: a batch job's
        poller reads its docs' text from their leases, "holder \t fp \t attempts \t doc")."""
        if not fps:
            return []
        async with translate_errors():
            raw = await self._redis.hmget(self.keys.docs_leases, list(fps))
        leases = []
        for value in raw:
            if value is None:
                continue
            who, fp, attempts, payload = str(value).split("\t", 3)
            if who == holder:
                leases.append(DocLease(fp, int(attempts) + 1, payload))
        return leases


class DocsQueue:
    """Typed access to one crawl's docs queue, over its shards (a doc lives in its page's
    shard; see crawler.frontier.Frontier for the pattern). ``clock`` (ms) replaces the server
    clock."""

    def __init__(
        self,
        redis: Redis,
        keys: CrawlKeys,
        scripts: ScriptRunner | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._redis = redis
        self.keys = keys.crawl_level
        self._scripts = scripts or ScriptRunner(redis)
        self._clock = clock
        self._shards: list[DocsShard] | None = None
        self._schedule = ShardSchedule(1)
        self._routes = LeaseRoutes()

    async def shards(self) -> list[DocsShard]:
        """The crawl's shards (one while the crawl has no spec yet)."""
        if self._shards is None:
            count = await read_shard_count(self._redis, self.keys)
            shards = [
                DocsShard(self._redis, k, self._scripts, clock=self._clock)
                for k in self.keys.shard_keys(count or 1)
            ]
            if count is None:
                return shards
            self._shards, self._schedule = shards, ShardSchedule(len(shards))
        return self._shards

    async def sharded(self) -> bool:
        return len(await self.shards()) > 1

    async def claim(self, worker: str, n: int, lease_s: float) -> list[DocLease]:
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].claim(worker, n, lease_s)
        leases: list[DocLease] = []
        for k in self._schedule.due():
            got = await shards[k].claim(worker, n - len(leases), lease_s)
            self._schedule.note(k, bool(got))
            for lease in got:
                self._routes.hold(lease.fp, k)
            leases += got
            if len(leases) >= n:
                break
        return leases

    async def settle(self, worker: str, ops: Sequence[DocOp]) -> list[DocResult]:
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].settle(worker, ops)
        by_fp = {op.fp: i for i, op in enumerate(ops)}
        known, unknown = self._routes.split(by_fp, len(shards))
        answers = await gather_shards(
            {
                k: shards[k].settle(worker, [ops[by_fp[fp]] for fp in fps])
                for k, fps in known.items()
            }
        )
        results = [DocResult.STALE] * len(ops)
        for k, fps in known.items():
            for fp, result in zip(fps, answers[k], strict=True):
                results[by_fp[fp]] = result
                self._routes.drop(fp)
        if unknown:  # not leased through this object: only the holding shard can settle it
            lost = [ops[by_fp[fp]] for fp in unknown]
            everywhere = await gather_shards(
                {k: s.settle(worker, lost) for k, s in enumerate(shards)}
            )
            for j, fp in enumerate(unknown):
                found = [a[j] for a in everywhere.values() if a[j] is not DocResult.STALE]
                results[by_fp[fp]] = found[0] if found else DocResult.STALE
        return results

    async def renew(self, worker: str, fps: Sequence[str], lease_s: float) -> int:
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].renew(worker, fps, lease_s)
        known, unknown = self._routes.split(fps, len(shards))
        calls = {k: shards[k].renew(worker, part, lease_s) for k, part in known.items()}
        if unknown:
            calls |= {
                len(shards) + k: s.renew(worker, unknown, lease_s) for k, s in enumerate(shards)
            }
        return sum((await gather_shards(calls)).values())

    async def reap(self, limit: int = 1000, *, every_lease: bool = False) -> tuple[int, int]:
        """Return expired leases to the queue; (requeued, failed). ``every_lease``: expired or
        not, for a store whose lease holders are all known dead."""
        shards = await self.shards()
        answers = await gather_shards(
            {k: s.reap(limit, every_lease=every_lease) for k, s in enumerate(shards)}
        )
        return sum(a[0] for a in answers.values()), sum(a[1] for a in answers.values())

    async def stats(self) -> DocsStats:
        shards = await self.shards()
        answers = await gather_shards({k: s.stats() for k, s in enumerate(shards)})
        if len(answers) == 1:
            return answers[0]
        counts: Counter[str] = Counter()
        for a in answers.values():
            counts.update(a.counts)
        return DocsStats(
            sum(a.waiting for a in answers.values()),
            sum(a.in_flight for a in answers.values()),
            sum(a.dead for a in answers.values()),
            dict(counts),
        )

    async def held(self, holder: str, fps: Sequence[str]) -> list[DocLease]:
        """The leases of ``fps`` that ``holder`` holds, from every shard (DocsShard.held)."""
        shards = await self.shards()
        answers = await gather_shards({k: s.held(holder, fps) for k, s in enumerate(shards)})
        return [lease for k in sorted(answers) for lease in answers[k]]

    async def summary_records(self) -> AsyncIterator[tuple[str, str]]:
        """Every (fingerprint, summary record JSON), in no particular order."""
        for shard in await self.shards():
            async for item in shard.summary_records():
                yield item
