"""Fetch outcomes classified in one place: what is retried, what is final, what is skipped.

This is the only module that knows aiohttp's exception types; everything else sees
RetryableError, PermanentError or SkipPage, each with a short ``reason`` used in counts,
metrics and page records.
"""

from __future__ import annotations

import asyncio

import aiohttp
import aiohttp_socks

from common.backoff import parse_retry_after
from common.errors import DistcrawlError, PermanentError, RetryableError, find_cause

__all__ = [
    "BlockedAddress",
    "ProxyFailed",
    "ProxyPoolDown",
    "SkipPage",
    "check_status",
    "proxy_failure",
    "translate_exception",
]


class SkipPage(PermanentError):
    """A page deliberately not crawled (robots, content type, scope): outcome ``skipped``."""


class BlockedAddress(OSError):
    """The host resolves to an address the crawler may not fetch (SSRF guard)."""


class ProxyFailed(RetryableError):
    """The proxy a fetch went through failed (the site is not to blame): the URL goes back,
    and the proxy backs off. ``unsent``: the request never reached the site, so the URL is
    released without spending one of its attempts. ``auth``: the proxy refused the
    credentials (407), which no retry heals."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        proxy: str,
        unsent: bool,
        auth: bool = False,
        status: int | None = None,
        retry_after_s: float | None = None,
        domain_backoff: bool = False,
    ) -> None:
        super().__init__(
            message,
            reason=reason,
            status=status,
            retry_after_s=retry_after_s,
            domain_backoff=domain_backoff,
        )
        self.proxy = proxy
        self.unsent = unsent
        self.auth = auth


class ProxyPoolDown(ProxyFailed):
    """No proxy of the pool may be used now: the URL goes back untouched, the worker pauses."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="proxies_down", proxy="", unsent=True)


def proxy_failure(exc: BaseException) -> tuple[str, bool] | None:
    """``(reason, auth)`` when ``exc``, raised by a fetch through a proxy, is the proxy's
    failure rather than the site's: the proxy cannot be reached or timed out while connecting,
    refused the credentials, or broke the SOCKS handshake. None otherwise (a read timeout or a
    reset mid-response may be the site's doing, and is retried as without a proxy)."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # CONNECT (https target) answered
        return ("proxy_auth", True) if exc.status == 407 else None
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp_socks.ProxyConnectionError):
        return "proxy_connect", False
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp_socks.ProxyTimeoutError):
        return "proxy_timeout", False
    if isinstance(exc, aiohttp_socks.ProxyError):
        if "authentication" in str(exc).lower():
            return "proxy_auth", True
        # SOCKS5 replies 3-6 (network/host unreachable, refused, TTL): the site's side
        return None if exc.error_code in (3, 4, 5, 6) else ("proxy_error", False)
    return None


def check_status(status: int, retry_after: str | None) -> None:
    """Raise for a status that is not a success: 429/5xx/408 retry, other 4xx are final; 429
    and 503 say the host is overloaded, so its whole domain backs off."""
    if 200 <= status < 300:
        return
    reason = f"http_{status}"
    if status in (408, 425, 429) or 500 <= status < 600:
        raise RetryableError(
            f"HTTP {status}",
            reason=reason,
            retry_after_s=parse_retry_after(retry_after),
            status=status,
            domain_backoff=status in (429, 503),
        )
    raise PermanentError(f"HTTP {status}", reason=reason, status=status)


def _proxy_side(exc: BaseException) -> RetryableError | None:
    """A proxy's report that it could not reach the site (the site's side, retried)."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # a CONNECT answer other than 407
        return RetryableError(
            f"proxy could not connect: HTTP {exc.status}",
            reason=f"proxy_connect_{exc.status}",
            domain_backoff=True,
        )
    if isinstance(exc, aiohttp_socks.ProxyError):  # a SOCKS reply: host unreachable, refused
        return RetryableError(f"proxy could not connect: {exc}", reason="connect_error")
    return None


def translate_exception(exc: BaseException) -> DistcrawlError:
    """The distcrawl error for a failure raised while fetching."""
    if isinstance(exc, DistcrawlError):
        return exc
    blocked = find_cause(exc, BlockedAddress)
    if blocked is not None:
        return SkipPage(str(blocked), reason="blocked_address")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return RetryableError(f"timed out: {exc}", reason="timeout", domain_backoff=True)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return RetryableError(f"DNS lookup failed: {exc}", reason="dns_error")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
        # An untrusted or broken certificate does not heal by retrying.
        return PermanentError(f"TLS failed: {exc}", reason="tls_error")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return RetryableError(f"cannot connect: {exc}", reason="connect_error", domain_backoff=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return RetryableError(f"broken body: {exc}", reason="bad_body", domain_backoff=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | OSError):
        return RetryableError(
            f"connection lost: {exc}", reason="connection_reset", domain_backoff=True
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentError(f"invalid URL: {exc}", reason="invalid_url")
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp_socks.ProxyError):
        message = getattr(exc, "message", exc)  # (a SOCKS ProxyError is always _proxy_side's)
        return _proxy_side(exc) or PermanentError(f"bad response: {message}", reason="bad_response")
    if isinstance(exc, aiohttp.ClientError | ValueError | UnicodeError):
        return PermanentError(f"{type(exc).__name__}: {exc}", reason="client_error")
    raise exc
