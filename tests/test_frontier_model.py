"""Model-based test of the frontier: random operation sequences against a plain-Python model.

Hypothesis generates sequences of admit / claim / settle (ack, retry, release, in batches) /
renew / reap / back-off / clock-advance / requeue (of dead letters) operations. Each sequence
runs on a fresh crawl against the real frontier (on the real redis-server and on the embedded
store) and, step by step, against
``Model``: per-domain FIFO lists, delayed retries, leases, domain back-offs, in-flight caps,
counters, dead letters and recorded pages. After every step the frontier's stats (the outcome
equation, every counter, queued / delayed / in flight / dead letters / ready domains) and its
stored layout (list order, retry due times, lease deadlines and holders, page keys) must equal
the model's; every claim, settle, renew, reap and requeue result must be the one the model
predicts.
Each sequence ends by checking the dead letters through the API, requeuing them and draining the
crawl.

Time is explicit (FakeClock). Every claim advances the clock by at least a second first, so with
rate 10/s and burst 2 the token bucket is always full when a claim runs: the model need not
track tokens, only the in-flight cap and the back-off deadline (``until``) of each domain.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, note, settings, target
from hypothesis import strategies as st
from redis.asyncio import Redis

from common.deadletters import Requeued
from common.keys import CrawlKeys
from common.serde import UrlEntry, encode_url_entry
from common.spec import CrawlSpec
from crawler.frontier import (
    AdmitCode,
    Candidate,
    DeadLetter,
    Frontier,
    Lease,
    Outcome,
    SettleOp,
    SettleResult,
)
from tests.helpers import FakeClock, assert_balanced, make_frontier

DOMAINS = ("a.test", "b.test", "c.test")
WORKERS = ("w1", "w2")
POOL = 12
RATE = 10.0  # tokens per second: one every 100 ms
BURST = 2
CAP = 2  # in-flight per domain
MAX_ATTEMPTS = 3
LEASE_MS = 5000
MAX_PAGES = 10  # fewer than POOL, so that admission can say MAX_PAGES
CLAIM_GAP_MS = 1000  # >= BURST / RATE: the bucket is full again before every claim

SPEC = CrawlSpec(
    rate=RATE,
    burst=BURST,
    per_domain_inflight=CAP,
    max_attempts=MAX_ATTEMPTS,
    lease_s=LEASE_MS / 1000,
    max_pages=MAX_PAGES,
)


@dataclass(frozen=True, slots=True)
class PoolUrl:
    fp: str
    domain: str
    url: str
    depth: int
    payload: str


def _pool_url(i: int) -> PoolUrl:
    domain = DOMAINS[i % len(DOMAINS)]
    url = f"http://{domain}/page/{i}"
    depth = i % 3
    payload = encode_url_entry(UrlEntry(u=url, d=depth))
    return PoolUrl(f"fp{i:02d}", domain, url, depth, payload)


URLS = tuple(_pool_url(i) for i in range(POOL))
BY_FP = {u.fp: u for u in URLS}


# -- operations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Which lease an operation aims at: a live one, or any ever issued (maybe stale)."""

    pick: int
    live: bool


@dataclass(frozen=True, slots=True)
class AckItem:
    outcome: Outcome
    reason: str
    record: bool


@dataclass(frozen=True, slots=True)
class RetryItem:
    reason: str
    delay_s: float
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class ReleaseItem:
    pass


SettleItem = AckItem | RetryItem | ReleaseItem


@dataclass(frozen=True, slots=True)
class Admit:
    picks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClaimOp:
    worker: str
    n: int
    extra_ms: int
    lease_s: float | None
    then: tuple[SettleItem, ...] = ()  # settle what was claimed at once, in one batch


@dataclass(frozen=True, slots=True)
class Settle:
    items: tuple[tuple[Target, SettleItem], ...]
    wrong_worker: bool  # settle as the other worker than the first target's holder


@dataclass(frozen=True, slots=True)
class Renew:
    targets: tuple[Target, ...]
    wrong_worker: bool
    lease_s: float | None


@dataclass(frozen=True, slots=True)
class Reap:
    limit: int
    after_ms: int  # advance the clock first (often past a lease)


@dataclass(frozen=True, slots=True)
class Advance:
    ms: int


@dataclass(frozen=True, slots=True)
class BackOff:
    domain: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Requeue:
    """`distcrawl requeue`: dead letters back in their queues (filters "" = any)."""

    reason: str
    domain: str
    batch: int


