"""The crawl frontier in Redis: per-domain queues, a shared token bucket, leases.

One class owns the frontier's keys and scripts; callers get typed async methods. Every method
is one atomic script call. See docs/frontier.md for the data layout and the invariants.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from common.deadletters import REQUEUE_BATCH, Requeued, requeue_all
from common.errors import PermanentError
from common.keys import CrawlKeys, shard_of
from common.protocol import (
    ADMIT_FIELDS,
    SETTLE_FIELDS,
    AdmitCode,
    ClaimWait,
    Outcome,
    SettleKind,
    SettleResult,
)
from common.scripts import CrawlScripts, ScriptRunner
from common.serde import UrlEntry, decode_url_entry
from common.shards import OneShard, ShardSet, gather_shards, group_by
from common.spec import CrawlSpec, decode_spec, encode_spec
from common.store import hash_items, translate_errors

__all__ = [
    "AdmitCode",
    "BloomStats",
    "Candidate",
    "Claim",
    "DeadLetter",
    "Frontier",
    "FrontierShard",
    "FrontierStats",
    "Lease",
    "Outcome",
    "SettleOp",
    "SettleResult",
    "merge_stats",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A canonical URL ready for the admit script."""

    domain: str
    fp: str
    depth: int
    payload: str
    lastmod_ms: int = 0  # a sitemap's <lastmod> for it (0: none; lib_admit.lua)


@dataclass(frozen=True, slots=True)
class Lease:
    """A URL claimed by one worker until it settles it or the lease expires."""

    fp: str
    domain: str
    attempt: int  # 1 on the first try
    entry: UrlEntry
    pass_no: int = 1  # the crawl's pass when it was claimed: the pass its record belongs to

    @property
    def url(self) -> str:
        return self.entry.u

    @property
    def depth(self) -> int:
        return self.entry.d


@dataclass(frozen=True, slots=True)
class Claim:
    leases: list[Lease]
    # When nothing was claimed: seconds until something becomes ready by time alone; None when
    # nothing is queued or all queued URLs wait for in-flight slots (use pending() to tell).
    wait_s: float | None
    # True when nothing may be claimed because the docs backlog is at the crawl's bound.
    paused: bool = False


@dataclass(frozen=True, slots=True)
class SettleOp:
    kind: SettleKind
    fp: str
    outcome: str = ""
    reason: str = ""
    delay_s: float = 0.0
    retry_after_s: float = 0.0
    record: str = ""
    doc: str = ""
    attempt: int = 0  # the lease's attempt; 0: any attempt of this worker's lease
    # An ack's revisit state (docs/revisits.md): None leaves it as it was; else the interval in
    # ms until the next visit (0: next pass; REVISIT_FORGET: gone) and that visit's payload.
    revisit_ms: int | None = None
    revisit: str = ""

    @classmethod
    def ack(
        cls,
        fp: str,
        outcome: Outcome,
        reason: str = "",
        record: str = "",
        doc: str = "",
        attempt: int = 0,
        *,
        revisit_ms: int | None = None,
        revisit: str = "",
    ) -> SettleOp:
        return cls(
            SettleKind.ACK,
            fp,
            outcome=outcome.value,
            reason=reason,
            record=record,
            doc=doc,
            attempt=attempt,
            revisit_ms=revisit_ms,
            revisit=revisit,
        )

    @classmethod
    def retry(
        cls,
        fp: str,
        reason: str,
        *,
        delay_s: float = 0.0,
        retry_after_s: float = 0.0,
        record: str = "",
        attempt: int = 0,
    ) -> SettleOp:
        return cls(
            SettleKind.RETRY,
            fp,
            reason=reason,
            delay_s=delay_s,
            retry_after_s=retry_after_s,
            record=record,
            attempt=attempt,
        )

    @classmethod
    def release(cls, fp: str) -> SettleOp:
        return cls(SettleKind.RELEASE, fp)

    def args(self) -> list[str]:
        """The op's ARGV group, in common.protocol.SETTLE_FIELDS order."""
        values = {
            "kind": str(self.kind),
            "fp": self.fp,
            "outcome": self.outcome,
            "reason": self.reason,
            "delay_ms": str(int(self.delay_s * 1000)),
            "retry_after_ms": str(int(self.retry_after_s * 1000)),
            "record": self.record,
            "doc": self.doc,
            "attempt": str(self.attempt),
            "revisit_ms": "" if self.revisit_ms is None else str(self.revisit_ms),
            "revisit": self.revisit,
        }
        return [values[name] for name in SETTLE_FIELDS]


