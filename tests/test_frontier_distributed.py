"""The frontier under several claimers: shared rate, no head-of-line blocking, caps, leases."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.spec import CrawlSpec, DomainPolicy
from crawler.frontier import Outcome
from distcrawl.redis_server import RedisServer
from tests.helpers import FakeClock, assert_balanced, make_frontier
from tests.processes import spawn_module

ROOT = Path(__file__).resolve().parent.parent


def _spawn(*args: str) -> subprocess.Popen[str]:
    return spawn_module("tests.frontier_proc", *args)


@pytest.mark.slow
async def test_rate_holds_across_three_processes(
    server_store: Redis, redis_server: RedisServer, crawl_keys: CrawlKeys
) -> None:
    spec = CrawlSpec(rate=5, burst=1, per_domain_inflight=100)
    _, admitter = await make_frontier(server_store, crawl_keys, spec)
    await admitter.admit([f"http://slow.test/{i}" for i in range(500)], depth=0)
    start = time.time() + 1.5  # let the three interpreters start first
    procs = [
        _spawn("rate", redis_server.url, crawl_keys.crawl, f"{start:.6f}", "4") for _ in range(3)
    ]
    stamps: list[float] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        stamps += [float(line) for line in out.split()]
    stamps.sort()
    per_proc_busy = sum(1 for p in procs if p.returncode == 0)
    assert per_proc_busy == 3
    busiest = max(sum(1 for t in stamps[i:] if t < s + 1.0) for i, s in enumerate(stamps))
    assert busiest <= 6, f"a 1-second window saw {busiest} claims: {stamps}"
    assert 17 <= len(stamps) <= 23, len(stamps)


async def test_no_head_of_line_blocking(store: Redis, crawl_keys: CrawlKeys) -> None:
    """A slow domain admitted first does not hold back the fast ones admitted after it."""
    clock = FakeClock()
    spec = CrawlSpec(rate=100, domains={"a.test": DomainPolicy(rate=1)})
    frontier, admitter = await make_frontier(store, crawl_keys, spec, clock)
    await admitter.admit([f"http://a.test/{i}" for i in range(5000)], depth=0)
    fast = ["b.test", "c.test", "d.test", "e.test"]
    for host in fast:
        await admitter.admit([f"http://{host}/{i}" for i in range(200)], depth=0)
    claimed = dict.fromkeys(["a.test", *fast], 0)
    while sum(claimed[h] for h in fast) < 800:
        claim = await frontier.claim("w", 1)
        if not claim.leases:
            assert claim.wait_s is not None
            clock.advance(max(1, int(claim.wait_s * 1000)))
            continue
        lease = claim.leases[0]
        claimed[lease.domain] += 1
        await frontier.ack("w", lease.fp, Outcome.DONE)
    assert claimed["a.test"] <= 10, claimed
    assert_balanced(await frontier.stats())


async def test_in_flight_cap_holds_under_fifty_claimers(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    cap = 3
    spec = CrawlSpec(rate=10_000, burst=1000, per_domain_inflight=cap)
    frontier, admitter = await make_frontier(store, crawl_keys, spec)
    await admitter.admit([f"http://capped.test/{i}" for i in range(300)], depth=0)
    holding = 0
    peak = 0
    rng = random.Random(1)

    async def claimer(n: int) -> None:
        nonlocal holding, peak
        worker = f"w{n}"
        while True:
            claim = await frontier.claim(worker, 1)
            if not claim.leases:
                if claim.wait_s is None and (await frontier.stats()).in_flight == 0:
                    return
                await asyncio.sleep(0.001)
                continue
            holding += 1
            peak = max(peak, holding)
            in_flight = (await frontier.stats()).in_flight
            assert in_flight <= cap, in_flight
            await asyncio.sleep(rng.random() * 0.004)
            holding -= 1
            await frontier.ack(worker, claim.leases[0].fp, Outcome.DONE)

    async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
        for n in range(50):
            tg.create_task(claimer(n))
    stats = await frontier.stats()
    assert peak == cap
    assert stats.done == 300
    assert_balanced(stats)


@pytest.mark.slow
async def test_sigkilled_claimer_loses_nothing(
    server_store: Redis, redis_server: RedisServer, crawl_keys: CrawlKeys
) -> None:
    spec = CrawlSpec(rate=10_000, burst=1000, per_domain_inflight=1000, lease_s=0.5, max_attempts=2)
    frontier, admitter = await make_frontier(server_store, crawl_keys, spec)
    await admitter.admit([f"http://k{i % 5}.test/{i}" for i in range(100)], depth=0)

    async def claim_and_die() -> None:
        proc = _spawn("hold", redis_server.url, crawl_keys.crawl, "100")
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "claimed 100", line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.communicate()
        stats = await frontier.stats()
        assert stats.in_flight == 100
        assert_balanced(stats)

    await claim_and_die()
    assert await frontier.reap() == (0, 0)  # leases not yet expired: nothing moves
    await asyncio.sleep(0.6)
    assert await frontier.reap() == (100, 0)
    stats = await frontier.stats()
    assert (stats.queued, stats.in_flight, stats.count("reaped")) == (100, 0, 100)
    assert_balanced(stats)

    probe = await frontier.claim("probe", 100)
    assert len(probe.leases) == 100
    assert {lease.attempt for lease in probe.leases} == {2}
    await frontier.release("probe", [lease.fp for lease in probe.leases])

    await claim_and_die()
    await asyncio.sleep(0.6)
    assert await frontier.reap() == (0, 100)
    stats = await frontier.stats()
    assert (stats.failed, stats.dead_letters, stats.pending) == (100, 100, 0)
    assert stats.reasons("failed") == {"lease_expired": 100}
    assert_balanced(stats)
    dead = await frontier.dead_letters()
    assert {d.reason for d in dead} == {"lease_expired"}
    assert {d.attempts for d in dead} == {2}
    records = [rec async for _, rec in frontier.page_records()]
    assert len(records) == 100