Op = Admit | ClaimOp | Settle | Renew | Reap | Advance | BackOff | Requeue


# -- the model -----------------------------------------------------------------------------


@dataclass(slots=True)
class Held:
    """A lease in the model."""

    fp: str
    domain: str
    worker: str
    attempts: int  # as stored in the entry: the lease's attempt number is attempts + 1
    deadline: int


@dataclass(slots=True)
class Model:
    clock: FakeClock
    queues: dict[str, list[tuple[str, int]]] = field(
        default_factory=lambda: {d: [] for d in DOMAINS}
    )
    delayed: list[tuple[int, str, str, int]] = field(default_factory=list)  # due, d, fp, attempts
    leases: dict[str, Held] = field(default_factory=dict)
    until: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    dead: list[DeadLetter] = field(default_factory=list)
    pages: set[str] = field(default_factory=set)
    issued: list[tuple[str, str]] = field(default_factory=list)  # every (fp, worker) ever leased

    @property
    def now(self) -> int:
        return self.clock.now

    def inflight(self, d: str) -> int:
        return sum(1 for h in self.leases.values() if h.domain == d)

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values()) + len(self.delayed) + len(self.leases)

    def ready_domains(self) -> set[str]:
        """The ready set's invariant: a non-empty list and under the in-flight cap."""
        return {d for d, q in self.queues.items() if q and self.inflight(d) < CAP}

    def resolve(self, target: Target) -> tuple[str, str]:
        """The (fp, holder) a target designates."""
        if target.live and self.leases:
            # The most tried first: retrying the same URL again and again reaches DEAD.
            live = sorted(self.leases.values(), key=lambda h: (-h.attempts, h.fp))
            held = live[target.pick % len(live)]
            return held.fp, held.worker
        if self.issued:
            return self.issued[target.pick % len(self.issued)]
        return URLS[target.pick % POOL].fp, WORKERS[0]

    # admit

    def admit(self, u: PoolUrl) -> AdmitCode:
        if u.fp in self.seen:
            self.counts["rejected:duplicate"] += 1
            return AdmitCode.DUPLICATE
        if self.counts["admitted"] >= MAX_PAGES:
            self.counts["rejected:max_pages"] += 1
            return AdmitCode.MAX_PAGES
        self.seen.add(u.fp)
        self.queues[u.domain].append((u.fp, 0))
        self.domains.add(u.domain)
        self.counts["admitted"] += 1
        return AdmitCode.ADMITTED

    # claim

    def move_due(self) -> None:
        """Due retries go to the tail of their list, in delayed-zset order (score, member)."""
        due = [x for x in self.delayed if x[0] <= self.now]
        due.sort(key=lambda x: (x[0], _delayed_member(x[1], x[2], x[3])))
        for x in due:
            self.delayed.remove(x)
            self.queues[x[1]].append((x[2], x[3]))

    def avail(self) -> dict[str, int]:
        """How many URLs a claim may take from each domain now (the bucket is full)."""
        out = {}
        for d, q in self.queues.items():
            if self.until.get(d, 0) <= self.now:
                k = min(BURST, CAP - self.inflight(d), len(q))
                if k > 0:
                    out[d] = k
        return out

    def take(self, d: str, worker: str, lease_ms: int) -> Held:
        fp, attempts = self.queues[d].pop(0)
        held = Held(fp, d, worker, attempts, self.now + lease_ms)
        self.leases[fp] = held
        self.issued.append((fp, worker))
        return held

    def wait_ms(self) -> int | None:
        """claim's wait when it got nothing.

        With full buckets, a claim gets nothing only when every domain in "ready" (a non-empty
        list, under the cap) is backed off: its score there is then its ``until``. A domain at
        its cap is not in "ready" at all, so it adds no wait (None, when nothing is delayed).
        """
        times = [self.until.get(d, 0) for d in self.ready_domains()]
        times += [x[0] for x in self.delayed]
        if not times:
            return None
        return max(1, min(times) - self.now)

    # settle

    def settle(self, worker: str, fp: str, item: SettleItem) -> SettleResult:
        held = self.leases.get(fp)
        if held is None or held.worker != worker:
            return SettleResult.STALE
        del self.leases[fp]
        d = held.domain
        if isinstance(item, AckItem):
            self.counts[item.outcome.value] += 1
            if item.reason:
                self.counts[f"{item.outcome.value}:{item.reason}"] += 1
            if item.record:
                self.pages.add(fp)
            return SettleResult.SETTLED
        if isinstance(item, RetryItem):
            attempts = held.attempts + 1
            self.counts["retries"] += 1
            if item.retry_after_s > 0:
                self.until[d] = max(self.until.get(d, 0), self.now + _ms(item.retry_after_s))
            if attempts >= MAX_ATTEMPTS:
                self.dead_letter(fp, d, attempts, item.reason)
                return SettleResult.DEAD
            if item.delay_s > 0:
                self.delayed.append((self.now + _ms(item.delay_s), d, fp, attempts))
            else:
                self.queues[d].append((fp, attempts))
            return SettleResult.REQUEUED
        self.queues[d].insert(0, (fp, held.attempts))
        return SettleResult.REQUEUED

    def dead_letter(self, fp: str, d: str, attempts: int, reason: str) -> None:
        self.dead.append(DeadLetter(fp, d, attempts, reason, BY_FP[fp].url))
        self.counts["failed"] += 1
        self.counts[f"failed:{reason}"] += 1
        self.counts["dead_letters"] += 1
        self.pages.add(fp)  # a minimal record when the caller gave none

    # renew, reap, back-off

    def renew(self, worker: str, fps: list[str], lease_ms: int) -> int:
        renewed = 0
        for fp in fps:
            held = self.leases.get(fp)
            if held is not None and held.worker == worker:
                held.deadline = self.now + lease_ms
                renewed += 1
        return renewed

    def reap(self, limit: int) -> tuple[int, int]:
        expired = sorted(
            (h for h in self.leases.values() if h.deadline <= self.now),
            key=lambda h: (h.deadline, h.fp),
        )[:limit]
        requeued = dead = 0
        for held in expired:
            del self.leases[held.fp]
            attempts = held.attempts + 1
            self.counts["reaped"] += 1
            if attempts >= MAX_ATTEMPTS:
                self.dead_letter(held.fp, held.domain, attempts, "lease_expired")
                dead += 1
            else:
                self.queues[held.domain].append((held.fp, attempts))
                requeued += 1
        return requeued, dead

    def back_off(self, d: str, seconds: float) -> None:
        self.until[d] = max(self.until.get(d, 0), self.now + _ms(seconds))

    def requeue(self, reason: str, domain: str) -> Requeued:
        """Matching dead letters to the tail of their queues with 0 attempts, in order; their
        dead_letter undone (counters, page record)."""
        left, reasons = [], Counter[str]()
        for dead in self.dead:
            if (reason and dead.reason != reason) or (domain and dead.domain != domain):
                left.append(dead)
                continue
            self.queues[dead.domain].append((dead.fp, 0))
            for name in ("failed", f"failed:{dead.reason}", "dead_letters"):
                self.counts[name] -= 1
            self.counts["requeued"] += 1
            self.pages.discard(dead.fp)
            reasons[dead.reason] += 1
        self.dead = left
        return Requeued(sum(reasons.values()), dict(reasons))


