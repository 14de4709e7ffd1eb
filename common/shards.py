"""Working with a crawl's shards: how many it has, which to ask for work, routing by lease.

A crawl's frontier and docs queue live in S shards (common/keys.py); every script call touches
one shard. Crawler.frontier.Frontier and common.docsqueue.DocsQueue are facades over their
shards, and use these helpers to:

- learn S from the crawl's spec (``shards`` field of the crawl-level spec hash; a crawl whose
  spec is not written yet is read again on the next call, never cached as one shard);
- claim across shards without polling empty ones: each shard's claim says when it is next worth
  asking (``ShardSchedule``); a worker asks the due shards, starting one further each time so
  that no shard is always last;
- send settles and renewals to the shard that leased the item (``LeaseRoutes``), with a
  broadcast for a lease this process did not claim (all other shards answer "stale").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.scripts import CrawlScripts, ScriptRunner
from common.store import translate_errors

__all__ = [
    "LeaseRoutes",
    "OneShard",
    "ShardSchedule",
    "ShardSet",
    "gather_shards",
    "group_by",
    "read_shard_count",
]

T = TypeVar("T")
R = TypeVar("R")

# How soon a shard that had nothing claimable (and knew no ready time) is asked again: soon at
# first, then less often while it stays empty (so busy shards are served at once and idle ones
# cost a call a second).
FIRST_RECHECK_S = 0.05
RECHECK_S = 1.0


async def read_shard_count(redis: Redis, keys: CrawlKeys) -> int | None:
    """The crawl's shard count from its spec hash; None while no spec is written."""
    async with translate_errors():
        raw = await redis.hmget(keys.crawl_level.spec, ["json", "shards"])
    if raw[0] is None:
        return None
    return int(raw[1] or 1)  # specs written before shards existed: one shard


class OneShard:
    """The base of a one-shard queue (crawler.frontier.FrontierShard, common.docsqueue.DocsShard):
    its client and its scripts bound to the shard's keys. ``clock`` (ms) replaces the Redis
    server's clock; tests use it to make time explicit. Nothing connects in ``__init__``."""

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