@dataclass(frozen=True, slots=True)
class BloomStats:
    """The Bloom seen filters (lib_seen.lua): URLs added, bits, and the expected number of new
    URLs they wrongly called seen (each is a known, reported loss)."""

    filters: int
    urls: int
    bits: int
    false_positives_est: float

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> BloomStats | None:
        n = int(meta.get("filters", 0))
        if n == 0:
            return None
        return cls(
            filters=n,
            urls=sum(int(meta[f"n:{i}"]) for i in range(n)),
            bits=sum(int(meta[f"m:{i}"]) for i in range(n)),
            false_positives_est=float(meta.get("fp_est", 0)),
        )

    @property
    def bytes_per_url(self) -> float:
        return self.bits / 8 / max(1, self.urls)


@dataclass(frozen=True, slots=True)
class FrontierStats:
    """One atomic snapshot of a crawl's counters and queue structures."""

    counts: dict[str, int]
    queued: int
    delayed: int
    in_flight: int
    ready_domains: int
    ready_now: int
    dead_letters: int
    domains: int
    top_domains: list[tuple[str, int]]
    bloom: BloomStats | None = None
    revisit_known: int = 0  # URLs with revisit state (done, not gone)
    asleep: int = 0  # of those, not in the frontier now
    due_now: int = 0  # of those, due already (a claim wakes them)
    pass_no: int = 1

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    @property
    def admitted(self) -> int:
        return self.count("admitted")

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def pending(self) -> int:
        return self.queued + self.delayed + self.in_flight

    @property
    def balanced(self) -> bool:
        """The outcome equation: admitted = done + failed + skipped + pending."""
        return self.admitted == self.done + self.failed + self.skipped + self.pending

    @property
    def finished(self) -> bool:
        return self.pending == 0

    def reasons(self, outcome: str) -> dict[str, int]:
        prefix = outcome + ":"
        return {k[len(prefix) :]: v for k, v in self.counts.items() if k.startswith(prefix)}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    fp: str
    domain: str
    attempts: int
    reason: str
    url: str