def _ms(seconds: float) -> int:
    return int(seconds * 1000)  # as SettleOp.args and Frontier.back_off convert


def _delayed_member(d: str, fp: str, attempts: int) -> str:
    return f"{d}\t{fp}\t{attempts}\t{BY_FP[fp].payload}"


# -- running one operation on both ---------------------------------------------------------


async def _admit(frontier: Frontier, model: Model, op: Admit) -> None:
    urls = [URLS[i] for i in op.picks]
    codes = await frontier.admit([Candidate(u.domain, u.fp, u.depth, u.payload) for u in urls])
    assert codes == [model.admit(u) for u in urls]


async def _claim(frontier: Frontier, model: Model, op: ClaimOp) -> list[Lease]:
    model.clock.advance(CLAIM_GAP_MS + op.extra_ms)
    claim = await frontier.claim(op.worker, op.n, op.lease_s)
    lease_ms = LEASE_MS if op.lease_s is None else _ms(op.lease_s)
    model.move_due()
    avail = model.avail()
    leases = claim.leases
    note(f"claim {op} -> {[(x.fp, x.attempt) for x in leases]}, wait {claim.wait_s}")
    # Whatever is eligible must be claimed: up to n, and each domain's share in one run,
    # popped from the head of its list; only the order of the domains is left to the scores.
    assert len(leases) == min(op.n, sum(avail.values())), (avail, leases)
    got = 0
    visited: set[str] = set()
    while got < len(leases):
        d = leases[got].domain
        assert d in avail, (d, avail)
        assert d not in visited, (d, leases)
        visited.add(d)
        k = min(avail[d], op.n - got)
        for lease in leases[got : got + k]:
            held = model.take(d, op.worker, lease_ms)
            u = BY_FP[held.fp]
            assert (lease.domain, lease.fp, lease.attempt) == (d, held.fp, held.attempts + 1)
            assert (lease.url, lease.depth) == (u.url, u.depth)
        got += k
    event(f"claim got {len(leases)}" if leases else f"claim got 0, waits: {bool(claim.wait_s)}")
    if leases:
        assert claim.wait_s == 0.0
    else:
        wait = model.wait_ms()
        assert claim.wait_s == (None if wait is None else wait / 1000), (claim, wait)
    return leases


