"""The docs queue: parsed pages waiting for the summarizer, leased like frontier URLs.

The crawler fills it inside its settle script; summarizer workers claim, renew, settle and reap.
Outcome equation: ``queued = summarized + failed + pending`` (pending = waiting + in flight).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from common.deadletters import REQUEUE_BATCH, Requeued, requeue_all
from common.keys import CrawlKeys, shard_of
from common.protocol import DOC_OP_FIELDS, DocKind, DocResult
from common.scripts import ScriptRunner
from common.shards import OneShard, ShardSet
from common.store import hash_items, translate_errors

__all__ = [
    "DocKind",
    "DocLease",
    "DocOp",
    "DocResult",
    "DocsQueue",
    "DocsShard",
    "DocsStats",
]


@dataclass(frozen=True, slots=True)
class DocLease:
    fp: str
    attempt: int  # 1 on the first claim
    payload: str  # the crawler's Doc JSON


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

    def args(self) -> list[str]:
        """The op's ARGV group, in common.protocol.DOC_OP_FIELDS order."""
        values = {
            "kind": str(self.kind),
            "fp": self.fp,
            "reason": self.reason,
            "record": self.record,
            "model": self.model,
            "prompt_tokens": str(self.prompt_tokens),
            "completion_tokens": str(self.completion_tokens),
            "cost_micro_usd": str(self.cost_micro_usd),
            "attempt": str(self.attempt),
        }
        return [values[name] for name in DOC_OP_FIELDS]


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


class DocsShard(OneShard):
    """Typed access to one shard of a crawl's docs queue (all of it in a one-shard crawl);
    ``clock`` (ms) replaces the server clock."""

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

    async def requeue(
        self, reason: str | None = None, domain: str | None = None, batch: int = REQUEUE_BATCH
    ) -> Requeued:
        """Put this shard's dead docs (those of ``reason`` and ``domain``, if given) that kept
        their text back in the queue with fresh attempts, ``batch`` entries per script call
        (common/lua/docs_requeue.lua)."""
        return await requeue_all(
            lambda limit: self._run.rows("docs_requeue", [reason or "", domain or "", limit]),
            batch,
        )


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
        self.keys = keys.crawl_level
        runner = scripts or ScriptRunner(redis)
        self._set: ShardSet[DocsShard] = ShardSet(
            redis, keys, lambda k: DocsShard(redis, k, runner, clock=clock)
        )

    async def shards(self) -> list[DocsShard]:
        """The crawl's shards (one while the crawl has no spec yet)."""
        return await self._set.get()

    async def sharded(self) -> bool:
        return len(await self.shards()) > 1

    async def claim(self, worker: str, n: int, lease_s: float) -> list[DocLease]:
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].claim(worker, n, lease_s)

        async def one(shard: DocsShard, m: int) -> tuple[list[DocLease], float | None, bool]:
            return await shard.claim(worker, m, lease_s), None, False

        leases, _, _ = await self._set.claim(n, one, lambda lease: lease.fp)
        return leases

    async def settle(self, worker: str, ops: Sequence[DocOp]) -> list[DocResult]:
        return await self._set.routed(
            [op.fp for op in ops],
            lambda shard, idx: shard.settle(worker, [ops[i] for i in idx]),
            DocResult.STALE,
        )

    async def renew(self, worker: str, fps: Sequence[str], lease_s: float) -> int:
        return await self._set.renew(fps, lambda shard, part: shard.renew(worker, part, lease_s))

    async def reap(self, limit: int = 1000, *, every_lease: bool = False) -> tuple[int, int]:
        """Return expired leases to the queue; (requeued, failed). ``every_lease``: expired or
        not, for a store whose lease holders are all known dead."""
        answers = await self._set.each(lambda shard: shard.reap(limit, every_lease=every_lease))
        return sum(a[0] for a in answers), sum(a[1] for a in answers)

    async def stats(self) -> DocsStats:
        answers = await self._set.each(lambda shard: shard.stats())
        if len(answers) == 1:
            return answers[0]
        counts: Counter[str] = Counter()
        for a in answers:
            counts.update(a.counts)
        return DocsStats(
            sum(a.waiting for a in answers),
            sum(a.in_flight for a in answers),
            sum(a.dead for a in answers),
            dict(counts),
        )

    async def held(self, holder: str, fps: Sequence[str]) -> list[DocLease]:
        """The leases of ``fps`` that ``holder`` holds, from every shard (DocsShard.held)."""
        answers = await self._set.each(lambda shard: shard.held(holder, fps))
        return [lease for part in answers for lease in part]

    async def summary_records(self) -> AsyncIterator[tuple[str, str]]:
        """Every (fingerprint, summary record JSON), in no particular order."""
        for shard in await self.shards():
            async for item in shard.summary_records():
                yield item

    async def requeue(
        self, reason: str | None = None, domain: str | None = None, batch: int = REQUEUE_BATCH
    ) -> Requeued:
        """Put the dead docs (those of ``reason`` and of ``domain``, their URL's host[:port],
        if given: then only its shard is asked) back in the queue with fresh attempts; the
        docs' equation holds throughout. Dead docs that kept no text stay dead, counted in
        ``kept_no_text`` (see common/lua/docs_requeue.lua)."""
        shards = await self.shards()
        if domain:
            shard = shards[shard_of(domain, len(shards))]
            return await shard.requeue(reason, domain, batch)
        return Requeued.total(
            await self._set.each(lambda shard: shard.requeue(reason, domain, batch))
        )