class ShardSchedule:
    """When each shard is next worth a claim (monotonic seconds), and a rotating start."""

    def __init__(self, count: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._due = [0.0] * count
        self._idle = [FIRST_RECHECK_S] * count
        self._start = 0
        self._clock = clock

    def due(self) -> list[int]:
        """The shards to ask now, in order: rotated by one on every call."""
        n, now = len(self._due), self._clock()
        start, self._start = self._start, (self._start + 1) % n
        return [i % n for i in range(start, start + n) if self._due[i % n] <= now]

    def note(self, shard: int, got: bool, wait_s: float | None = None) -> None:
        """A claim on ``shard`` answered: it gave items (ask again at once), or work is due in
        ``wait_s``, or it knows no time (ask again after a back-off that grows while it stays
        empty, up to RECHECK_S)."""
        now = self._clock()
        if got:
            self._due[shard], self._idle[shard] = now, FIRST_RECHECK_S
            return
        idle = self._idle[shard]
        self._idle[shard] = min(RECHECK_S, idle * 2)
        self._due[shard] = now + (min(wait_s, RECHECK_S) if wait_s is not None else idle)

    def wake(self, shard: int) -> None:
        """Something changed in ``shard`` here (a lease settled): it may have work now."""
        self._due[shard], self._idle[shard] = 0.0, FIRST_RECHECK_S

    def next_wait(self) -> float:
        return max(0.0, min(self._due) - self._clock())


class LeaseRoutes:
    """Which shard leased each item this process holds (by fingerprint)."""

    def __init__(self) -> None:
        self._shard: dict[str, int] = {}

    def hold(self, fp: str, shard: int) -> None:
        self._shard[fp] = shard

    def drop(self, fp: str) -> None:
        self._shard.pop(fp, None)

    def split(self, fps: Iterable[str], count: int) -> tuple[dict[int, list[str]], list[str]]:
        """(fingerprints by shard, fingerprints of unknown shard)."""
        known: dict[int, list[str]] = {}
        unknown: list[str] = []
        for fp in fps:
            shard = self._shard.get(fp)
            if shard is None or shard >= count:
                unknown.append(fp)
            else:
                known.setdefault(shard, []).append(fp)
        return known, unknown


def group_by(items: Sequence[T], shard: Callable[[T], int]) -> dict[int, list[int]]:
    """Indexes of ``items`` by shard, each list in the items' order."""
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(shard(item), []).append(i)
    return groups


async def gather_shards(calls: Mapping[int, Awaitable[R]]) -> dict[int, R]:
    """Run one call per shard concurrently (each goes to its own slot, maybe its own node)."""
    keys = list(calls)
    results = await asyncio.gather(*(calls[k] for k in keys))
    return dict(zip(keys, results, strict=True))


S = TypeVar("S")
T_item = TypeVar("T_item")


class ShardSet(Generic[S]):
    """One crawl's shards of one kind (FrontierShard or DocsShard) and what the facades over
    them share: loading them, calling all of them, claiming over them on a schedule, and sending
    settles and renewals to the shard that leased each item. With one shard every helper is a
    direct call on it."""

    def __init__(self, redis: Redis, keys: CrawlKeys, make: Callable[[CrawlKeys], S]) -> None:
        self._redis = redis
        self._keys = keys.crawl_level
        self._make = make
        self._shards: list[S] | None = None
        self._schedule = ShardSchedule(1)
        self._routes = LeaseRoutes()

    async def get(self) -> list[S]:
        """The crawl's shards (one while the crawl has no spec yet: not cached then, since a
        producer may yet write a spec of S shards)."""
        if self._shards is None:
            count = await read_shard_count(self._redis, self._keys)
            shards = [self._make(k) for k in self._keys.shard_keys(count or 1)]
            if count is None:
                return shards
            self._shards, self._schedule = shards, ShardSchedule(len(shards))
        return self._shards

    def forget(self) -> None:
        """Read the shard count again on next use (the spec was just written)."""
        self._shards = None

    async def each(self, call: Callable[[S], Awaitable[R]]) -> list[R]:
        """``call`` on every shard, concurrently; the answers in shard order."""
        shards = await self.get()
        if len(shards) == 1:
            return [await call(shards[0])]
        answers = await gather_shards({k: call(s) for k, s in enumerate(shards)})
        return [answers[k] for k in range(len(shards))]

    async def claim(
        self,
        n: int,
        call: Callable[[S, int], Awaitable[tuple[Sequence[T_item], float | None, bool]]],
        fp: Callable[[T_item], str],
    ) -> tuple[list[T_item], int, int]:
        """Up to ``n`` items from the shards that are due (``call(shard, m)`` answers items,
        the shard's wait and whether it is paused); (items, shards asked, shards paused)."""
        shards = await self.get()
        items: list[T_item] = []
        asked = paused = 0
        for k in self._schedule.due():
            got, wait_s, is_paused = await call(shards[k], n - len(items))
            asked += 1
            paused += is_paused
            self._schedule.note(k, bool(got), wait_s)
            for item in got:
                self._routes.hold(fp(item), k)
            items += got
            if len(items) >= n:
                break
        return items, asked, paused

    def next_wait(self) -> float:
        return self._schedule.next_wait()

    async def routed(
        self,
        fps: Sequence[str],
        call: Callable[[S, list[int]], Awaitable[Sequence[R]]],
        stale: R,
    ) -> list[R]:
        """Settle items (one answer per item): ``call(shard, indexes)`` on the shard that
        leased each one, and on every shard for an item this process did not lease (the others
        answer ``stale``, which then stands for "no shard had it"). The leases end here."""
        shards = await self.get()
        if len(shards) == 1:
            return list(await call(shards[0], list(range(len(fps)))))
        index = {f: i for i, f in enumerate(fps)}
        known, unknown = self._routes.split(index, len(shards))
        where = {k: [index[f] for f in part] for k, part in known.items()}
        answers = await gather_shards({k: call(shards[k], idx) for k, idx in where.items()})
        results = [stale] * len(fps)
        for k, idx in where.items():
            self._schedule.wake(k)  # a slot of this shard is free again
            for i, answer in zip(idx, answers[k], strict=True):
                results[i] = answer
        for part in known.values():
            for f in part:
                self._routes.drop(f)
        if unknown:
            idx = [index[f] for f in unknown]
            everywhere = await gather_shards({k: call(s, idx) for k, s in enumerate(shards)})
            for j, i in enumerate(idx):
                found = [a[j] for a in everywhere.values() if a[j] != stale]
                results[i] = found[0] if found else stale
        return results

    async def renew(
        self, fps: Sequence[str], call: Callable[[S, list[str]], Awaitable[int]]
    ) -> int:
        """Renew leases on the shards that hold them (every shard for one leased elsewhere)."""
        shards = await self.get()
        if len(shards) == 1:
            return await call(shards[0], list(fps))
        known, unknown = self._routes.split(fps, len(shards))
        calls = {k: call(shards[k], part) for k, part in known.items()}
        if unknown:
            calls |= {len(shards) + k: call(s, unknown) for k, s in enumerate(shards)}
        return sum((await gather_shards(calls)).values())
