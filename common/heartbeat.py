"""Worker heartbeats: one hash per crawl, worker id -> JSON (role, host, pid, last beat...)."""

from __future__ import annotations

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.settings import WorkerSettings
from common.store import translate_errors

__all__ = ["DEFAULT_HEARTBEAT_S", "Heartbeats", "is_stale"]

DEFAULT_HEARTBEAT_S: float = WorkerSettings.model_fields["heartbeat_s"].default


def is_stale(age_s: float, heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> bool:
    """The one definition of a stale worker (status, top and /healthz use it): its last beat
    is older than three heartbeat periods plus 5 s of slack for a busy event loop."""
    return age_s > 3 * heartbeat_s + 5.0


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
