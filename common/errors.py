"""The error tree. Foreign exceptions are translated into these in one module per library."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DistcrawlError",
    "InvalidUrl",
    "PermanentError",
    "RetryableError",
    "StoreFull",
    "StoreUnavailable",
    "find_cause",
]


class DistcrawlError(Exception):
    """Base of every error distcrawl raises on purpose; its message is fit for a user."""


class ConfigError(DistcrawlError):
    """A setting, flag or crawl spec is wrong: fix the configuration, retrying will not help."""


class StoreUnavailable(DistcrawlError):
    """Redis (or the embedded store) cannot be reached right now."""


class StoreFull(StoreUnavailable):
    """Redis is at ``maxmemory`` and refuses writes (noeviction): wait, like an outage."""


class InvalidUrl(DistcrawlError):
    """A URL that cannot be crawled (bad syntax, unsupported scheme, no host)."""


class RetryableError(DistcrawlError):
    """A failure that may pass: try again later, no sooner than ``retry_after_s`` if given."""

    def __init__(self, message: str, *, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class PermanentError(DistcrawlError):
    """A failure that will not pass by retrying (404, bad content, unknown payload version)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def find_cause(
    exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """``exc`` or the first exception of ``kind`` in its chain of causes and contexts."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
