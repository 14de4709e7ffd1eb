"""Bounded Redis memory, end to end on a real redis-server: backpressure from a slow
summarizer (with a SIGKILL storm while paused), a crawl that is not summarized, the Bloom seen
set on a real crawl, and a Redis that runs out of memory mid-crawl."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from common.keys import CrawlKeys
from distcrawl.redis_server import RedisServer, free_port
from tests.chaos import Fleet, check_invariants, concurrency, wait_for
from tests.processes import MockProcess, SiteProcess, cli, metric_value, produce

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FAST = {
    "DISTCRAWL_WORKER__REAP_INTERVAL_S": "1",
    "DISTCRAWL_WORKER__HEARTBEAT_S": "1",
    "DISTCRAWL_WORKER__GRACE_S": "3",
    "DISTCRAWL_LOG_FORMAT": "json",
}


def _crawl_name(tmp_path: Path, what: str) -> str:
    return f"{what}-{tmp_path.name[-6:]}"


class Sampler:
    """Samples Redis every 0.2 s in a thread: docs waiting + in flight, used memory, and
    whether any crawl worker's heartbeat says it is paused on the docs backlog."""

    def __init__(self, url: str, keys: CrawlKeys) -> None:
        self.url, self.keys = url, keys
        self.max_docs = self.max_used = self.paused_samples = self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def paused_now(self, client: redis.Redis) -> bool:
        beats = client.hgetall(self.keys.workers)
        return any(json.loads(b).get("paused") == "docs_backlog" for b in beats.values())

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            while not self._stop.is_set():
                docs = client.llen(self.keys.docs) + client.zcard(self.keys.docs_inflight)
                self.max_docs = max(self.max_docs, docs)
                self.max_used = max(self.max_used, int(client.info("memory")["used_memory"]))
                self.paused_samples += self.paused_now(client)
                self.samples += 1
                self._stop.wait(0.2)
        finally:
            client.close()


@pytest.fixture
def slow_llm() -> Iterator[MockProcess]:
    mock = MockProcess("--api-key", "sk-mem", "--latency", "0.1")
    yield mock
    mock.stop()


def test_slow_summarizer_pauses_crawlers_and_a_kill_storm_loses_nothing(
    site_factory: Callable[..., SiteProcess],
    tmp_path: Path,
    redis_server: RedisServer,
    slow_llm: MockProcess,
) -> None:
    """Two crawlers, one summarizer at 4 calls x 0.1 s (40 docs/s, far slower than the
    crawlers) and a backlog bound of 60: the docs never exceed the bound, the crawlers pause
    and resume, and crawl workers SIGKILLed while paused lose nothing."""
    bound = 60
    site = site_factory("--addresses", "127.0.0.1,127.0.0.2,127.0.0.3", "--pages", "300")
    crawl = _crawl_name(tmp_path, "backlog")
    store = ["--redis", redis_server.url, "--crawl", crawl]
    env = {**FAST, "DISTCRAWL_FRONTIER__LEASE_S": "4", "DISTCRAWL_LLM__LEASE_S": "4"}
    backlog = ("--max-docs-backlog", str(bound))
    produce(store, site.roots, *backlog, rate=200, burst=20, inflight=16, max_attempts=10, env=env)
    fleet = Fleet(
        tmp_path,
        store,
        env={**env, **slow_llm.worker_env("sk-mem")},
        args=concurrency(crawl=16, summarize=4),
    )
    rng = random.Random(11)
    keys = CrawlKeys(crawl)
    control = redis.Redis.from_url(redis_server.url, decode_responses=True)
    base_used = int(control.info("memory")["used_memory"])
    kills_while_paused = 0
    try:
        with Sampler(redis_server.url, keys) as sampler:
            for role in ("crawl", "crawl", "summarize"):
                fleet.start(role)
            deadline = time.monotonic() + 200
            while any(w.alive for w in fleet.workers) and time.monotonic() < deadline:
                time.sleep(0.5)
                if kills_while_paused < 4 and sampler.paused_now(control):
                    fleet.hit(rng, signal.SIGKILL, role="crawl")
                    kills_while_paused += 1
                    time.sleep(1.5)  # the new worker joins and pauses in turn
            fleet.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        fleet.kill_all()
        control.close()
    figures = check_invariants(
        "backpressure-sigkill", store, tmp_path / "out", summaries=True, logs=fleet.logs()
    )
    print(
        f"\nbackpressure: bound {bound}, most docs at once {sampler.max_docs}, paused in "
        f"{sampler.paused_samples} of {sampler.samples} samples, {kills_while_paused} crawl "
        f"workers SIGKILLed while paused, Redis used memory grew by at most "
        f"{(sampler.max_used - base_used) / 1024:.0f} KB for {figures.done} pages"
    )
    assert sampler.max_docs <= bound
    assert sampler.paused_samples > 0
    assert kills_while_paused >= 3
    assert figures.done > 900
    assert figures.summarized == figures.done  # every done page summarized, exactly once
    # The docs were capped (60 x a few KB): what Redis grew by is the pages hash and the seen
    # set (under 1 KB a page together), not a backlog of page texts.
    assert sampler.max_used - base_used < figures.done * 1024 + 2 * 1024 * 1024


