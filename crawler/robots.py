"""robots.txt, fetched once per domain per TTL and shared by all workers through Redis.

One worker takes a short lock and fetches; the others wait for its copy (or, if it dies, take
the lock after it expires). Each process also keeps parsed copies in memory until the TTL.
404 and other 4xx mean "everything allowed"; 5xx and network errors make the URL retry later
(RetryableError) rather than guessing either way. Crawl-delay lowers the domain's rate.
"""

from __future__ import annotations

import asyncio
import time

from protego import Protego
from redis.asyncio import Redis

from common.errors import PermanentError, RetryableError
from common.keys import CrawlKeys
from common.logging import get_logger
from common.store import translate_errors
from crawler.fetch import Fetcher
from crawler.frontier import Frontier

__all__ = ["MAX_ROBOTS_BYTES", "RobotsCache"]

log = get_logger(__name__)
_ALLOW_ALL = ""
_LOCK_S = 30
MAX_ROBOTS_BYTES = 512 * 1024


class RobotsCache:
    def __init__(
        self,
        redis: Redis,
        keys: CrawlKeys,
        frontier: Frontier,
        fetcher: Fetcher,
        user_agent: str,
        ttl_s: int,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._frontier = frontier
        self._fetcher = fetcher
        self._agent = user_agent.split("/", 1)[0]
        self._ttl = max(ttl_s, 60)
        self._local: dict[str, tuple[float, Protego]] = {}
        self._pending: dict[str, asyncio.Task[Protego]] = {}

    async def allowed(self, url: str, scheme: str, domain: str) -> bool:
        parser = await self._parser(scheme, domain)
        return bool(parser.can_fetch(url, self._agent))

    async def _parser(self, scheme: str, domain: str) -> Protego:
        cached = self._local.get(domain)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._pending.get(domain)
        if task is None:  # one lookup per domain per process, however many slots ask
            task = asyncio.create_task(self._load(scheme, domain))
            self._pending[domain] = task
            task.add_done_callback(lambda _: self._pending.pop(domain, None))
        return await asyncio.shield(task)

    async def _load(self, scheme: str, domain: str) -> Protego:
        key = self._keys.robots(domain)
        for _ in range(int(_LOCK_S / 0.25) + 4):
            async with translate_errors():
                body = await self._redis.get(key)
                if body is None and await self._redis.set(
                    self._keys.robots_lock(domain), "1", nx=True, ex=_LOCK_S
                ):
                    body = await self._fetch_and_share(scheme, domain)
            if body is not None:
                parser = Protego.parse(str(body))
                self._local[domain] = (time.monotonic() + self._ttl, parser)
                return parser
            await asyncio.sleep(0.25)
        raise RetryableError(f"robots.txt of {domain} not available", reason="robots_wait")

    async def _fetch_and_share(self, scheme: str, domain: str) -> str:
        url = f"{scheme}://{domain}/robots.txt"
        try:
            result = await self._fetcher.fetch(url, accept_any_type=True)
            body = result.text()[:MAX_ROBOTS_BYTES]
        except PermanentError as exc:  # 4xx (and skips): no usable robots.txt, all allowed
            log.info("robots_missing", domain=domain, reason=exc.reason)
            body = _ALLOW_ALL
        except RetryableError:
            async with translate_errors():
                await self._redis.delete(self._keys.robots_lock(domain))
            raise
        parser = Protego.parse(body)
        delay = parser.crawl_delay(self._agent)
        if delay:
            await self._frontier.set_delay(domain, float(delay))
            log.info("robots_crawl_delay", domain=domain, seconds=float(delay))
        async with translate_errors():
            await self._redis.set(self._keys.robots(domain), body, ex=self._ttl)
        return body
