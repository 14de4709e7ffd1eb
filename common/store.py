"""Opening the Redis client and its errors.

The embedded store is a real server too (common/private_server.py: `distcrawl run` starts it and
connects here with its URL), so single-process mode shares every code path with distributed mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import redis.exceptions
from redis.asyncio import Redis

from common.errors import ConfigError, StoreFull, StoreUnavailable

__all__ = [
    "EMBEDDED",
    "hash_items",
    "open_store",
    "redact_url",
    "redis_memory",
    "translate_errors",
]

EMBEDDED = "embedded"
# States a server passes through (failover, restart, memory pressure): retry later. redis-py
# strips the code from the message of the errors it has a class for, so both are checked.
_TRANSIENT = ("OOM", "READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS")
_TRANSIENT_CLASSES = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@contextlib.asynccontextmanager
async def translate_errors(url: str = "") -> AsyncIterator[None]:
    """Turn redis-py's connection failures into StoreUnavailable (the one place that does)."""
    try:
        yield
    except redis.exceptions.AuthenticationError as exc:
        where = f" at {redact_url(url)}" if url else ""
        raise ConfigError(f"Redis{where} refused the credentials: {_first_line(exc)}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        where = f" at {redact_url(url)}" if url else ""
        raise StoreUnavailable(f"Redis unreachable{where}: {_first_line(exc)}") from exc
    except redis.exceptions.BusyLoadingError as exc:
        raise StoreUnavailable(f"Redis is loading its data: {_first_line(exc)}") from exc
    except redis.exceptions.OutOfMemoryError as exc:
        raise StoreFull(f"Redis is full and refuses writes (OOM): {_first_line(exc)}") from exc
    except _TRANSIENT_CLASSES as exc:
        raise StoreUnavailable(f"Redis cannot serve writes now: {_first_line(exc)}") from exc
    except redis.exceptions.ResponseError as exc:
        text = str(exc)
        if text.startswith("OOM"):
            raise StoreFull(f"Redis is full and refuses writes: {_first_line(exc)}") from exc
        if text.startswith(_TRANSIENT):
            raise StoreUnavailable(f"Redis cannot serve writes now: {_first_line(exc)}") from exc
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def open_store(
    url: str, *, socket_timeout_s: float = 10.0, connect_timeout_s: float = 5.0
) -> Redis:
    """A connected client for ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    Raises ConfigError for a malformed URL (or "embedded": only `distcrawl run` has that store,
    and gives its real URL here) and StoreUnavailable when the server does not answer.
    """
    if url == EMBEDDED:
        raise ConfigError(
            "the embedded store is private to `distcrawl run` (its server runs under --out): "
            "give --redis URL"
        )
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"invalid Redis URL {redact_url(url)!r}: expected redis://, rediss:// or unix://"
        )
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    try:
        client = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            health_check_interval=30,
            **tcp,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from exc
    try:
        async with translate_errors(url):
            await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def hash_items(redis: Redis, key: str, batch: int = 1000) -> AsyncIterator[tuple[str, str]]:
    """Every (field, value) of a hash, in no particular order, without blocking Redis (HSCAN)."""
    cursor = 0
    while True:
        async with translate_errors():
            cursor, chunk = await redis.hscan(key, cursor, count=batch)
        assert isinstance(chunk, dict)
        for field, value in chunk.items():
            yield str(field), str(value)
        if cursor == 0:
            return


async def redis_memory(redis: Redis) -> dict[str, float]:
    """Redis' used memory and its maxmemory (0 = no limit); empty where INFO lacks them."""
    try:
        info = await redis.info("memory")
    except Exception:
        return {}
    out: dict[str, float] = {}
    for field, name in (
        ("used_memory", "redis_used_memory_bytes"),
        ("maxmemory", "redis_maxmemory_bytes"),
    ):
        value = info.get(field)
        if isinstance(value, int | float):
            out[name] = float(value)
    return out
