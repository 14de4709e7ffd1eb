"""`distcrawl top`: a live terminal view of one crawl, for people without Grafana.

Every ``--interval`` seconds it reads the crawl's state from Redis (what `distcrawl status`
reads) and redraws one screen with the numbers the metrics dashboard shows:

- the crawl equation ``admitted = done + failed + skipped + pending`` (flagged when it does not
  hold), pages/s, retries, reaped leases, failure and skip reasons;
- the frontier: queued, delayed retries, in flight, ready domains, domains, dead letters;
- the docs queue: waiting, in flight, summarized, failed, cache hits and docs/s;
- LLM tokens (prompt, completion) and estimated cost per model, with totals and tokens/s;
- one row per worker heartbeat: id, role, host, pid, in flight, uptime, age of the last beat
  (beats older than three heartbeat periods are flagged STALE) and the worker's own counters.

Rates are the change between two refreshes divided by the time between them, so the first
frame shows "–". ``--once`` prints a single frame without the live display (for scripts).
Ctrl-C or SIGTERM ends it with exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from common.docsqueue import DocsQueue
from common.errors import ConfigError
from common.heartbeat import Heartbeats
from common.lifecycle import Shutdown
from common.settings import Settings
from common.store import redis_memory
from crawler.status import (
    CrawlStatus,
    WorkerStatus,
    crawl_status,
    memory_lines,
    proxy_lines,
    reason_groups,
)
from distcrawl.runtime import store_session

__all__ = ["NO_RATE", "Rates", "render_top", "run_top"]

NO_RATE = "–"  # shown for rates until two samples exist


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second rates between two crawl_status samples."""

    pages_per_s: float  # pages settled (done + failed + skipped)
    docs_per_s: float  # docs settled (summarized + failed)
    tokens_per_s: float  # LLM tokens, prompt + completion, all models
    elapsed_s: float  # the time between the two samples

    @classmethod
    def from_samples(cls, before: CrawlStatus, after: CrawlStatus, elapsed_s: float) -> Rates:
        """Rates from two crawl_status answers taken ``elapsed_s`` seconds apart. A counter that
        went down (the crawl was deleted and restarted) counts as no progress, not negative."""
        if not elapsed_s > 0:
            raise ValueError(f"elapsed_s must be > 0 (got {elapsed_s})")

        def rate(count: Callable[[CrawlStatus], int]) -> float:
            return max(0, count(after) - count(before)) / elapsed_s

        return cls(
            pages_per_s=rate(lambda s: s.settled),
            docs_per_s=rate(lambda s: s.docs.settled),
            tokens_per_s=rate(lambda s: s.tokens),
            elapsed_s=elapsed_s,
        )


def _n(value: int) -> str:
    return f"{int(value):,}"


def _rate(value: float | None) -> str:
    return NO_RATE if value is None else f"{value:,.1f}"


def _pairs(title: str, rows: list[tuple[str, str]], style: str = "cyan") -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column(justify="right", style="bold")
    for name, value in rows:
        table.add_row(name, value)
    return Panel(table, title=title, title_align="left", border_style=style, expand=True)


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _crawl_panel(status: CrawlStatus, rates: Rates | None) -> Panel:
    line = Text.assemble(
        ("admitted ", "dim"),
        (_n(status.admitted), "bold"),
        (" = done ", "dim"),
        (_n(status.done), "bold green"),
        (" + failed ", "dim"),
        (_n(status.failed), "bold red"),
        (" + skipped ", "dim"),
        (_n(status.skipped), "bold yellow"),
        (" + pending ", "dim"),
        (_n(status.pending), "bold cyan"),
        ("   ", ""),
        ("holds", "green") if status.balanced else ("DOES NOT HOLD", "bold white on red"),
    )
    lines: list[RenderableType] = [
        line,
        Text.assemble(
            ("pages/s ", "dim"),
            (_rate(None if rates is None else rates.pages_per_s), "bold"),
            ("   retries ", "dim"),
            (_n(status.retries), "bold"),
            ("   reaped ", "dim"),
            (_n(status.reaped), "bold"),
            ("   docs queued ", "dim"),
            (_n(status.docs_queued), "bold"),
        ),
    ]
    for title, counts in reason_groups(status):
        if counts:
            lines.append(Text.assemble((f"{title}: ", "dim"), _reasons(counts)))
    lines += [Text(line.strip(), style="bold yellow") for line in memory_lines(status)]
    lines += [Text(line.strip(), style="bold") for line in proxy_lines(status)]
    return Panel(
        Group(*lines), title=f"crawl {status.crawl}", title_align="left", border_style="blue"
    )


def _frontier_panel(status: CrawlStatus) -> Panel:
    dead = status.dead_letters
    return _pairs(
        "frontier",
        [
            ("queued", _n(status.queued)),
            ("delayed", _n(status.delayed)),
            ("in flight", _n(status.in_flight)),
            ("ready domains", _n(status.ready_domains)),
            ("domains", _n(status.domains)),
            ("dead letters", f"[red]{dead:,}[/]" if dead else "0"),
        ],
    )


