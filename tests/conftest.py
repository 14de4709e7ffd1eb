"""Shared fixtures: one real redis-server and one embedded store (the private Valkey server
`distcrawl run` starts) per session, a crawl id per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import openai
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from common.docsqueue import DocsQueue
from common.keys import CrawlKeys
from common.private_server import private_server
from common.settings import EmbeddedSettings
from common.store import open_store
from distcrawl.redis_server import RedisClusterServer, RedisServer
from summarizer.cache import SummaryCache
from tests.docscrawl import DocsCrawl
from tests.helpers import MOCK_KEY
from tests.mock_llm import MockLLM
from tests.processes import MockProcess, SiteProcess

# The session's servers (URLs) that have been started: the summary cache on them is emptied
# after each test that used one (see _fresh_summary_cache).
_SESSION_STORES: list[str] = []
_STORE_FIXTURES = {
    "redis_server", "redis_url", "server_store", "store", "queue", "embedded_url", "redis_cluster"
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``tools`` need toolchains that `make test` installs first (compose,
    hadolint, kubectl, Prometheus, npm packages): they run under `make test` and in CI, and a
    developer's bare `pytest` skips them, saying why, instead of downloading them."""
    if os.environ.get("DISTCRAWL_TEST_TOOLS") == "1" or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(
        reason="needs the deploy/observability toolchains: run `make test` "
        "(or set DISTCRAWL_TEST_TOOLS=1 once .ci/tools-*.sh have installed them)"
    )
    for item in items:
        if "tools" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    _SESSION_STORES.append(server.url)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def crawl_keys() -> CrawlKeys:
    """A fresh crawl per test: tests share the server but never each other's keys."""
    return CrawlKeys(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def crawl_args(redis_server: RedisServer, crawl_keys: CrawlKeys) -> list[str]:
    """The CLI's arguments naming the test's crawl on the session's redis-server."""
    return ["--redis", redis_server.url, "--crawl", crawl_keys.crawl]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The embedded store's server, started as `distcrawl run` starts it (on the session's
    loop, which owns the child process until the session ends)."""
    async with private_server(tmp_path_factory.mktemp("embedded"), EmbeddedSettings()) as url:
        _SESSION_STORES.append(url)
        yield url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """A real local Redis Cluster: three masters, no replicas (tests that fail nodes over
    start their own with replicas)."""
    cluster = RedisClusterServer(Path(tmp_path_factory.mktemp("cluster")))
    cluster.start()
    _SESSION_STORES.append(cluster.url)
    yield cluster
    cluster.stop()


@pytest.fixture(autouse=True)
def _fresh_summary_cache(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share the session's servers but each has its own crawl; the summary cache is
    shared by every crawl on a server (as in production), so it is emptied after each test that
    used a server: no test reads answers another test paid for."""
    yield
    if not _STORE_FIXTURES.isdisjoint(request.fixturenames):
        for url in _SESSION_STORES:
            asyncio.run(_clear_summary_cache(url))


async def _clear_summary_cache(url: str) -> None:
    client = await open_store(url)
    try:
        await SummaryCache(client, ttl_s=0).clear()
    finally:
        await client.aclose()


@pytest.fixture(params=["server", "embedded", "cluster"])
async def store(request: pytest.FixtureRequest, embedded_url: str) -> AsyncIterator[Redis]:
    """The real redis-server, the embedded store's server and a real Redis Cluster: queue
    tests run against all three (the same URL form opens any of them)."""
    if request.param == "embedded":
        url = embedded_url
    else:
        fixture = "redis_server" if request.param == "server" else "redis_cluster"
        url = request.getfixturevalue(fixture).url
    client = await open_store(url)
    yield client
    await client.aclose()


@pytest.fixture
async def server_store(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = await open_store(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def site_factory(tmp_path: Path) -> Iterator[Callable[..., SiteProcess]]:
    """Start test sites in their own processes; all are stopped after the test."""
    started: list[SiteProcess] = []

    def start(*args: str) -> SiteProcess:
        site = SiteProcess(tmp_path / f"site{len(started)}.log", *args)
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()


@pytest.fixture
def mock_factory() -> Iterator[type[MockProcess]]:
    """Start mock OpenAI servers (tests/mock_llm.py) in their own processes; all are stopped
    after the test."""
    started: list[MockProcess] = []

    class Tracked(MockProcess):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for mock in started:
        mock.stop()


@pytest.fixture
def queue(server_store: Redis, crawl_keys: CrawlKeys) -> DocsQueue:
    """The docs queue of the test's crawl on the session's redis-server."""
    return DocsQueue(server_store, crawl_keys)


@pytest.fixture
def docs_crawl(server_store: Redis, redis_server: RedisServer, crawl_keys: CrawlKeys) -> DocsCrawl:
    """The docs stage of the test's crawl on the session's redis-server."""
    return DocsCrawl(server_store, crawl_keys, redis_server.url)


@pytest.fixture
async def mock() -> AsyncIterator[MockLLM]:
    """The mock OpenAI server (tests/mock_llm.py) in this process, taking ``MOCK_KEY``. (The
    end-to-end files that run it as a process override ``mock`` with a MockProcess.)"""
    async with MockLLM(api_key=MOCK_KEY) as server:
        yield server


@pytest.fixture
async def client(mock: MockLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai client on ``mock``: no retries of its own, a 5 s timeout."""
    async with openai.AsyncOpenAI(
        base_url=mock.base_url, api_key=MOCK_KEY, max_retries=0, timeout=5
    ) as c:
        yield c
