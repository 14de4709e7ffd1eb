"""The SSRF guard: by default the crawler fetches only public addresses.

Checked after DNS resolution (a resolver wrapper) and for IP literals before connecting, on
every redirect hop, because the fetcher follows redirects itself. ``allow_private`` turns it
off (local test sites, intranet crawls). Through a proxy the proxy resolves the site's name, so
ProxiedHostGuard resolves it here too and refuses a non-public answer (a name that does not
resolve here is left to the proxy: its network is its operator's to guard).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from crawler.classify import BlockedAddress

__all__ = ["GuardedResolver", "ProxiedHostGuard", "check_literal_host", "is_public_address"]


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local (incl. 169.254.169.254), reserved, multicast."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_literal_host(host: str) -> None:
    """Raise BlockedAddress when ``host`` is an IP literal that is not public."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not is_public_address(bare):
        raise BlockedAddress(f"refusing to fetch non-public address {host} (see --allow-private)")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops non-public addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            raise BlockedAddress(
                f"{host} resolves only to non-public addresses (see --allow-private)"
            )
        return public

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - forwarding only
        return getattr(self._inner, name)


class ProxiedHostGuard:
    """The SSRF guard for a fetch through a proxy: the site's name must resolve (here) to
    public addresses only. Answers are kept ``ttl_s`` (like the connector's DNS cache)."""

    def __init__(self, ttl_s: float) -> None:
        self._resolver = GuardedResolver()
        self._ttl = ttl_s
        self._checked: dict[str, float] = {}

    async def check(self, host: str) -> None:
        """Raise BlockedAddress when ``host`` is or resolves to a non-public address."""
        check_literal_host(host)
        bare = host.strip("[]")
        try:
            ipaddress.ip_address(bare.split("%", 1)[0])
            return  # a public literal
        except ValueError:
            pass
        if self._checked.get(bare, 0.0) > time.monotonic():
            return
        try:
            await self._resolver.resolve(bare, 0, socket.AF_UNSPEC)
        except BlockedAddress:
            raise
        except OSError:
            return  # not resolvable here: only the proxy can reach it
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[bare] = time.monotonic() + self._ttl

    async def close(self) -> None:
        await self._resolver.close()
