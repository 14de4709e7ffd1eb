"""A content-hash cache: identical text is summarized once per model and prompt."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from common.errors import StoreUnavailable
from common.keys import CrawlKeys
from common.store import translate_errors

__all__ = ["SummaryCache", "content_key"]


def content_key(model: str, prompt: str, text: str) -> str:
    digest = hashlib.sha256()
    for part in (model, prompt, text):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


class SummaryCache:
    """Cached summaries by content key, with single flight: while one caller computes a key,
    others (in this process, or in another one through a short Redis lock) wait for its result
    instead of paying for the same call."""

    def __init__(self, redis: Redis, keys: CrawlKeys, lock_s: float = 10.0) -> None:
        self._redis = redis
        self._key = keys.summary_cache
        self._lock_prefix = keys.summary_cache + ":lock:"
        self._lock_s = lock_s
        self._local: dict[str, asyncio.Future[str | None]] = {}

    async def single_flight(
        self, key: str, compute: Callable[[], Awaitable[str]]
    ) -> tuple[str, bool]:
        """(summary, cached): the cached summary, or ``compute()``'s, stored for the others."""
        hit = await self.get(key)
        if hit is not None:
            return hit, True
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
            waited, locked = await self._lock_or_wait(key)
            if waited is not None:
                mine.set_result(waited)
                return waited, True
            # The lock is short and kept alive while we compute: if this process dies, the
            # others take over within lock_s instead of waiting for a long TTL.
            keepalive = asyncio.create_task(self._keep_lock(key))
            summary = await compute()
            await self.put(key, summary)
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
                    await self._redis.delete(self._lock_prefix + key)

    async def _keep_lock(self, key: str) -> None:
        while True:
            await asyncio.sleep(self._lock_s / 3)
            try:
                async with translate_errors():
                    await self._redis.set(self._lock_prefix + key, "1", xx=True,
                                          ex=int(self._lock_s))
            except StoreUnavailable:
                continue

    async def _lock_or_wait(self, key: str) -> tuple[str | None, bool]:
        """Take the key's lock (None, True), or wait for its holder's summary (hit, False).

        A holder that dies leaves the lock to expire; then this caller takes it."""
        deadline = time.monotonic() + self._lock_s + 5
        while time.monotonic() < deadline:
            async with translate_errors():
                if await self._redis.set(self._lock_prefix + key, "1", nx=True,
                                         ex=int(self._lock_s)):
                    return None, True
            await asyncio.sleep(0.2)
            hit = await self.get(key)
            if hit is not None:
                return hit, False
        return None, False

    async def get(self, key: str) -> str | None:
        async with translate_errors():
            value = await self._redis.hget(self._key, key)
        return None if value is None else str(value)

    async def put(self, key: str, summary: str) -> None:
        async with translate_errors():
            await self._redis.hset(self._key, key, summary)
