"""Live progress of a crawl: a rich bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.errors import StoreUnavailable
from crawler.frontier import Frontier, FrontierStats

__all__ = ["show_progress"]


def _line(stats: FrontierStats, rate: float) -> str:
    return (
        f"done {stats.done}  failed {stats.failed}  skipped {stats.skipped}  "
        f"queued {stats.queued + stats.delayed}  in flight {stats.in_flight}  {rate:.1f} pages/s"
    )


async def show_progress(frontier: Frontier, stop: asyncio.Event, *, interactive: bool) -> None:
    """Report until ``stop`` is set (then once more, with the final numbers)."""
    start = time.monotonic()
    interval = 0.5 if interactive else 5.0
    progress: Progress | None = None
    if interactive:
        progress = Progress(
            TextColumn("[bold]crawl"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        progress.start()
    # rich redirects sys.stderr while the bar is live; log lines must go through it too, or
    # they overwrite the bar
    restore = _route_logs_to(sys.stderr) if progress else []
    task = progress.add_task("", total=None) if progress else None
    done_before: int | None = None  # a resumed crawl's pages count, not this run's rate
    try:
        while True:
            finished = stop.is_set()
            with contextlib.suppress(StoreUnavailable):
                stats = await frontier.stats(0)
                settled = stats.done + stats.failed + stats.skipped
                done_before = stats.done if done_before is None else done_before
                rate = (stats.done - done_before) / max(1e-6, time.monotonic() - start)
                if progress is not None and task is not None:
                    progress.update(
                        task,
                        total=stats.admitted,
                        completed=settled,
                        description=_line(stats, rate),
                    )
                else:
                    print(f"progress: {_line(stats, rate)}", file=sys.stderr, flush=True)
            if finished:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        if progress is not None:
            progress.stop()
        for handler, stream in restore:
            handler.setStream(stream)


def _route_logs_to(stream: TextIO) -> list[tuple[logging.StreamHandler[TextIO], TextIO]]:
    restore = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            old = handler.setStream(stream)
            if old is not None:
                restore.append((handler, old))
    return restore
