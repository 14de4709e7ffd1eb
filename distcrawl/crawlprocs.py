"""`run --processes N`: N - 1 more crawl processes (`distcrawl crawl --drain`) on run's store.

N is the number of CPUs this process may run on unless given: a crawl process keeps about one
core busy (parsing is most of its work), and the store's server and the summarizer take little.

Each gets the settings a crawl worker reads through DISTCRAWL_* variables (never flags: a
password in the store URL stays out of `ps`), dies with `run` (PR_SET_PDEATHSIG), and has its
own session, so a Ctrl-C reaches `run` alone, which passes one SIGTERM on: a worker that got two
signals would skip its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from common.lifecycle import Shutdown
from common.private_server import die_with_parent
from common.settings import Settings

__all__ = ["default_processes", "run_crawl_processes", "worker_env"]


def default_processes() -> int:
    """The CPUs this process may use (its affinity mask, as a container's cpuset sets it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def worker_env(settings: Settings, environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without its DISTCRAWL_* variables, plus those that say ``settings`` (what
    they held is in ``settings`` already, with the flags on top)."""
    env = {k: v for k, v in environ.items() if not k.startswith("DISTCRAWL_")}
    env.update(
        DISTCRAWL_REDIS=settings.redis,
        DISTCRAWL_CRAWL=settings.crawl,
        DISTCRAWL_ALLOW_PRIVATE="1" if settings.allow_private else "0",
        DISTCRAWL_LOG_LEVEL=settings.log_level,
        DISTCRAWL_LOG_FORMAT=settings.log_format,
        DISTCRAWL_FETCH=settings.fetch.model_dump_json(),
        DISTCRAWL_WORKER=settings.worker.model_dump_json(),
        DISTCRAWL_CRAWLER=settings.crawler.model_dump_json(),
        DISTCRAWL_WARC=settings.warc.model_dump_json(),
    )
    return env


async def run_crawl_processes(settings: Settings, n: int, shutdown: Shutdown) -> list[int]:
    """Run ``n`` crawl processes until they drain; their exit codes. ``shutdown.stop`` passes
    SIGTERM on; leaving early (an error) kills them."""
    env = worker_env(settings, dict(os.environ))  # the CLI's edge: `run` is the CLI here
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(n):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "distcrawl.cli",
                    "crawl",
                    "--drain",
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            )
        waiting = asyncio.gather(*(p.wait() for p in procs))
        stop = asyncio.ensure_future(shutdown.stop.wait())
        first: list[asyncio.Future[Any]] = [waiting, stop]
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not shutdown.stop.is_set():
            return list(await waiting)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        # one still starting (no handler yet) dies of it: it held nothing, so that is a clean stop
        return [0 if code == -signal.SIGTERM else code for code in await waiting]
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
