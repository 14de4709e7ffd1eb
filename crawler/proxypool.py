"""Choosing a proxy for each fetch, and the pool's health shared by every worker through Redis.

Selection is sticky per domain and needs no coordination: each domain ranks the proxies by a
hash of (proxy name, domain) (rendezvous hashing) and takes the best usable one, so every worker
sends a domain through the same proxy while it works (its sessions and cookies stay coherent on
one exit address). When that proxy fails, only its domains move, each to its next-ranked proxy.

A proxy fails when it cannot be reached or times out while connecting, refuses the credentials
(407), breaks the SOCKS handshake, or answers a status given to ``--proxy-rotate-on``. Failures
back it off crawl-wide with the crawler's curve (common/backoff.py, the one domains use):
``proxies`` in Redis holds each proxy's failures in a row and when its back-off ends, read by
every worker at most once a second. After the back-off the proxy takes traffic again; one more
failure backs it off longer, one success forgets its failures. A 407 takes the proxy out of this
worker's pool (credentials are per worker); when every proxy refused them, the worker stops
with one error. When no proxy is usable the pool is down: reported once crawl-wide, and workers
pause claiming until a back-off ends, rather than failing every URL.

Politeness is untouched: rates and in-flight caps are per domain in the frontier, whatever proxy
a fetch takes, so rotating proxies never raises the rate a site sees.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import aiohttp

from common.backoff import crawl_backoff_s
from common.errors import ConfigError
from common.logging import get_logger
from common.metrics import CrawlerMetrics
from common.scripts import CrawlScripts
from crawler.classify import ProxyFailed, ProxyPoolDown
from crawler.proxies import ProxyEndpoint

__all__ = ["ProxyHealth", "ProxyPool", "Route", "preference"]

log = get_logger(__name__)

_BACKOFF_STEPS = 10  # failures in a row after which the curve stays at its cap
_REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class Route:
    """How a fetch goes through one proxy: its session, and aiohttp's ``proxy=`` argument
    (None for SOCKS, where the session's connector is the proxy)."""

    proxy: ProxyEndpoint
    session: aiohttp.ClientSession
    proxy_url: str | None

    @property
    def name(self) -> str:
        return self.proxy.name


class ProxyHealth:
    """The crawl-wide health hash (common/lua/proxy_health.lua)."""

    def __init__(self, scripts: CrawlScripts) -> None:
        self._scripts = scripts

    async def fail(self, name: str) -> tuple[int, float, bool]:
        """Count a failure: (failures in a row, seconds of back-off left, whether this call
        counted: False when the proxy was already backed off)."""
        delays = [str(int(crawl_backoff_s(i) * 1000)) for i in range(1, _BACKOFF_STEPS + 1)]
        fails, wait_ms, counted = await self._scripts.rows("proxy_health", ["fail", name, *delays])
        return int(fails), int(wait_ms) / 1000, bool(int(counted))

    async def ok(self, name: str) -> None:
        await self._scripts("proxy_health", ["ok", name])

    async def report_down(self) -> bool:
        """Record that the pool is down; True for the first worker to say so."""
        return bool(int(await self._scripts("proxy_health", ["down"])))

    async def read(self) -> dict[str, tuple[int, float]]:
        """Each proxy with a failure on record: (failures in a row, seconds of back-off left)."""
        flat = await self._scripts.rows("proxy_health", ["read"])
        return {
            str(flat[i]): (int(flat[i + 1]), int(flat[i + 2]) / 1000)
            for i in range(0, len(flat), 3)
        }


class ProxyPool:
    """This worker's routes, the pool's health as last read, and the choice of a route."""

    def __init__(
        self,
        routes: list[Route],
        health: ProxyHealth,
        *,
        rotate_on: frozenset[int],
        metrics: CrawlerMetrics | None = None,
    ) -> None:
        self._routes = routes
        self._health = health
        self._rotate_on = rotate_on
        self._metrics = metrics
        self._fails: dict[str, int] = {}
        self._back_until: dict[str, float] = {}  # time.monotonic() at which a back-off ends
        self._refused: dict[str, str] = {}
        self._read_at = float("-inf")
        self._down = False
        self.fatal: ConfigError | None = None
        for route in routes:
            self._show(route.name)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self._routes]

    def usable(self) -> list[Route]:
        now = time.monotonic()
        return [
            r
            for r in self._routes
            if r.name not in self._refused and self._back_until.get(r.name, 0.0) <= now
        ]

    def route(self, domain: str) -> Route:
        """The domain's proxy: its best-ranked usable one."""
        usable = self.usable()
        if not usable:
            raise ProxyPoolDown("no proxy of the pool is usable now")
        return max(usable, key=lambda r: preference(r.name, domain))

    async def gate(self) -> float | None:
        """Before claiming: None when a proxy is usable, else the seconds until one may be
        (the pool is down; reported once crawl-wide)."""
        if time.monotonic() - self._read_at >= _REFRESH_S:
            await self._refresh()
        if self.usable():
            if self._down:
                self._down = False
                log.info("proxy_pool_up", usable=len(self.usable()))
            return None
        if len(self._refused) == len(self._routes):
            return 1.0
        if not self._down:
            self._down = True
            first = await self._health.report_down()
            (log.warning if first else log.info)(
                "proxy_pool_down", proxies=len(self._routes), next_in_s=round(self._wait(), 1)
            )
        return max(0.05, self._wait())

    def _wait(self) -> float:
        now = time.monotonic()
        waits = [
            self._back_until.get(r.name, 0.0) - now
            for r in self._routes
            if r.name not in self._refused
        ]
        return max(0.0, min(waits, default=1.0))

    async def _refresh(self) -> None:
        read = await self._health.read()
        now = time.monotonic()
        self._read_at = now
        for route in self._routes:
            fails, wait_s = read.get(route.name, (0, 0.0))
            self._fails[route.name] = fails
            self._back_until[route.name] = now + wait_s
            self._show(route.name)

    def status_failure(self, route: Route, status: int, retry_after_s: float | None) -> None:
        """Raise ProxyFailed for a status that is the proxy's doing: 407 (its credentials),
        or one of ``--proxy-rotate-on`` (the site blocks the proxy's address)."""
        if status == 407:
            raise ProxyFailed(
                f"{route.proxy.describe()} refused the credentials",
                reason="proxy_auth",
                proxy=route.name,
                unsent=True,
                auth=True,
                status=status,
            )
        if status in self._rotate_on:
            raise ProxyFailed(
                f"HTTP {status} through {route.proxy.describe()} (--proxy-rotate-on)",
                reason=f"proxy_http_{status}",
                proxy=route.name,
                unsent=False,
                status=status,
                retry_after_s=retry_after_s,
                domain_backoff=status in (429, 503),
            )

    async def failed(self, route: Route, exc: ProxyFailed) -> None:
        """Take the failure into account: back the proxy off (crawl-wide), or, for a 407, take
        it out of this worker's pool."""
        if self._metrics is not None:
            outcome = "refused" if exc.auth else "failed"
            self._metrics.proxy_fetches.labels(route.name, outcome).inc()
        if exc.auth:
            self._refuse(route, str(exc))
            return
        fails, wait_s, counted = await self._health.fail(route.name)
        self._fails[route.name] = fails
        self._back_until[route.name] = time.monotonic() + wait_s
        self._show(route.name)
        if counted:
            log.warning(
                "proxy_failed",
                proxy=route.name,
                reason=exc.reason,
                failures=fails,
                backoff_s=round(wait_s, 1),
            )

    def _refuse(self, route: Route, why: str) -> None:
        if route.name in self._refused:
            return
        self._refused[route.name] = why
        self._show(route.name)
        log.warning("proxy_refused", proxy=route.name, error=why)
        if len(self._refused) == len(self._routes):
            self.fatal = ConfigError(
                "; ".join(self._refused.values())
                + ": check the proxy URLs in --proxy-file or DISTCRAWL_PROXY__URLS"
            )

    async def succeeded(self, route: Route) -> None:
        if self._metrics is not None:
            self._metrics.proxy_fetches.labels(route.name, "ok").inc()
        if self._fails.get(route.name):
            self._fails[route.name] = 0
            await self._health.ok(route.name)
            log.info("proxy_recovered", proxy=route.name)

    def _show(self, name: str) -> None:
        if self._metrics is None:
            return
        up = name not in self._refused and self._back_until.get(name, 0.0) <= time.monotonic()
        self._metrics.proxy_up.labels(name).set(1 if up else 0)


def preference(name: str, domain: str) -> int:
    """How much ``domain`` prefers the proxy ``name`` (rendezvous hashing: the usable proxy
    with the highest preference carries the domain)."""
    digest = hashlib.blake2b(f"{name}\0{domain}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
