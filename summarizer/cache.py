"""A content-hash cache: identical text is summarized once per model, prompt and schema."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from common.docsqueue import CacheWrite
from common.errors import StoreUnavailable
from common.keys import CrawlKeys
from common.protocol import CacheProbe
from common.scripts import CrawlScripts, ScriptRunner
from common.store import translate_errors

__all__ = ["CacheProbe", "SummaryCache", "content_key"]


def content_key(model: str, prompt: str, text: str, schema: str = "") -> str:
    """The cache key of an answer; ``schema``: the extraction schema's digest ("" for a
    summary), so no schema's answer is served for a summary or for another schema."""
    digest = hashlib.sha256()
    for part in (model, prompt, text):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    if schema:  # (summaries keep the keys they had)
        digest.update(b"schema\x00" + schema.encode())
    return digest.hexdigest()[:32]


class SummaryCache:
    """Cached summaries by content key, with single flight: while one caller computes a key,
    others (in this process, or in another one through a short Redis lock) wait for its result
    instead of paying for the same call.

    One round trip per lookup: a script looks the key up and takes its lock. The summary is
    then stored (and the lock dropped) by one pipeline, or, when the caller passes ``deferred``,
    handed to it as a CacheWrite to write in its own step: the summarizer worker writes it with
    the doc's settle, which saves a round trip per summary."""

    def __init__(
        self,
        redis: Redis,
        keys: CrawlKeys,
        lock_s: float = 10.0,
        scripts: ScriptRunner | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._run = CrawlScripts(scripts or ScriptRunner(redis), keys)
        self._lock_s = lock_s
        self._local: dict[str, asyncio.Future[str | None]] = {}

    async def single_flight(
        self,
        key: str,
        compute: Callable[[], Awaitable[str]],
        *,
        deferred: list[CacheWrite] | None = None,
    ) -> tuple[str, bool]:
        """(summary, cached): the cached summary, or ``compute()``'s, stored for the others
        (or appended to ``deferred`` for the caller to store; until it does, other processes
        wait on the key's lock, which expires after ``lock_s`` if the write never comes)."""
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
            write = CacheWrite(key, summary, unlock=locked)
            if deferred is None:
                await self._store(write)
            else:
                deferred.append(write)
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
                    await self._redis.delete(self._keys.summary_lock(key))

    async def _keep_lock(self, key: str) -> None:
        while True:
            await asyncio.sleep(self._lock_s / 3)
            try:
                async with translate_errors():
                    await self._redis.set(
                        self._keys.summary_lock(key), "1", xx=True, px=int(self._lock_s * 1000)
                    )
            except StoreUnavailable:
                continue

    async def _probe_or_wait(self, key: str) -> tuple[str | None, bool]:
        """(hit, False) on a hit; (None, True) with the key's lock taken; (None, False) when a
        holder neither finished nor died in time (compute without the lock). A holder that dies
        leaves the lock to expire; then this caller takes it."""
        deadline = time.monotonic() + self._lock_s + 5
        while True:
            res = await self._run.rows("docs_cache_probe", [key, int(self._lock_s * 1000)])
            answer = CacheProbe(int(res[0]))
            if answer is CacheProbe.HIT:
                return str(res[1]), False
            if answer is CacheProbe.LOCKED:
                return None, True
            if time.monotonic() >= deadline:
                return None, False
            await asyncio.sleep(0.2)

    async def _store(self, write: CacheWrite) -> None:
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._keys.summary_cache, write.key, write.summary)
            if write.unlock:
                pipe.delete(self._keys.summary_lock(write.key))
            await pipe.execute()

    async def get(self, key: str) -> str | None:
        async with translate_errors():
            value = await self._redis.hget(self._keys.summary_cache, key)
        return None if value is None else str(value)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """The cached summaries of ``keys`` (None for a miss), in one round trip."""
        if not keys:
            return []
        async with translate_errors():
            values = await self._redis.hmget(self._keys.summary_cache, keys)
        return [None if v is None else str(v) for v in values]

    async def put_many(self, summaries: dict[str, str]) -> None:
        """Store computed summaries without a lock (the Batch API's answers)."""
        if summaries:
            async with translate_errors():
                await self._redis.hset(self._keys.summary_cache, mapping=dict(summaries.items()))
