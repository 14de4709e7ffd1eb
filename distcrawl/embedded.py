"""`distcrawl run`: producer, crawler (and summarizer) in one process, and more crawl processes
(``--processes``, by default one per CPU: distcrawl/crawlprocs.py) on the same store.

On the embedded store by default: a private server this process starts, with its data in
``DIR/.store`` (``--out DIR``), so the user needs no server, and a run that stopped (Ctrl-C,
SIGKILL, power loss) resumes when run again on the same DIR. Given ``--redis`` it runs the same
code against a shared Redis. Ends by writing the output folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from common.docsqueue import DocsQueue
from common.errors import ConfigError
from common.lifecycle import Shutdown
from common.private_server import private_server
from common.settings import Settings
from common.spec import CrawlSpec
from common.store import EMBEDDED, is_cluster
from crawler.admission import Admitter
from crawler.frontier import Frontier
from crawler.produce import SeedLine, build_spec, produce
from distcrawl.crawlprocs import default_processes, run_crawl_processes
from distcrawl.demosite import DemoSite, SiteServer
from distcrawl.export import export_pages, export_summaries
from distcrawl.progress import show_progress
from distcrawl.runtime import crawl_runtime, store_session, summarize_runtime
from summarizer.profiles import Profiles

__all__ = ["STORE_DIR", "RunRequest", "run_all"]

STORE_DIR = ".store"  # under --out: the embedded store's data, pidfile, socket and log


@dataclass(frozen=True)
class RunRequest:
    seeds: list[SeedLine]
    out: Path
    allow_domains: list[str]
    include: list[str]
    exclude: list[str]
    demo: bool = False
    progress: bool = True
    fresh: bool = False
    # crawl processes: this one and processes - 1 `crawl --drain` children
    processes: int = field(default_factory=default_processes)


@contextlib.asynccontextmanager
async def _demo_site(enabled: bool) -> AsyncIterator[list[str]]:
    if not enabled:
        yield []
        return
    server = SiteServer(DemoSite(pages_per_host=60))
    hosts = await server.start()
    print(
        f"demo site: serving {len(server.site.page_urls(hosts))} pages at http://{hosts[0]}/",
        file=sys.stderr,
    )
    try:
        yield [f"http://{h}/" for h in hosts]
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def _store(settings: Settings, req: RunRequest) -> AsyncIterator[Settings]:
    """``settings`` pointing at the store: the private server on ``DIR/.store`` unless
    ``--redis`` named one."""
    if settings.redis != EMBEDDED:
        if req.fresh:
            raise ConfigError(
                "--fresh deletes the embedded store under --out; with --redis, "
                "start a new crawl with --crawl NAME instead"
            )
        yield settings
        return
    with _store_dir(req) as data:
        async with private_server(data, settings.embedded, fresh=req.fresh) as url:
            yield settings.model_copy(update={"redis": url})


@contextlib.contextmanager
def _store_dir(req: RunRequest) -> Iterator[Path]:
    """``DIR/.store``; for --demo a temporary one, as its site is new (another port) every run:
    nothing there to resume, and DIR stays free for a real crawl."""
    if not req.demo:
        yield req.out / STORE_DIR
        return
    with tempfile.TemporaryDirectory(prefix="distcrawl-demo-") as tmp:
        yield Path(tmp)


async def run_all(settings: Settings, req: RunRequest) -> int:
    Profiles.from_settings(settings.llm)  # a bad profile or schema file stops run before it starts
    shutdown = Shutdown()
    shutdown.install()
    try:
        async with _demo_site(req.demo) as demo_seeds, _store(settings, req) as store_settings:
            seeds = req.seeds + [SeedLine("demo", i, u) for i, u in enumerate(demo_seeds, 1)]
            private = settings.redis == EMBEDDED
            return await _crawl(store_settings, req, seeds, shutdown, private=private)
    finally:
        shutdown.uninstall()


async def _resume(redis: Redis, frontier: Frontier, req: RunRequest) -> None:
    """The private store has no other workers: every lease in it is a dead run's. Return them
    now (attempts + 1, as the reaper would after lease_s) and say where the crawl stands."""
    returned = 0
    queues: list[Frontier | DocsQueue] = [frontier, DocsQueue(redis, frontier.keys)]
    for queue in queues:
        while True:
            requeued, dead = await queue.reap(1000, every_lease=True)
            returned += requeued + dead
            if requeued + dead < 1000:
                break
    stats = await frontier.stats(0)
    if not stats.pending and not returned:
        return  # (a finished crawl: this run is its next pass)
    print(
        f"resuming the crawl in {req.out / STORE_DIR}: done {stats.done}, failed {stats.failed}, "
        f"skipped {stats.skipped}, pending {stats.pending} ({returned} leases of the previous "
        "run returned)",
        file=sys.stderr,
    )


def _check_same_crawl(stored: CrawlSpec, asked: CrawlSpec, out: Path) -> None:
    """A DIR holds one crawl: seeds and flags given again must ask for that one (new seeds in
    its domains are welcome), or the first run's scope would silently apply to other seeds."""
    same = msgspec.structs.replace(
        asked, seeds=stored.seeds, allowed_domains=stored.allowed_domains
    ) == stored and set(asked.allowed_domains) == set(stored.allowed_domains)
    if not same:
        domains = ", ".join(stored.allowed_domains) or "any"
        raise ConfigError(
            f"{out} holds another crawl (allowed domains: {domains}; rate {stored.rate}/s): "
            "give its seeds and flags again, or no seed, to resume it; --fresh to start over"
        )