def _docs_panel(status: CrawlStatus, rates: Rates | None) -> Panel:
    docs = status.docs
    eq = "holds" if docs.balanced else "[bold white on red]DOES NOT HOLD[/]"
    return _pairs(
        "docs",
        [
            ("waiting", _n(docs.waiting)),
            ("in flight", _n(docs.in_flight)),
            ("summarized", _n(docs.summarized)),
            ("failed", _n(docs.failed)),
            ("cache hits", _n(docs.cache_hits)),
            ("docs/s", _rate(None if rates is None else rates.docs_per_s)),
            ("equation", eq),
        ],
        style="magenta",
    )


def _llm_panel(status: CrawlStatus, rates: Rates | None) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("model")
    table.add_column("prompt", justify="right")
    table.add_column("completion", justify="right")
    table.add_column("cost $", justify="right")
    usage = status.llm
    for model, use in usage.items():
        table.add_row(
            model, _n(use.prompt_tokens), _n(use.completion_tokens), f"{use.cost_usd:.4f}"
        )
    if not usage:
        table.add_row("[dim]no LLM usage yet", "", "", "")
    elif len(usage) > 1:  # one model: its row is the total
        table.add_row(
            "[bold]total",
            _n(sum(u.prompt_tokens for u in usage.values())),
            _n(sum(u.completion_tokens for u in usage.values())),
            f"{sum(u.cost_usd for u in usage.values()):.4f}",
            style="bold",
        )
    per_s = None if rates is None else rates.tokens_per_s
    tokens = Text.assemble(("tokens/s ", "dim"), (_rate(per_s), "bold"))
    return Panel(Group(table, tokens), title="llm", title_align="left", border_style="green")


def _counters(counters: Mapping[str, int | float | str]) -> str:
    return " ".join(
        f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
        for k, v in counters.items()
    )


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _workers_table(workers: list[WorkerStatus]) -> Table:
    # "alive" is crawl_status's verdict (common.heartbeat.is_stale): status and top agree.
    stale = [w for w in workers if not w.alive]
    title = f"workers {len(workers)}" + (f" ({len(stale)} stale)" if stale else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    for name in ("id", "role", "host"):
        table.add_column(name, no_wrap=True)
    for name in ("pid", "in flight", "up", "last beat"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("counters")  # the one column that wraps
    if not workers:
        table.add_row("[dim]no worker heartbeats", *[""] * 7)
    for w in workers:
        up = w.uptime_s
        table.add_row(
            w.id,
            w.role,
            w.host,
            "?" if w.pid is None else str(w.pid),
            _n(w.in_flight),
            "?" if up is None else _duration(up),
            f"{w.age_s:.1f}s ago" + ("" if w.alive else " STALE"),
            _counters(w.counters),
            style=None if w.alive else "bold red",
        )
    return table


def render_top(status: CrawlStatus, rates: Rates | None) -> RenderableType:
    """One frame from a crawl_status answer; ``rates`` is None until two samples exist."""
    middle = Table.grid(expand=True, padding=(0, 1))
    for ratio in (1, 1, 2):
        middle.add_column(ratio=ratio)
    middle.add_row(_frontier_panel(status), _docs_panel(status, rates), _llm_panel(status, rates))
    return Group(_crawl_panel(status, rates), middle, _workers_table(status.workers))


@contextlib.contextmanager
def _signals(shutdown: Shutdown) -> Iterator[None]:
    """SIGINT/SIGTERM set ``shutdown.stop`` while inside (where the loop allows handlers)."""
    try:
        shutdown.install()
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        yield
        return
    try:
        yield
    finally:
        shutdown.uninstall()


async def run_top(
    settings: Settings, *, interval_s: float, once: bool, console: Console | None = None
) -> int:
    """Show the crawl's state every ``interval_s`` seconds until Ctrl-C/SIGTERM (exit 0), or
    once. StoreUnavailable (Redis unreachable) propagates."""
    if not interval_s > 0:
        raise ConfigError(f"--interval must be > 0 (got {interval_s})")
    console = console if console is not None else Console()
    async with store_session(settings, existing=True) as (redis, frontier):
        docs, beats = DocsQueue(redis, frontier.keys), Heartbeats(redis, frontier.keys)
        status = await crawl_status(frontier, docs, beats, memory=await redis_memory(redis))
        at = time.monotonic()
        if once:
            console.print(render_top(status, None))
            return 0
        shutdown = Shutdown()
        with (
            _signals(shutdown),
            Live(
                render_top(status, None),
                console=console,
                auto_refresh=False,
                transient=False,
            ) as live,
        ):
            while not shutdown.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(shutdown.stop.wait(), interval_s)
                    break
                new = await crawl_status(frontier, docs, beats, memory=await redis_memory(redis))
                now = time.monotonic()
                rates = Rates.from_samples(status, new, now - at) if now > at else None
                status, at = new, now
                live.update(render_top(status, rates), refresh=True)
    return 0