def _record(fp: str, item: AckItem) -> str:
    return f'{{"url":"{BY_FP[fp].url}"}}' if item.record else ""


def _settle_op(fp: str, item: SettleItem) -> SettleOp:
    if isinstance(item, AckItem):
        return SettleOp.ack(fp, item.outcome, item.reason, _record(fp, item))
    if isinstance(item, RetryItem):
        return SettleOp.retry(
            fp, item.reason, delay_s=item.delay_s, retry_after_s=item.retry_after_s
        )
    return SettleOp.release(fp)


async def _settle(
    frontier: Frontier, model: Model, worker: str, batch: list[tuple[str, SettleItem]]
) -> None:
    if len(batch) == 1:  # one op goes through the convenience methods
        fp, item = batch[0]
        if isinstance(item, AckItem):
            got = [await frontier.ack(worker, fp, item.outcome, item.reason, _record(fp, item))]
        elif isinstance(item, RetryItem):
            got = [
                await frontier.retry(
                    worker,
                    fp,
                    item.reason,
                    delay_s=item.delay_s,
                    retry_after_s=item.retry_after_s,
                )
            ]
        else:
            got = await frontier.release(worker, [fp])
    else:
        got = await frontier.settle(worker, [_settle_op(fp, item) for fp, item in batch])
    expected = [model.settle(worker, fp, item) for fp, item in batch]
    note(f"settle as {worker} {batch} -> {got}")
    for (_, done), result in zip(batch, got, strict=True):
        event(f"settle {type(done).__name__} -> {result.name}")
    assert got == expected


async def _step(frontier: Frontier, model: Model, op: Op) -> None:
    if isinstance(op, Admit):
        await _admit(frontier, model, op)
    elif isinstance(op, ClaimOp):
        leases = await _claim(frontier, model, op)
        batch = [(lease.fp, item) for lease, item in zip(leases, op.then, strict=False)]
        if batch:
            await _settle(frontier, model, op.worker, batch)
    elif isinstance(op, Settle):
        resolved = [(model.resolve(t), item) for t, item in op.items]
        worker = resolved[0][0][1]
        if op.wrong_worker:
            worker = _other(worker)
        await _settle(frontier, model, worker, [(fp, item) for (fp, _), item in resolved])
    elif isinstance(op, Renew):
        targets = [model.resolve(t) for t in op.targets]
        worker = _other(targets[0][1]) if op.wrong_worker else targets[0][1]
        fps = [fp for fp, _ in targets]
        lease_ms = LEASE_MS if op.lease_s is None else _ms(op.lease_s)
        renewed = await frontier.renew(worker, fps, op.lease_s)
        assert renewed == model.renew(worker, fps, lease_ms)
    elif isinstance(op, Reap):
        model.clock.advance(op.after_ms)
        reaped = await frontier.reap(op.limit)
        event(f"reap {reaped}")
        assert reaped == model.reap(op.limit)
    elif isinstance(op, Advance):
        model.clock.advance(op.ms)
    elif isinstance(op, Requeue):
        requeued = await frontier.requeue(op.reason or None, op.domain or None, op.batch)
        event(f"requeue {requeued.count}")
        assert requeued == model.requeue(op.reason, op.domain)
    else:
        await frontier.back_off(op.domain, op.seconds)
        model.back_off(op.domain, op.seconds)


def _other(worker: str) -> str:
    return WORKERS[1] if worker == WORKERS[0] else WORKERS[0]


# -- comparing the whole state -------------------------------------------------------------


