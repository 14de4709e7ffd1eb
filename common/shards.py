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
from typing import TypeVar

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.store import translate_errors

__all__ = ["LeaseRoutes", "ShardSchedule", "gather_shards", "group_by", "read_shard_count"]

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