async def _crawl(
    settings: Settings,
    req: RunRequest,
    seeds: list[SeedLine],
    shutdown: Shutdown,
    *,
    private: bool,
) -> int:
    async with store_session(settings) as (redis, frontier):
        stored = await frontier.spec()
        spec = build_spec(
            settings,
            [s.text for s in seeds],
            allow_domains=req.allow_domains,
            include=req.include,
            exclude=req.exclude,
            cluster=is_cluster(redis),
        )
        new_pass = resumed_pass = False
        if stored is not None and private:
            if seeds:
                _check_same_crawl(stored, spec, req.out)
            await _resume(redis, frontier, req)
        if stored is not None:
            new_pass = await _finished(redis, frontier)
            resumed_pass = not new_pass
        spec = await frontier.init(spec)
        pass_no = await frontier.next_pass() if new_pass else await frontier.pass_no()
        report = await produce(Admitter(frontier, spec), seeds)
        for error in report.errors:
            print(f"distcrawl: skipped seed {error}", file=sys.stderr)
        # (after the seeds: a sitemap may have said what is unmodified; and again on a pass
        # resumed, in case its wake-up was cut short: it skips what the pass visited)
        if new_pass or (resumed_pass and pass_no > 1):
            await _wake(frontier, spec, pass_no)
        if await frontier.pending() == 0 and report.admitted == 0:
            print("distcrawl: nothing (new) to crawl", file=sys.stderr)
        async with contextlib.AsyncExitStack() as stack:
            crawl = await stack.enter_async_context(
                crawl_runtime(settings, redis, frontier, shutdown)
            )
            summarizer = None
            if spec.summarize:  # (a ConfigError here must not leave a worker coroutine behind)
                summarizer = await stack.enter_async_context(
                    summarize_runtime(settings, redis, frontier.keys, shutdown)
                )
            workers: list[Coroutine[Any, Any, Any]] = [crawl.worker.run(drain=True)]
            if summarizer is not None:
                workers.append(summarizer.worker.run(drain=True))
            if req.processes > 1:
                workers.append(run_crawl_processes(settings, req.processes - 1, shutdown))
            done = asyncio.Event()
            reporter = asyncio.create_task(
                show_progress(frontier, done, interactive=req.progress and sys.stderr.isatty())
            )
            try:
                results = await asyncio.gather(*workers)
            finally:
                done.set()
                await reporter
        crawl.check_output()
        if summarizer is not None:
            summarizer.check_output()
        failed = [code for code in results[-1] if code != 0] if req.processes > 1 else []
        if failed:
            print(f"distcrawl: {len(failed)} crawl processes failed: {failed}", file=sys.stderr)
        code = await _report(frontier, redis, req, shutdown, spec, pass_no)
        return code or (1 if failed else 0)


async def _finished(redis: Redis, frontier: Frontier) -> bool:
    """Whether the crawl has nothing pending, pages nor docs: run again, it starts a pass."""
    if await frontier.pending():
        return False
    return (await DocsQueue(redis, frontier.keys).stats()).pending == 0


async def _wake(frontier: Frontier, spec: CrawlSpec, pass_no: int) -> None:
    """A new pass's revisits: every known page when the crawl has no schedule (revisits
    happen at passes), else those whose time has come (the claims wake them)."""
    if not spec.revisit:
        return
    if spec.revisit_after_s:
        stats = await frontier.stats(0)
        woken, asleep = stats.due_now, stats.asleep - stats.due_now
        note = f" ({asleep} not due yet)"
    else:
        woken, note = await frontier.wake(), ""
    print(f"pass {pass_no}: {woken} known pages to revisit{note}", file=sys.stderr)


async def _report(
    frontier: Frontier,
    redis: Redis,
    req: RunRequest,
    shutdown: Shutdown,
    spec: CrawlSpec,
    pass_no: int,
) -> int:
    pages = await export_pages(
        frontier, req.out, sink=spec.sink, changes=(f"changes-{pass_no}", pass_no)
    )
    stats = await frontier.stats(0)
    print(
        f"wrote {pages.describe()}: done {stats.done}, failed {stats.failed}, "
        f"skipped {stats.skipped}, pending {stats.pending}",
        file=sys.stderr,
    )
    pending = stats.pending
    if spec.summarize:
        queue = DocsQueue(redis, frontier.keys)
        exported = await export_summaries(queue, req.out, sink=spec.sink)
        docs = await queue.stats()
        pending += docs.pending
        print(
            f"wrote {exported.describe()}: summarized {docs.summarized}, "
            f"failed {docs.failed}, pending {docs.pending}",
            file=sys.stderr,
        )
    return 0 if pending == 0 or shutdown.stop.is_set() else 1