async def _check(frontier: Frontier, redis: Redis, keys: CrawlKeys, model: Model) -> None:
    stats = await frontier.stats()
    assert_balanced(stats)
    assert stats.counts == {k: v for k, v in model.counts.items() if v}
    assert stats.queued == sum(len(q) for q in model.queues.values())
    assert stats.delayed == len(model.delayed)
    assert stats.in_flight == len(model.leases)
    assert stats.dead_letters == len(model.dead)
    assert stats.domains == len(model.domains)
    assert stats.ready_domains == len(model.ready_domains())
    assert dict(stats.top_domains) == {d: len(q) for d, q in model.queues.items() if q}
    assert stats.pending == model.pending()

    # The layout itself (docs/frontier.md): list order, retry due times, lease deadlines.
    pipe = redis.pipeline(transaction=False)
    for d in DOMAINS:
        pipe.lrange(keys.queue(d), 0, -1)
    pipe.zrange(keys.delayed, 0, -1, withscores=True)
    pipe.zrange(keys.inflight, 0, -1, withscores=True)
    pipe.hgetall(keys.leases)
    pipe.zrange(keys.ready, 0, -1)
    pipe.hkeys(keys.pages)
    res = await pipe.execute()
    queues = {d: [_entry(e) for e in res[i]] for i, d in enumerate(DOMAINS)}
    delayed, inflight, leases, ready, pages = res[len(DOMAINS) :]
    assert set(pages) == model.pages
    assert queues == model.queues
    assert [(m, int(s)) for m, s in delayed] == [
        (_delayed_member(d, fp, a), due)
        for due, d, fp, a in sorted(model.delayed, key=lambda x: (x[0], _delayed_member(*x[1:])))
    ]
    assert {m: int(s) for m, s in inflight} == {h.fp: h.deadline for h in model.leases.values()}
    assert leases == {
        h.fp: f"{h.domain}\t{h.worker}\t{h.fp}\t{h.attempts}\t{BY_FP[h.fp].payload}"
        for h in model.leases.values()
    }
    assert set(ready) == model.ready_domains()


def _entry(raw: str) -> tuple[str, int]:
    """A queue entry (fp, attempts, payload, tab-separated) as (fp, attempts)."""
    fp, attempts, payload = raw.split("\t", 2)
    assert payload == BY_FP[fp].payload
    return fp, int(attempts)


async def _drain(frontier: Frontier, redis: Redis, keys: CrawlKeys, model: Model) -> None:
    """Let every back-off, delay and lease run out, then claim and ack until nothing is left."""
    for _ in range(4 * POOL):
        if not model.pending():
            break
        model.clock.advance(2 * LEASE_MS)
        assert await frontier.reap() == model.reap(1000)
        leases = await _claim(frontier, model, ClaimOp(WORKERS[0], 3, 0, None))
        assert leases or not model.pending(), "something is pending but cannot be claimed"
        await _settle(
            frontier, model, WORKERS[0], [(x.fp, AckItem(Outcome.DONE, "", True)) for x in leases]
        )
        await _check(frontier, redis, keys, model)
    stats = await frontier.stats()
    assert stats.finished
    assert stats.admitted == stats.done + stats.failed + stats.skipped
    await _check_outputs(frontier, model)


async def _check_outputs(frontier: Frontier, model: Model) -> None:
    """Dead letters (in order, through the API), the page records' keys, pending()."""
    assert await frontier.pending() == model.pending()
    assert await frontier.dead_letters() == model.dead
    assert {fp async for fp, _ in frontier.page_records()} == model.pages


# -- the test ------------------------------------------------------------------------------