def _admit_args(
    candidates: Sequence[Candidate], local_rejects: Mapping[str, int] | None
) -> list[str | int]:
    rejects = [x for kv in (local_rejects or {}).items() for x in (kv[0], str(kv[1]))]
    args: list[str | int] = [len(rejects) // 2, *rejects, len(candidates)]
    for c in candidates:
        args += (getattr(c, name) for name in ADMIT_FIELDS)
    return args


class FrontierShard(OneShard):
    """Typed access to one shard of a crawl's frontier (the whole frontier of a one-shard
    crawl): each method is one script call on the shard's slot. Nothing connects in
    ``__init__``. ``clock`` (ms) replaces the Redis server's clock; tests use it to make time
    explicit."""

    async def write_spec(self, spec: CrawlSpec) -> CrawlSpec:
        """Write the spec into this shard's spec hash if it has none; the spec in force."""
        pairs = [x for kv in spec.lua_fields().items() for x in kv]
        raw = await self._run("spec_init", [encode_spec(spec), *pairs])
        return decode_spec(str(raw))

    # -- the queue ------------------------------------------------------------------------

    async def admit(
        self, candidates: Sequence[Candidate], local_rejects: Mapping[str, int] | None = None
    ) -> list[AdmitCode]:
        """Admit canonical URLs in one call; ``local_rejects`` are counted alongside."""
        if not candidates and not local_rejects:
            return []
        codes = await self._run.rows("admit", _admit_args(candidates, local_rejects))
        return [AdmitCode(int(c)) for c in codes]

    async def commit(
        self,
        worker: str,
        *,
        seen_fps: Sequence[str],
        candidates: Sequence[Candidate],
        local_rejects: Mapping[str, int],
        ops: Sequence[SettleOp],
    ) -> tuple[list[AdmitCode], list[SettleResult]]:
        """Mark seen, admit links and settle pages in one atomic call (see commit.lua)."""
        args: list[str | int] = [worker, len(seen_fps), *seen_fps]
        args += _admit_args(candidates, local_rejects)
        for op in ops:
            args += op.args()
        res = await self._run.rows("commit", args)
        codes, results = res
        return [AdmitCode(int(c)) for c in codes], [SettleResult(int(r)) for r in results]

    async def claim(self, worker: str, n: int = 1, lease_s: float | None = None) -> Claim:
        """Claim up to ``n`` URLs, each leased to ``worker``."""
        lease_ms = "" if lease_s is None else str(int(lease_s * 1000))
        res = await self._run.rows("claim", [n, worker, lease_ms])
        got, wait_ms, pass_no = int(res[0]), int(res[1]), int(res[2])
        leases: list[Lease] = []
        invalid: list[str] = []
        for i in range(3, 3 + 2 * got, 2):
            domain, entry = res[i], res[i + 1]
            fp, attempts, payload = entry.split("\t", 2)
            try:
                url_entry = decode_url_entry(payload)
                leases.append(Lease(fp, domain, int(attempts) + 1, url_entry, pass_no))
            except PermanentError:
                invalid.append(fp)
        if invalid:  # a payload from a foreign or future version: fail it, never crash on it
            await self.settle(
                worker, [SettleOp.ack(fp, Outcome.FAILED, "bad_payload") for fp in invalid]
            )
        if got:
            return Claim(leases, 0.0)
        if wait_ms == ClaimWait.PAUSED:
            return Claim(leases, None, paused=True)
        return Claim(leases, None if wait_ms == ClaimWait.NONE else wait_ms / 1000)

    async def settle(self, worker: str, ops: Sequence[SettleOp]) -> list[SettleResult]:
        """Ack, retry or release leases in one call."""
        if not ops:
            return []
        args: list[str] = [worker]
        for op in ops:
            args += op.args()
        res = await self._run.rows("settle", args)
        return [SettleResult(int(r)) for r in res]

    async def renew(self, worker: str, fps: Sequence[str], lease_s: float | None = None) -> int:
        if not fps:
            return 0
        lease_ms = "" if lease_s is None else str(int(lease_s * 1000))
        return int(str(await self._run("renew", [worker, lease_ms, *fps])))

    async def reap(self, limit: int = 1000, *, every_lease: bool = False) -> tuple[int, int]:
        """Return expired leases to their queues; (requeued, dead-lettered). ``every_lease``:
        expired or not, for a store whose lease holders are all known dead."""
        res = await self._run.rows("reap", [limit, "+inf"] if every_lease else [limit])
        return int(res[0]), int(res[1])

    async def pending(self) -> int:
        """admitted - done - failed - skipped, from the counters alone (one cheap call)."""
        async with translate_errors():
            values = await self._redis.hmget(
                self.keys.counts, ["admitted", "done", "failed", "skipped"]
            )
        admitted, done, failed, skipped = (int(v or 0) for v in values)
        return admitted - done - failed - skipped

    # -- politeness -----------------------------------------------------------------------

    async def set_policy(
        self,
        domain: str,
        rate: float | None = None,
        burst: int | None = None,
        per_domain_inflight: int | None = None,
    ) -> None:
        values = (rate, burst, per_domain_inflight)
        value = ",".join("" if v is None else str(v) for v in values)
        await self._run("domain", [domain, "policy", value])

    async def set_delay(self, domain: str, seconds: float) -> None:
        """robots.txt Crawl-delay: at most one request per ``seconds`` for this domain."""
        await self._run("domain", [domain, "delay", repr(float(seconds))])

    async def back_off(self, domain: str, seconds: float) -> None:
        """Push the domain's next request at least ``seconds`` away (429/503 Retry-After)."""
        await self._run("domain", [domain, "backoff", str(int(seconds * 1000))])

    # -- reading --------------------------------------------------------------------------

    async def stats(self, top: int = 10) -> FrontierStats:
        res = await self._run.rows("stats", [top])
        flat, top_flat, bloom, revisit = res[0], res[8], res[9], res[10]
        counts = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return FrontierStats(
            counts=counts,
            queued=int(res[1]),
            delayed=int(res[2]),
            in_flight=int(res[3]),
            ready_domains=int(res[4]),
            ready_now=int(res[5]),
            dead_letters=int(res[6]),
            domains=int(res[7]),
            top_domains=[(top_flat[i], int(top_flat[i + 1])) for i in range(0, len(top_flat), 2)],
            bloom=BloomStats.from_meta(dict(zip(bloom[::2], bloom[1::2], strict=True))),
            revisit_known=int(revisit[0]),
            asleep=int(revisit[1]),
            due_now=int(revisit[2]),
            pass_no=int(revisit[3]),
        )

    async def dead_letters(self, start: int = 0, stop: int = -1) -> list[DeadLetter]:
        async with translate_errors():
            raw = await self._redis.lrange(self.keys.dead, start, stop)
        out = []
        for item in raw:
            fp, domain, attempts, reason, payload = str(item).split("\t", 4)
            try:
                url = decode_url_entry(payload).u
            except PermanentError:
                url = ""
            out.append(DeadLetter(fp, domain, int(attempts), reason, url))
        return out

    def page_records(self) -> AsyncIterator[tuple[str, str]]:
        """Every (fingerprint, record JSON) in the pages sink, in no particular order."""
        return hash_items(self._redis, self.keys.pages)

    # -- passes and revisits (docs/revisits.md) -------------------------------------------

    async def pass_no(self) -> int:
        return int(str(await self._run("revisit", ["pass"])))

    async def set_pass(self, n: int) -> int:
        """Make ``n`` the current pass (never lowers it); the pass in force."""
        return int(str(await self._run("revisit", ["set_pass", n])))

    async def wake(self, batch: int = 1000) -> int:
        """Wake every URL asleep (a new pass), in bounded steps; how many were woken."""
        cursor, woken = "0", 0
        while True:
            res = await self._run.rows("revisit", ["wake", cursor, batch])
            cursor, woken = str(res[0]), woken + int(res[1])
            if cursor == "0":
                return woken

    # -- replaying dead letters -----------------------------------------------------------

    async def requeue(
        self, reason: str | None = None, domain: str | None = None, batch: int = REQUEUE_BATCH
    ) -> Requeued:
        """Put this shard's dead letters (those of ``reason`` and ``domain``, if given) back
        in their queues with fresh attempts, ``batch`` entries per script call
        (common/lua/requeue.lua)."""
        return await requeue_all(
            lambda limit: self._run.rows("requeue", [reason or "", domain or "", limit]), batch
        )


def _merge_bloom(parts: Sequence[BloomStats | None]) -> BloomStats | None:
    blooms = [b for b in parts if b is not None]
    if not blooms:
        return None
    return BloomStats(
        filters=sum(b.filters for b in blooms),
        urls=sum(b.urls for b in blooms),
        bits=sum(b.bits for b in blooms),
        false_positives_est=sum(b.false_positives_est for b in blooms),
    )


def merge_stats(parts: Sequence[FrontierStats], top: int) -> FrontierStats:
    """One crawl's stats from its shards' (each shard's own snapshot is atomic; the sum is
    not, so a crawl's equation may be off by what moved between the calls while it runs)."""
    if len(parts) == 1:
        return parts[0]
    counts: Counter[str] = Counter()
    for p in parts:
        counts.update(p.counts)
    tops = sorted((t for p in parts for t in p.top_domains), key=lambda t: -t[1])
    return FrontierStats(
        counts=dict(counts),
        queued=sum(p.queued for p in parts),
        delayed=sum(p.delayed for p in parts),
        in_flight=sum(p.in_flight for p in parts),
        ready_domains=sum(p.ready_domains for p in parts),
        ready_now=sum(p.ready_now for p in parts),
        dead_letters=sum(p.dead_letters for p in parts),
        domains=sum(p.domains for p in parts),
        top_domains=tops[:top],
        bloom=_merge_bloom([p.bloom for p in parts]),
        revisit_known=sum(p.revisit_known for p in parts),
        asleep=sum(p.asleep for p in parts),
        due_now=sum(p.due_now for p in parts),
        pass_no=max(p.pass_no for p in parts),
    )


class Frontier:
    """Typed access to one crawl's frontier, over its shards (docs/frontier.md). Nothing
    connects in ``__init__``; the shard count is read from the crawl's spec on first use.

    With one shard (every crawl on a single Redis, by default) each method is the one shard's
    single atomic call. With S shards, admissions are split by domain (one call per shard
    touched, concurrently), claims ask the shards that may have work, settles and renewals go to
    the shard that leased the URL, and reads sum over the shards.

    ``clock`` (ms) replaces the Redis server's clock; tests use it to make time explicit.
    """

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
        self._set: ShardSet[FrontierShard] = ShardSet(redis, keys, self._shard)

    def _shard(self, keys: CrawlKeys) -> FrontierShard:
        return FrontierShard(self._redis, keys, self._scripts, clock=self._clock)

    @property
    def crawl_scripts(self) -> CrawlScripts:
        """Scripts bound to the crawl's own keys (LLM buckets, proxy health)."""
        return CrawlScripts(self._scripts, self.keys, self._clock)

    # -- the shards -----------------------------------------------------------------------

    async def shards(self) -> list[FrontierShard]:
        """The crawl's shards (one while the crawl has no spec yet)."""
        return await self._set.get()

    async def _shard_of(self, domain: str) -> FrontierShard:
        shards = await self.shards()
        return shards[shard_of(domain, len(shards))]

    # -- the spec -------------------------------------------------------------------------

    async def init(self, spec: CrawlSpec) -> CrawlSpec:
        """Write the spec if the crawl has none yet (and its shards' copies); return the spec
        in force (the existing one when the crawl was already created)."""
        current = await self._shard(self.keys).write_spec(spec)
        self._set.forget()
        shards = await self.shards()
        if len(shards) > 1:
            part = current.for_shard()
            await gather_shards({i: s.write_spec(part) for i, s in enumerate(shards)})
        if current == spec:
            for domain, policy in spec.domains.items():
                await self.set_policy(domain, policy.rate, policy.burst, policy.per_domain_inflight)
        return current

    async def spec(self) -> CrawlSpec | None:
        async with translate_errors():
            raw = await self._redis.hget(self.keys.spec, "json")
        return None if raw is None else decode_spec(raw)

    # -- the queue ------------------------------------------------------------------------

    async def admit(
        self, candidates: Sequence[Candidate], local_rejects: Mapping[str, int] | None = None
    ) -> list[AdmitCode]:
        """Admit canonical URLs (one call per shard touched); ``local_rejects`` are counted
        alongside."""
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].admit(candidates, local_rejects)
        groups = group_by(candidates, lambda c: shard_of(c.domain, len(shards)))
        if local_rejects and not groups:
            groups = {0: []}
        first = min(groups, default=0)
        answers = await gather_shards(
            {
                k: shards[k].admit(
                    [candidates[i] for i in idx], local_rejects if k == first else None
                )
                for k, idx in groups.items()
            }
        )
        codes: list[AdmitCode] = [AdmitCode.DUPLICATE] * len(candidates)
        for k, idx in groups.items():
            for i, code in zip(idx, answers[k], strict=True):
                codes[i] = code
        return codes

    async def commit(
        self,
        worker: str,
        *,
        seen: Sequence[tuple[str, str]],
        candidates: Sequence[Candidate],
        local_rejects: Mapping[str, int],
        ops: Sequence[SettleOp],
    ) -> tuple[list[AdmitCode], list[SettleResult]]:
        """Mark seen (``(domain, fp)`` of redirect hops), admit links and settle pages.

        One shard: one atomic call (commit.lua). Several: the links and hops of every shard
        first, then the settles, so a page is never done while its links are not yet admitted
        (a crash between the two retries the page: its links come back as duplicates)."""
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].commit(
                worker,
                seen_fps=[fp for _, fp in seen],
                candidates=candidates,
                local_rejects=local_rejects,
                ops=ops,
            )
        n = len(shards)
        hops: dict[int, list[str]] = {}
        for domain, fp in seen:
            hops.setdefault(shard_of(domain, n), []).append(fp)
        groups = group_by(candidates, lambda c: shard_of(c.domain, n))
        touched = sorted(set(hops) | set(groups) | ({0} if local_rejects else set()))
        first = touched[0] if touched else 0
        answers = await gather_shards(
            {
                k: shards[k].commit(
                    worker,
                    seen_fps=hops.get(k, []),
                    candidates=[candidates[i] for i in groups.get(k, [])],
                    local_rejects=local_rejects if k == first else {},
                    ops=[],
                )
                for k in touched
            }
        )
        codes: list[AdmitCode] = [AdmitCode.DUPLICATE] * len(candidates)
        for k, idx in groups.items():
            for i, code in zip(idx, answers[k][0], strict=True):
                codes[i] = code
        return codes, await self.settle(worker, ops)

    async def claim(self, worker: str, n: int = 1, lease_s: float | None = None) -> Claim:
        """Claim up to ``n`` URLs, each leased to ``worker``."""
        shards = await self.shards()
        if len(shards) == 1:
            return await shards[0].claim(worker, n, lease_s)

        async def one(shard: FrontierShard, m: int) -> tuple[list[Lease], float | None, bool]:
            claim = await shard.claim(worker, m, lease_s)
            return claim.leases, claim.wait_s, claim.paused

        leases, asked, paused = await self._set.claim(n, one, lambda lease: lease.fp)
        if leases:
            return Claim(leases, 0.0)
        if asked and paused == asked:
            return Claim(leases, None, paused=True)
        return Claim(leases, self._set.next_wait())

    async def settle(self, worker: str, ops: Sequence[SettleOp]) -> list[SettleResult]:
        """Ack, retry or release leases (one call per shard holding them)."""
        return await self._set.routed(
            [op.fp for op in ops],
            lambda shard, idx: shard.settle(worker, [ops[i] for i in idx]),
            SettleResult.STALE,
        )

    async def ack(
        self, worker: str, fp: str, outcome: Outcome, reason: str = "", record: str = ""
    ) -> SettleResult:
        return (await self.settle(worker, [SettleOp.ack(fp, outcome, reason, record)]))[0]

    async def retry(
        self,
        worker: str,
        fp: str,
        reason: str,
        *,
        delay_s: float = 0.0,
        retry_after_s: float = 0.0,
        record: str = "",
    ) -> SettleResult:
        op = SettleOp.retry(fp, reason, delay_s=delay_s, retry_after_s=retry_after_s, record=record)
        return (await self.settle(worker, [op]))[0]

    async def release(self, worker: str, fps: Sequence[str]) -> list[SettleResult]:
        return await self.settle(worker, [SettleOp.release(fp) for fp in fps])

    async def renew(self, worker: str, fps: Sequence[str], lease_s: float | None = None) -> int:
        return await self._set.renew(fps, lambda shard, part: shard.renew(worker, part, lease_s))

    async def reap(self, limit: int = 1000, *, every_lease: bool = False) -> tuple[int, int]:
        """Return expired leases to their queues; (requeued, dead-lettered). ``every_lease``:
        expired or not, for a store whose lease holders are all known dead."""
        answers = await self._set.each(lambda shard: shard.reap(limit, every_lease=every_lease))
        return sum(a[0] for a in answers), sum(a[1] for a in answers)

    async def pending(self) -> int:
        """admitted - done - failed - skipped, from the counters alone."""
        return sum(await self._set.each(lambda shard: shard.pending()))

    # -- politeness -----------------------------------------------------------------------

    async def set_policy(
        self,
        domain: str,
        rate: float | None = None,
        burst: int | None = None,
        per_domain_inflight: int | None = None,
    ) -> None:
        await (await self._shard_of(domain)).set_policy(domain, rate, burst, per_domain_inflight)

    async def set_delay(self, domain: str, seconds: float) -> None:
        """robots.txt Crawl-delay: at most one request per ``seconds`` for this domain."""
        await (await self._shard_of(domain)).set_delay(domain, seconds)

    async def back_off(self, domain: str, seconds: float) -> None:
        """Push the domain's next request at least ``seconds`` away (429/503 Retry-After)."""
        await (await self._shard_of(domain)).back_off(domain, seconds)

    # -- reading --------------------------------------------------------------------------

    async def stats(self, top: int = 10) -> FrontierStats:
        return merge_stats(await self._set.each(lambda shard: shard.stats(top)), top)

    async def dead_letters(self, start: int = 0, stop: int = -1) -> list[DeadLetter]:
        """The dead letters of every shard (``start``/``stop`` index each shard's list)."""
        out: list[DeadLetter] = []
        for shard in await self.shards():
            out += await shard.dead_letters(start, stop)
        return out

    async def page_records(self) -> AsyncIterator[tuple[str, str]]:
        """Every (fingerprint, record JSON) in the pages sink, in no particular order."""
        for shard in await self.shards():
            async for item in shard.page_records():
                yield item

    # -- passes and revisits (docs/revisits.md) -------------------------------------------

    async def pass_no(self) -> int:
        """The crawl's current pass (1 until a new pass is started)."""
        return max(await self._set.each(lambda shard: shard.pass_no()))

    async def next_pass(self) -> int:
        """Start a new pass: every shard's pass becomes one more than the highest. The caller
        then admits the pass's seeds (a sitemap may say some URLs are unmodified) and wakes
        what is asleep (``wake``)."""
        n = await self.pass_no() + 1
        await self._set.each(lambda shard: shard.set_pass(n))
        return n

    async def wake(self) -> int:
        """Wake every URL asleep, due or not, in every shard, except those a sitemap said are
        unmodified in this pass: a new pass's revisits. Returns how many."""
        return sum(await self._set.each(lambda shard: shard.wake()))

    # -- replaying dead letters -----------------------------------------------------------

    async def requeue(
        self, reason: str | None = None, domain: str | None = None, batch: int = REQUEUE_BATCH
    ) -> Requeued:
        """Put the dead letters (those of ``reason`` and of ``domain``, host[:port] as in
        the queues, if given: then only its shard is asked) back in their queues with fresh
        attempts; the crawl's equation holds throughout (see common/lua/requeue.lua)."""
        if domain:
            return await (await self._shard_of(domain)).requeue(reason, domain, batch)
        return Requeued.total(
            await self._set.each(lambda shard: shard.requeue(reason, domain, batch))
        )
