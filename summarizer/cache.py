"""The summary cache: identical text is summarized once per summarizer identity, by every crawl
on one Redis and in every pass of a crawl.

An entry is keyed by a digest of the page text and of everything that shapes the answer (the
engine's ``cache_identity``: model, prompt template, schema, output budget, long-page
settings), never by crawl, so a crawl on the same Redis, or a later pass of the same crawl, that
meets the same text gets the stored answer instead of paying for another call. Entries are
strings under ``common.keys.summary_cache_key`` (a hash tag of their own, spread over a
cluster's masters) with a time-to-live (``--llm-cache-ttl``) that starts again on every hit, so
the cache holds what is still being read and forgets the rest.

This module is the cache's one owner: the only code that reads or writes its keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis

from common.errors import StoreUnavailable
from common.keys import SUMMARY_CACHE_MATCH, summary_cache_key, summary_lock_key
from common.logging import get_logger
from common.protocol import CacheProbe
from common.scripts import ScriptRunner
from common.store import translate_errors

__all__ = ["CONTENT_KEY_VERSION", "CacheProbe", "SummaryCache", "content_key"]

log = get_logger(__name__)

CONTENT_KEY_VERSION = "2"
"""Part of every content key: a new version makes every older entry a miss (1: the keys of the
per-crawl cache, which lived under the crawl's prefix)."""


def content_key(identity: Sequence[str], text: str) -> str:
    """The cache key of an answer: a digest of ``identity`` (what produced it: the engine's
    ``cache_identity``, every setting that changes the answer) and of the page ``text``."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CONTENT_KEY_VERSION, *identity]).encode())
    digest.update(b"\x00")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


class SummaryCache:
    """Cached answers by content key, with single flight: while one caller computes a key,
    others (in this process, or in another one through a short Redis lock) wait for its answer
    instead of paying for the same call.

    One round trip per lookup: a script looks the key up (starting its time-to-live again on a
    hit) and takes its lock on a miss. A computed answer is stored, and the lock dropped, in one
    transaction right after it is computed, before the caller settles its doc: a crash between
    the two leaves the answer cached for the doc's next attempt, which is then a hit.

    ``ttl_s``: how long an entry lives after its last write or hit (0: for ever).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: float,
        lock_s: float = 10.0,
        scripts: ScriptRunner | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts or ScriptRunner(redis)
        self._ttl_ms = int(ttl_s * 1000)
        self._lock_s = lock_s
        self._local: dict[str, asyncio.Future[str | None]] = {}

    async def single_flight(
        self, key: str, compute: Callable[[], Awaitable[str]]
    ) -> tuple[str, bool]:
        """(answer, cached): the cached answer, or ``compute()``'s, stored for the others."""
        local = self._local.get(key)
        if local is not None:
            shared = await asyncio.shield(local)
            if shared is not None:
                return shared, True
        mine: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._local[key] = mine
        locked = False
        keepalive: asyncio.Task[None] | None = None
        try:
            hit, locked = await self._probe_or_wait(key)
            if hit is not None:
                mine.set_result(hit)
                return hit, True
            # The lock is short and kept alive while we compute: if this process dies, the
            # others take over within lock_s instead of waiting for a long TTL.
            keepalive = asyncio.create_task(self._keep_lock(key))
            summary = await compute()
            keepalive.cancel()
            await self._store(key, summary, unlock=locked)
            locked = False
            mine.set_result(summary)
            return summary, False
        finally:
            if keepalive is not None:
                keepalive.cancel()
            if not mine.done():
                mine.set_result(None)  # failed: waiters compute for themselves
            self._local.pop(key, None)
            if locked:
                async with translate_errors():
                    await self._redis.delete(summary_lock_key(key))

    async def _keep_lock(self, key: str) -> None:
        while True:
            await asyncio.sleep(self._lock_s / 3)
            try:
                async with translate_errors():
                    await self._redis.set(
                        summary_lock_key(key), "1", xx=True, px=int(self._lock_s * 1000)
                    )
            except StoreUnavailable:
                continue

    async def _probe_or_wait(self, key: str) -> tuple[str | None, bool]:
        """(hit, False) on a hit; (None, True) with the key's lock taken; (None, False) when a
        holder neither finished nor died in time (compute without the lock). A holder that dies
        leaves the lock to expire; then this caller takes it."""
        deadline = time.monotonic() + self._lock_s + 5
        keys = [summary_cache_key(key), summary_lock_key(key)]
        args: list[str | int | float] = [int(self._lock_s * 1000), self._ttl_ms]
        while True:
            res = await self._scripts.run("summary_cache_probe", keys, args)
            answer = CacheProbe(int(res[0]))
            if answer is CacheProbe.HIT:
                return str(res[1]), False
            if answer is CacheProbe.LOCKED:
                return None, True
            if time.monotonic() >= deadline:
                return None, False
            await asyncio.sleep(0.2)

    async def _store(self, key: str, summary: str, *, unlock: bool) -> None:
        """Store a computed answer (and drop its lock). Best effort: an answer that cannot be
        stored is still the caller's (its doc settles as usual, the next doc with this text
        computes again) and the lock, if the delete did not go either, expires by itself."""
        try:
            async with translate_errors():
                pipe = self._redis.pipeline(transaction=True)  # (one slot: one node)
                pipe.set(summary_cache_key(key), summary, px=self._ttl_ms or None)
                if unlock:
                    pipe.delete(summary_lock_key(key))
                await pipe.execute()
        except StoreUnavailable as exc:
            log.warning("summary_cache_write_failed", key=key, error=str(exc))

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The cached answers of ``keys`` (None for a miss), in one round trip per node; a hit
        starts its time-to-live again."""
        if not keys:
            return []
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                if self._ttl_ms:
                    pipe.getex(summary_cache_key(key), px=self._ttl_ms)
                else:
                    pipe.get(summary_cache_key(key))
            values = await pipe.execute()
        return [None if v is None else str(v) for v in values]

    async def put_many(self, summaries: dict[str, str]) -> None:
        """Store computed answers without a lock (the Batch API's answers)."""
        if not summaries:
            return
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            for key, summary in summaries.items():
                pipe.set(summary_cache_key(key), summary, px=self._ttl_ms or None)
            await pipe.execute()

    async def clear(self) -> int:
        """Delete every entry and lock of the cache on this store (every crawl's: they share
        it); how many keys. For benchmarks and tests that summarize the same texts again."""
        deleted = 0
        async with translate_errors():
            batch: list[str] = []
            async for name in self._redis.scan_iter(match=SUMMARY_CACHE_MATCH, count=1000):
                batch.append(str(name))
                if len(batch) >= 500:
                    deleted += int(await self._redis.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self._redis.delete(*batch))
        return deleted