_targets = st.builds(
    Target, pick=st.integers(0, POOL - 1), live=st.sampled_from([True, True, True, False])
)
_acks = st.builds(
    AckItem,
    outcome=st.sampled_from(list(Outcome)),
    reason=st.sampled_from(["", "http_404", "robots"]),
    record=st.booleans(),
)
_retries = st.builds(
    RetryItem,
    reason=st.sampled_from(["http_500", "timeout"]),
    delay_s=st.sampled_from([0.0, 0.25, 1.0, 2.5]),
    retry_after_s=st.sampled_from([0.0, 0.5, 3.0]),
)
# Retries outweigh acks, so that URLs come back often enough to run out of attempts.
_items: st.SearchStrategy[SettleItem] = st.sampled_from([0, 1, 1, 1, 2]).flatmap(
    lambda i: (_acks, _retries, st.just(ReleaseItem()))[i]
)
_claims = st.builds(
    ClaimOp,
    worker=st.sampled_from(WORKERS),
    n=st.integers(1, 3),
    extra_ms=st.sampled_from([0, 0, 0, 250, 1500]),  # 0: a retry delayed 1 s is due to the ms
    lease_s=st.sampled_from([None, 2.0, 8.0]),
    then=st.lists(_items, max_size=3).map(tuple),
)
_settles = st.builds(
    Settle,
    items=st.lists(st.tuples(_targets, _items), min_size=1, max_size=2).map(tuple),
    wrong_worker=st.sampled_from([False, False, False, True]),
)
_admits = st.builds(
    Admit, picks=st.lists(st.integers(0, POOL - 1), min_size=1, max_size=5).map(tuple)
)
_seeds = st.builds(  # every sequence starts with some URLs to crawl
    Admit, picks=st.lists(st.integers(0, POOL - 1), min_size=1, max_size=POOL).map(tuple)
)
_renews = st.builds(
    Renew,
    targets=st.lists(_targets, min_size=1, max_size=2).map(tuple),
    wrong_worker=st.sampled_from([False, False, True]),
    lease_s=st.sampled_from([None, 1.0, 8.0]),
)
_reaps = st.builds(
    Reap, limit=st.sampled_from([1000, 1, 2]), after_ms=st.sampled_from([0, 2000, 5000, 8000])
)
_advances = st.builds(
    Advance,
    ms=st.one_of(st.sampled_from([0, 1, 999, 2000, 4999, 5000, 5001]), st.integers(0, 8000)),
)
_back_offs = st.builds(
    BackOff, domain=st.sampled_from(DOMAINS), seconds=st.sampled_from([0.5, 2.0])
)
_requeues = st.builds(
    Requeue,
    reason=st.sampled_from(["", "", "http_500", "timeout", "lease_expired"]),
    domain=st.sampled_from(["", "", *DOMAINS]),
    batch=st.sampled_from([1000, 1, 2]),
)
# Claims and settles are most of a crawl. (one_of would drop repeated strategies: weight by
# drawing the kind first.)
_WEIGHTED: tuple[tuple[st.SearchStrategy[Op], int], ...] = (
    (_advances, 2),
    (_admits, 2),
    (_claims, 5),
    (_settles, 5),
    (_renews, 1),
    (_reaps, 2),
    (_back_offs, 1),
    (_requeues, 1),
)
OPS: st.SearchStrategy[Op] = st.sampled_from(
    [i for i, (_, weight) in enumerate(_WEIGHTED) for _ in range(weight)]
).flatmap(lambda i: _WEIGHTED[i][0])


@pytest.mark.timeout(900)  # passing takes seconds; shrinking a failure may take minutes
@settings(
    max_examples=60,
    deadline=None,
    report_multiple_bugs=False,  # shrink one failure only: shrinking these is slow
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# At least 10 steps (longer runs reach more states); a shrunk failure pads with Advance(ms=0).
@given(seeds=_seeds, ops=st.lists(OPS, min_size=10, max_size=40))
async def test_frontier_matches_model(store: Redis, seeds: Admit, ops: list[Op]) -> None:
    # Examples share the store fixture: each one gets its own crawl.
    keys = CrawlKeys(f"m{uuid.uuid4().hex[:12]}")
    clock = FakeClock()
    frontier, _ = await make_frontier(store, keys, SPEC, clock)
    model = Model(clock)
    try:
        for op in [seeds, *ops]:
            note(f"t={clock.now} {op}")
            await _step(frontier, model, op)
            if not isinstance(op, Advance):  # time alone changes nothing stored
                await _check(frontier, store, keys, model)
        # Steer generation towards the rarer paths: running out of attempts.
        target(float(len(model.dead)), label="dead letters before the drain")
        expired = sum(1 for x in model.dead if x.reason == "lease_expired")
        target(float(expired), label="leases expired for good before the drain")
        await _check_outputs(frontier, model)
        # Replay what ended dead, as `distcrawl requeue` does: timeouts one per call, then all.
        for reason, batch in (("timeout", 1), ("", 1000)):
            requeued = await frontier.requeue(reason or None, None, batch)
            event(f"final requeue {'some' if requeued.count else 'none'}")
            assert requeued == model.requeue(reason, "")
            await _check(frontier, store, keys, model)
        await _drain(frontier, store, keys, model)
    finally:
        domain_keys = [k for d in DOMAINS for k in (keys.queue(d), keys.domain(d))]
        await store.delete(*keys.all_fixed(), *domain_keys)