def test_a_crawl_that_is_not_summarized_pushes_no_docs(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    site = site_factory("--pages", "40")
    crawl = _crawl_name(tmp_path, "nosum")
    store = ["--redis", redis_server.url, "--crawl", crawl]
    produce(store, site.roots, "--no-summarize", rate=100)
    crawled = cli("crawl", *store, "--drain", "--allow-private", env=FAST)
    assert crawled.returncode == 0, crawled.stderr
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = CrawlKeys(crawl)
        assert int(client.hget(keys.counts, "done") or 0) == 41
        assert not client.exists(keys.docs)
        assert not client.hexists(keys.counts, "docs_queued")
    finally:
        client.close()


def test_bloom_crawl_of_a_heavily_linked_site_reaches_every_page(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    """40 links a page over 600 pages: each page is linked about 40 times, so nearly every
    link the filters see is a duplicate."""
    site = site_factory("--addresses", "127.0.0.1,127.0.0.2", "--pages", "300", "--links", "40")
    crawl = _crawl_name(tmp_path, "bloom")
    store = ["--redis", redis_server.url, "--crawl", crawl]
    bloom = ("--seen", "bloom", "--seen-capacity", "1000", "--no-summarize")
    produce(store, site.roots, *bloom, rate=200, burst=20, inflight=16)
    crawled = cli("crawl", *store, "--drain", "--allow-private", "--concurrency", "32", env=FAST)
    assert crawled.returncode == 0, crawled.stderr
    figures = check_invariants("bloom", store, tmp_path / "out")
    assert figures.done == 2 + 600  # coverage 100%: both roots and every page
    served = site.hits()
    pages = [h for h in served if "/p/" in h]
    assert len(pages) == 600
    assert set(served.values()) == {1}  # and each fetched once
    status = json.loads(cli("status", *store, "--json").stdout)
    bloom = status["seen"]["bloom"]
    print(f"\nBloom crawl: {bloom}, rejected {status['rejected']}")
    assert bloom["urls"] == status["admitted"]
    assert status["rejected"]["duplicate"] > 10 * figures.done  # heavy duplication indeed


def _healthz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def test_a_full_redis_is_waited_out_and_the_crawl_resumes(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", None, "--maxmemory-policy", "noeviction")
    server.start()
    try:
        _full_redis_scenario(site_factory, tmp_path, server)
    finally:
        server.stop()


def _full_redis_scenario(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, server: RedisServer
) -> None:
    site = site_factory(
        "--addresses", "127.0.0.1,127.0.0.2", "--pages", "400", "--page-delay", "0.01"
    )
    crawl = _crawl_name(tmp_path, "oom")
    store = ["--redis", server.url, "--crawl", crawl]
    produce(store, site.roots, "--no-summarize", rate=100, burst=10, inflight=8)
    port = free_port()
    fleet = Fleet(
        tmp_path,
        store,
        env=FAST,
        args={"crawl": ["--allow-private", "--concurrency", "16", "--metrics-port", str(port)]},
    )
    client = redis.Redis.from_url(server.url, decode_responses=True)
    keys = CrawlKeys(crawl)
    paused = 'distcrawl_worker_paused{reason="store_full"}'

    def done() -> int:
        return int(client.hget(keys.counts, "done") or 0)

    try:
        fleet.start("crawl")
        wait_for("the crawl to start", lambda: done() >= 40, timeout=60)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used + 64 * 1024))
        wait_for("the store_full pause", lambda: metric_value(port, paused) == 1.0, timeout=60)
        assert "store_full" in _healthz(port)
        status = json.loads(cli("status", *store, "--json").stdout)
        assert status["backpressure"]["store_full"], status["backpressure"]
        assert "Redis is full" in cli("status", *store).stdout
        stuck_at = done()
        time.sleep(2)
        assert done() <= stuck_at + 16  # at most the pages in flight got through
        client.config_set("maxmemory", "0")
        freed = time.monotonic()
        wait_for("the crawl to resume", lambda: done() > stuck_at + 16, timeout=60)
        resumed_s = time.monotonic() - freed
        fleet.wait(timeout=120)
    finally:
        fleet.kill_all()
        client.close()
    print(f"\nfull Redis: crawl resumed {resumed_s:.1f} s after maxmemory was raised")
    figures = check_invariants("redis-full", store, tmp_path / "out", logs=fleet.logs())
    assert figures.done == 802
    assert figures.extra["reaped"] == 0  # no lease was left to expire
    assert fleet.exit_codes() == [0]
