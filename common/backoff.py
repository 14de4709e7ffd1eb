"""Retry timing shared by the crawler and the summarizer: Retry-After parsing and back-off."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

__all__ = [
    "MAX_RETRY_AFTER_S",
    "backoff_s",
    "crawl_backoff_s",
    "parse_retry_after",
    "retry_after_from_headers",
]

MAX_RETRY_AFTER_S = 3600.0
# The crawler's curve: a URL's retry delay, its domain's back-off, and a failing proxy's.
CRAWL_BACKOFF_BASE_S = 2.0
CRAWL_BACKOFF_CAP_S = 300.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (OpenAI and others) first, then the standard ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return min(max(float(millis) / 1000, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def backoff_s(attempt: int, base_s: float, cap_s: float, *, full_jitter: bool = False) -> float:
    """Exponential back-off before retry number ``attempt`` (1-based).

    Full jitter (uniform in [0, ceiling]) spreads many clients best; the default keeps at least
    half the ceiling, for callers that must not come back immediately.
    """
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    if full_jitter:
        return float(random.uniform(0, ceiling))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def crawl_backoff_s(attempt: int) -> float:
    """The crawler's back-off before retry number ``attempt``: for a URL, its domain (when
    the host struggles) and a proxy that failed ``attempt`` times in a row."""
    return backoff_s(attempt, CRAWL_BACKOFF_BASE_S, CRAWL_BACKOFF_CAP_S)
