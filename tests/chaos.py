"""Chaos-suite plumbing: worker fleets, the invariant check, and the figures of each run.

Workers write their output to files, not pipes: a pipe nobody reads fills up and blocks the
worker, which a chaos test would then misread as a hang. Each scenario ends in
``check_invariants``, which also appends the scenario's figures to ``out/chaos-figures.jsonl``
(the numbers docs/reliability.md quotes).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.docsqueue import DocsStats
from tests.processes import ROOT, PeakRss, assert_no_traceback, cli

__all__ = [
    "FIGURES",
    "Figures",
    "Fleet",
    "Worker",
    "check_invariants",
    "concurrency",
    "wait_for",
]

FIGURES = ROOT / "out" / "chaos-figures.jsonl"


def concurrency(crawl: int, summarize: int | None = None) -> dict[str, list[str]]:
    """A Fleet's ``args``: crawlers of the local test site (``--allow-private``) with ``crawl``
    slots each, and summarizers with ``summarize``."""
    args = {"crawl": ["--allow-private", "--concurrency", str(crawl)]}
    if summarize is not None:
        args["summarize"] = ["--concurrency", str(summarize)]
    return args


@dataclass
class Worker:
    role: str
    proc: subprocess.Popen[bytes]
    log: Path
    rss: PeakRss

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Fleet:
    """``distcrawl crawl|summarize --drain`` processes sharing one crawl, started and killed."""

    logdir: Path
    store: list[str]
    env: dict[str, str]
    args: dict[str, list[str]] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    signals_sent: int = 0

    def start(self, role: str) -> Worker:
        log = self.logdir / f"{role}-{len(self.workers)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distcrawl.cli",
                    role,
                    *self.store,
                    "--drain",
                    *self.args.get(role, []),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        worker = Worker(role, proc, log, PeakRss(proc.pid))
        self.workers.append(worker)
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def holding(self, role: str, timeout: float = 10.0) -> set[int]:
        """The pids of live ``role`` workers whose last heartbeat shows leases in flight (the
        ones a kill would take work from); waits up to ``timeout`` for one, else empty."""
        deadline = time.monotonic() + timeout
        alive = {w.proc.pid for w in self.alive() if w.role == role}
        while time.monotonic() < deadline:
            run = cli("status", *self.store, "--json")
            if run.returncode == 0:
                beats = json.loads(run.stdout)["workers"]
                pids = {b.get("pid") for b in beats if b.get("role") == role}
                busy = {b.get("pid") for b in beats if b.get("in_flight", 0) > 0}
                if found := alive & pids & busy:
                    return {int(p) for p in found if p is not None}
            time.sleep(0.3)
        return set()

    def hit(
        self,
        rng: random.Random,
        sig: signal.Signals,
        role: str | None = None,
        among: set[int] | None = None,
    ) -> Worker | None:
        """Send ``sig`` to a random live worker (of ``role``, if given; of the pids ``among``,
        if any of them is alive) and start a new one of the same role."""
        alive = [w for w in self.alive() if role is None or w.role == role]
        chosen = [w for w in alive if among and w.proc.pid in among]
        alive = chosen or alive
        if not alive:
            return None
        victim = rng.choice(alive)
        victim.proc.send_signal(sig)
        self.signals_sent += 1
        if sig == signal.SIGKILL:
            victim.proc.wait(10)
        self.start(victim.role)
        return victim

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for w in self.workers:
            left = max(0.1, deadline - time.monotonic())
            try:
                w.proc.wait(left)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{w.role} worker {w.proc.pid} still running after {timeout} s:\n"
                    + w.log.read_text()[-3000:]
                ) from None

    def run_one_crawler(self, timeout: float) -> None:
        """One ``crawl --drain`` to the end (killed if it overruns); it must exit 0."""
        try:
            self.start("crawl")
            self.wait(timeout)
        finally:
            self.kill_all()
        assert self.exit_codes() == [0], self.logs()[-3000:]

    def exit_codes(self) -> list[int]:
        return [w.proc.returncode for w in self.workers]

    def logs(self) -> str:
        return "\n".join(w.log.read_text(errors="replace") for w in self.workers)

    def peak_rss_mb(self) -> float:
        return max((w.rss.stop() for w in self.workers), default=0.0)

    def kill_all(self) -> None:
        for w in self.workers:
            if w.alive:
                w.proc.kill()
                w.proc.wait(10)
            w.rss.stop()


@dataclass
class Figures:
    scenario: str
    admitted: int
    done: int
    failed: int
    skipped: int
    lost: int
    duplicates: int
    summarized: int = 0
    docs_failed: int = 0
    max_rss_mb: float = 0.0
    faults: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def docs_only(
        cls, scenario: str, docs: DocsStats, *, faults: int, extra: dict[str, Any] | None = None
    ) -> Figures:
        """The figures of a summarizer-only scenario (docs fed directly, no pages crawled)."""
        return cls(
            scenario,
            admitted=docs.queued,
            done=0,
            failed=0,
            skipped=0,
            lost=docs.pending,
            duplicates=0,
            summarized=docs.summarized,
            docs_failed=docs.failed,
            faults=faults,
            extra=extra or {},
        )

    def save(self) -> None:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES.open("a") as fh:
            fh.write(json.dumps({"at": round(time.time()), **asdict(self)}) + "\n")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def check_invariants(
    scenario: str,
    store: list[str],
    out: Path,
    *,
    expected: set[str] | None = None,
    summaries: bool = False,
    logs: str = "",
    faults: int = 0,
    max_rss_mb: float = 0.0,
) -> Figures:
    """The full check: the equation with nothing pending, every expected page exported once
    (or failed/skipped with a reason), every done page summarized once or failed with a reason
    (when ``summaries``), and no traceback in the workers' logs. Returns the figures."""
    status_run = cli("status", *store, "--json")
    assert status_run.returncode == 0, status_run.stderr
    status = json.loads(status_run.stdout)
    exported = cli("export", *store, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    pages = _jsonl(out / "pages.jsonl")
    urls = [p["url"] for p in pages]
    by_outcome = {
        o: sum(1 for p in pages if p["outcome"] == o) for o in ("done", "failed", "skipped")
    }
    missing = (expected or set()) - set(urls)
    figures = Figures(
        scenario=scenario,
        admitted=status["admitted"],
        done=status["done"],
        failed=status["failed"],
        skipped=status["skipped"],
        lost=status["admitted"]
        - status["done"]
        - status["failed"]
        - status["skipped"]
        + len(missing),
        duplicates=len(urls) - len(set(urls)),
        faults=faults,
        max_rss_mb=round(max_rss_mb, 1),
        extra={
            "failed_reasons": status["failed_reasons"],
            "skipped_reasons": status["skipped_reasons"],
            "retries": status["retries"],
            "reaped": status["reaped"],
        },
    )
    if summaries:
        docs = status["docs"]
        figures.summarized, figures.docs_failed = docs["summarized"], docs["failed"]
        figures.extra["docs_reaped"] = docs["reaped"]
        figures.extra["docs_failed_reasons"] = docs["failed_reasons"]
    figures.save()

    assert status["balanced"], status
    assert (status["pending"], status["in_flight"]) == (0, 0), status
    assert figures.lost == 0, (missing, status)
    assert figures.duplicates == 0
    assert by_outcome == {
        "done": figures.done,
        "failed": figures.failed,
        "skipped": figures.skipped,
    }, by_outcome
    unexplained = [p for p in pages if p["outcome"] != "done" and not p["reason"]]
    assert not unexplained, unexplained[:5]
    if summaries:
        _check_summaries(status, pages, out)
    assert_no_traceback(logs)
    return figures


def _check_summaries(status: dict[str, Any], pages: list[dict[str, Any]], out: Path) -> None:
    docs = status["docs"]
    assert docs["balanced"], docs
    assert (docs["pending"], docs["in_flight"]) == (0, 0), docs
    records = _jsonl(out / "summaries.jsonl")
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls)), "a doc was summarized twice"
    sent_on = {p["url"] for p in pages if p["outcome"] == "done" and p["reason"] != "noindex"}
    assert set(urls) == sent_on, (sorted(sent_on - set(urls))[:5], sorted(set(urls) - sent_on)[:5])
    assert all(r["outcome"] == "summarized" or r["reason"] for r in records)
    assert docs["summarized"] + docs["failed"] == len(records)


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def render_figures(path: Path = FIGURES) -> str:
    """The latest figures of each scenario as the Markdown table docs/reliability.md shows."""
    latest: dict[str, dict[str, Any]] = {}
    for row in _jsonl(path):
        latest[row["scenario"]] = row
    lines = [
        "| scenario | faults | admitted | done | failed | skipped | lost | duplicates "
        "| summarized | docs failed | max worker RSS (MB) |",
        "|" + "---|" * 11,
    ]
    for name, r in latest.items():
        rss = f"{r['max_rss_mb']:.0f}" if r["max_rss_mb"] else "n/a"
        lines.append(
            f"| {name} | {r['faults']} | {r['admitted']} | {r['done']} | {r['failed']} "
            f"| {r['skipped']} | {r['lost']} | {r['duplicates']} | {r['summarized']} "
            f"| {r['docs_failed']} | {rss} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_figures())
