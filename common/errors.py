"""The error tree. Foreign exceptions are translated into these in one module per library."""

from __future__ import annotations

__all__ = [
    "ClassifiedError",
    "ConfigError",
    "DistcrawlError",
    "InvalidUrl",
    "OutputError",
    "PermanentError",
    "RetryableError",
    "StoreFull",
    "StoreUnavailable",
    "find_cause",
    "status_class",
]


class DistcrawlError(Exception):
    """Base of every error distcrawl raises on purpose; its message is fit for a user."""


class ConfigError(DistcrawlError):
    """A setting, flag or crawl spec is wrong: fix the configuration, retrying will not help."""


class StoreUnavailable(DistcrawlError):
    """Redis (or the embedded store) cannot be reached right now."""


class StoreFull(StoreUnavailable):
    """Redis is at ``maxmemory`` and refuses writes (noeviction): wait, like an outage."""


class OutputError(DistcrawlError):
    """Output (WARC files) cannot be written: a missing or read-only folder, a full disk.

    The worker stops claiming and releases what it holds rather than settle pages whose
    output was lost."""


class InvalidUrl(DistcrawlError):
    """A URL that cannot be crawled (bad syntax, unsupported scheme, no host)."""


def status_class(status: int | None) -> str:
    """``2xx``..``5xx`` for an HTTP status, ``error`` when there was no response."""
    return f"{status // 100}xx" if status is not None and 100 <= status < 600 else "error"


class ClassifiedError(DistcrawlError):
    """A failure with what its handlers need: a short ``reason`` (counts, metrics, records),
    the HTTP ``status`` if there was a response, and whether the whole domain should back off
    (the host is struggling, not just this URL)."""

    def __init__(
        self, message: str, *, reason: str, status: int | None = None, domain_backoff: bool = False
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.domain_backoff = domain_backoff

    @property
    def status_class(self) -> str:
        return status_class(self.status)


class RetryableError(ClassifiedError):
    """A failure that may pass: try again later, no sooner than ``retry_after_s`` if given."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        retry_after_s: float | None = None,
        status: int | None = None,
        domain_backoff: bool = False,
    ) -> None:
        super().__init__(message, reason=reason, status=status, domain_backoff=domain_backoff)
        self.retry_after_s = retry_after_s


class PermanentError(ClassifiedError):
    """A failure that will not pass by retrying (404, bad content, unknown payload version)."""


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
