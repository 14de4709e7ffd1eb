"""Fetch outcomes classified in one place: what is retried, what is final, what is skipped.

This is the only module that knows aiohttp's exception types; everything else sees
RetryableError, PermanentError or SkipPage, each with a short ``reason`` used in counts,
metrics and page records.
"""

from __future__ import annotations

import asyncio

import aiohttp

from common.backoff import parse_retry_after
from common.errors import DistcrawlError, PermanentError, RetryableError, find_cause

__all__ = [
    "BlockedAddress",
    "SkipPage",
    "check_status",
    "translate_exception",
]


class SkipPage(PermanentError):
    """A page deliberately not crawled (robots, content type, scope): outcome ``skipped``."""


class BlockedAddress(OSError):
    """The host resolves to an address the crawler may not fetch (SSRF guard)."""


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
    if isinstance(exc, aiohttp.ClientResponseError):
        return PermanentError(f"bad response: {exc.message}", reason="bad_response")
    if isinstance(exc, aiohttp.ClientError | ValueError | UnicodeError):
        return PermanentError(f"{type(exc).__name__}: {exc}", reason="client_error")
    raise exc
