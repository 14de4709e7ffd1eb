"""Shared fixtures: one real redis-server per session, the embedded store, a crawl id per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.store import EMBEDDED, open_store
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def crawl_keys() -> CrawlKeys:
    """A fresh crawl per test: tests share the server but never each other's keys."""
    return CrawlKeys(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["server", "embedded"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Redis]:
    """The real redis-server and the embedded store: queue tests run against both."""
    url = redis_server.url if request.param == "server" else EMBEDDED
    client = await open_store(url)
    yield client
    await client.aclose()


@pytest.fixture
async def server_store(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = await open_store(redis_server.url)
    yield client
    await client.aclose()
