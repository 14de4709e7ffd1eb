"""Opening the Redis client and its errors.

The embedded store is a real server too (common/private_server.py: `distcrawl run` starts it and
connects here with its URL), so single-process mode shares every code path with distributed mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from common.errors import ConfigError, StoreFull, StoreUnavailable

__all__ = [
    "EMBEDDED",
    "hash_items",
    "is_cluster",
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

    The same URL serves a single Redis and a Redis Cluster: when the server at ``url`` has
    cluster mode on (``INFO cluster``), the answer is redis-py's RedisCluster, which finds the
    other nodes, routes each call by its key's slot and follows MOVED/ASK and failovers. It is
    typed as Redis: distcrawl only sends commands both clients have, and every key of a call
    shares one hash tag (common/keys.py), so each call, script or pipeline goes to one node.

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
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "health_check_interval": 30,
        **tcp,
    }
    try:
        client = Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from exc
    try:
        async with translate_errors(url):
            await client.ping()
            cluster_mode = await _cluster_enabled(client)
    except BaseException:
        await client.aclose()
        raise
    if not cluster_mode:
        return client
    await client.aclose()
    cluster = RedisCluster.from_url(url, **options)
    try:
        async with translate_errors(url):
            await cluster.ping()
    except BaseException:
        await cluster.aclose()
        raise
    return cast(Redis, cluster)


async def _cluster_enabled(client: Redis) -> bool:
    try:
        info = await client.info("cluster")
    except redis.exceptions.ResponseError:  # INFO not allowed (ACL): a cluster would allow it
        return False
    return bool(info.get("cluster_enabled") == 1)


def is_cluster(redis: Redis) -> bool:
    """Whether open_store answered a Redis Cluster client."""
    return isinstance(redis, RedisCluster)


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
        if is_cluster(redis):  # the fullest master: it is the one that refuses writes first
            per_node = await cast(RedisCluster, redis).info(
                "memory", target_nodes=RedisCluster.PRIMARIES
            )
            nodes = [v for v in per_node.values() if isinstance(v, dict)]
            info = max(nodes, key=_fullness, default={})
        else:
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


def _fullness(info: dict[str, Any]) -> float:
    used, limit = float(info.get("used_memory", 0)), float(info.get("maxmemory", 0))
    return used / limit if limit > 0 else used / 2**62
