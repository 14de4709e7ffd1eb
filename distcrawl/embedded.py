"""`distcrawl run`: producer, crawler (and summarizer) in one process.

On the embedded store by default, so it needs no server; given ``--redis`` it runs the same code
against a shared Redis. Ends by writing the output folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from common.docsqueue import DocsQueue
from common.lifecycle import Shutdown
from common.serde import doc_text_budget
from common.settings import Settings
from crawler.admission import Admitter
from crawler.frontier import Frontier
from crawler.produce import SeedLine, build_spec, produce
from distcrawl.demosite import DemoSite, SiteServer
from distcrawl.export import export_pages, export_summaries
from distcrawl.progress import show_progress
from distcrawl.runtime import crawl_runtime, store_session, summarize_runtime

__all__ = ["RunRequest", "run_all"]


@dataclass(frozen=True)
class RunRequest:
    seeds: list[SeedLine]
    out: Path
    allow_domains: list[str]
    include: list[str]
    exclude: list[str]
    demo: bool = False
    progress: bool = True


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


async def run_all(settings: Settings, req: RunRequest) -> int:
    shutdown = Shutdown()
    shutdown.install()
    try:
        async with _demo_site(req.demo) as demo_seeds:
            seeds = req.seeds + [SeedLine("demo", i, u) for i, u in enumerate(demo_seeds, 1)]
            return await _crawl(settings, req, seeds, shutdown)
    finally:
        shutdown.uninstall()


async def _crawl(
    settings: Settings, req: RunRequest, seeds: list[SeedLine], shutdown: Shutdown
) -> int:
    async with store_session(settings) as (redis, frontier):
        spec = build_spec(
            settings.frontier,
            [s.text for s in seeds],
            allow_domains=req.allow_domains,
            include=req.include,
            exclude=req.exclude,
            doc_max_chars=doc_text_budget(settings.llm.max_input_tokens),
        )
        spec = await frontier.init(spec)
        report = await produce(frontier, Admitter(frontier, spec), seeds)
        for error in report.errors:
            print(f"distcrawl: skipped seed {error}", file=sys.stderr)
        if await frontier.pending() == 0 and report.admitted == 0:
            print("distcrawl: nothing to crawl (no valid new seed)", file=sys.stderr)
        async with contextlib.AsyncExitStack() as stack:
            crawl = await stack.enter_async_context(
                crawl_runtime(settings, redis, frontier, shutdown)
            )
            summarizer = None
            if spec.summarize:  # (a ConfigError here must not leave a worker coroutine behind)
                summarizer = await stack.enter_async_context(
                    summarize_runtime(settings, redis, frontier.keys, shutdown)
                )
            workers = [crawl.worker.run(drain=True)]
            if summarizer is not None:
                workers.append(summarizer.worker.run(drain=True))
            done = asyncio.Event()
            reporter = asyncio.create_task(
                show_progress(frontier, done, interactive=req.progress and sys.stderr.isatty())
            )
            try:
                await asyncio.gather(*workers)
            finally:
                done.set()
                await reporter
        if summarizer is not None and summarizer.worker.fatal is not None:
            raise summarizer.worker.fatal
        return await _report(frontier, redis, req, shutdown, summarized=spec.summarize)


async def _report(
    frontier: Frontier, redis: Redis, req: RunRequest, shutdown: Shutdown, *, summarized: bool
) -> int:
    path, n = await export_pages(frontier, req.out)
    stats = await frontier.stats(0)
    print(
        f"wrote {n} page records to {path}: done {stats.done}, failed {stats.failed}, "
        f"skipped {stats.skipped}, pending {stats.pending}",
        file=sys.stderr,
    )
    pending = stats.pending
    if summarized:
        queue = DocsQueue(redis, frontier.keys)
        spath, sn = await export_summaries(queue, req.out)
        docs = await queue.stats()
        pending += docs.pending
        print(
            f"wrote {sn} summaries to {spath}: summarized {docs.summarized}, "
            f"failed {docs.failed}, pending {docs.pending}",
            file=sys.stderr,
        )
    return 0 if pending == 0 or shutdown.stop.is_set() else 1
