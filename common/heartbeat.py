"""Worker heartbeats: one hash per crawl, worker id -> JSON (role, host, pid, last beat...)."""

from __future__ import annotations

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.store import translate_errors

__all__ = ["Heartbeats"]


class Heartbeats:
    def __init__(self, redis: Redis, keys: CrawlKeys) -> None:
        self._redis = redis
        self._key = keys.workers

    async def beat(self, worker: str, beat: str) -> None:
        async with translate_errors():
            await self._redis.hset(self._key, worker, beat)

    async def forget(self, worker: str) -> None:
        async with translate_errors():
            await self._redis.hdel(self._key, worker)

    async def all(self) -> dict[str, str]:
        async with translate_errors():
            raw = await self._redis.hgetall(self._key)
        return {str(k): str(v) for k, v in raw.items()}
