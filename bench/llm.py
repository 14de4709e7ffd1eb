"""LLM summarizer throughput: distcrawl's summarizer vs a plain AsyncOpenAI loop, on the mock.

    python -m bench.llm [--docs N] [--latency 0.2] [--concurrency 64] [--quick]

One run, two scenarios, against tests/mock_llm.py started as a separate process (its CPU is
not counted against the clients):

1. Throughput at mock latency L and client concurrency C, N docs with distinct texts:
   (a) one ``distcrawl summarize --drain --concurrency C`` process on a real redis-server, the
   docs fed straight into the docs queue, and the same with ``DISTCRAWL_LLM__TRANSPORT=openai``
   (requests through ``AsyncOpenAI.post`` instead of the default direct aiohttp post of the
   client's request); (b) the naive baseline, a plain AsyncOpenAI loop
   under an asyncio.Semaphore(C) (``python -m bench.llm --variant plain``: default transport,
   max_retries=0, asyncio.run); (c) the same loop one call at a time on a few docs; (d) the
   ideal C/L.
2. A provider limit of 50 requests/s (mock ``rpm=3000``, 429 + Retry-After over it): distcrawl
   with ``--llm-rpm 3000`` and the plain loop (it retries a 429 after its Retry-After, at most
   twice, then gives the doc up), on N2 docs each. Twice: on the mock as it is (it counts
   requests over a sliding 60 s window, so a run shorter than a minute meets its limit only
   as a budget of 3000 requests), and on the mock with a 1 s window and 50 requests per window
   (the limit is 50/s from the first request on; OpenAI documents that it may enforce
   per-minute limits over such shorter periods).

Measured the same way for every variant, each in its own process: the time is the span from
the start of the first doc to the end of the last one (distcrawl: from its summary records in
Redis, ``created_at - elapsed_ms`` of the first doc to the last ``created_at``; the plain loop
prints its own timestamps), so interpreter start-up and exit are not counted. Client CPU per
doc is measured inside the client process (``time.process_time``), from the end of its first
doc (start-up and the first call's set-up, lazy imports included, are behind it) to its last:
the plain loop reads it itself; the distcrawl worker puts it in every heartbeat (``cpu_s``,
with the docs it settled), beating every ``BEAT_S`` here, and the bench takes the first beat
after a settled doc and the last. A subtraction of two processes (the same command on one doc)
was too noisy: start-up costs about a second of CPU, more than the sequential run's calls.
Nothing here asserts on time or speed. A line starting with FAILED
means docs were lost where none should be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the plain loop's process imports none of these
    import redis

    from common.keys import CrawlKeys
    from common.serde import Doc

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-llm"
MODEL = "mock-model"
MAX_TOKENS = 256  # LLMSettings.max_output_tokens: what distcrawl sends
LIMIT_RPM = 3000  # scenario 2: 50 requests/s
PLAIN_RETRIES = 2  # the naive loop's retries of a 429
CHILD_TIMEOUT_S = 300.0
BEAT_S = 0.2  # the distcrawl worker's heartbeat period in the bench (its CPU samples)
EXIT_GRACE_S = 5.0  # how long a distcrawl worker may take to exit once every doc is settled
HEADER = (
    f"{'variant':<30} {'docs':>6} {'seconds':>8} {'docs/s':>8} {'x ideal':>8} "
    f"{'CPU ms/doc':>12} {'peak RSS MB':>12} {'host busy':>10}"
)
HEADER2 = (
    f"{'variant':<30} {'window':>7} {'docs':>5} {'ok':>5} {'failed':>6} {'seconds':>8} "
    f"{'goodput/s':>10} {'x limit':>8} {'req/doc':>8} {'429 share':>10} "
    f"{'CPU ms/doc':>12}"
)


# -- the plain loop (its own process: python -m bench.llm --variant plain) --------------------


async def plain_loop(
    base_url: str, prompts: Sequence[str], concurrency: int, retries: int
) -> dict[str, Any]:
    """What a hand-written script does: one AsyncOpenAI (default transport, max_retries=0),
    an asyncio.Semaphore(concurrency), one task per prompt, asyncio.gather.

    A 429 (openai.RateLimitError) is retried after the seconds of its ``Retry-After`` header
    (1 s when absent), sleeping while holding the semaphore slot as openai's built-in retries
    do, at most ``retries`` times; then, or on any other error, the doc is given up.
    """
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    spans: list[tuple[float, float]] = []  # (start, end) of each doc
    first: tuple[int, float] | None = None  # (docs done, CPU) when the first doc ended
    outcome = {"ok": 0, "failed": 0, "retries": 0}

    async def one(prompt: str) -> None:
        nonlocal first
        async with sem:
            started = time.time()
            for attempt in range(retries + 1):
                try:
                    resp = await client.chat.completions.create(
                        model=MODEL,
                        messages=[{"role": "user", "content": prompt}],
                        max_tokens=MAX_TOKENS,
                    )
                except openai.RateLimitError as exc:
                    if attempt == retries:
                        outcome["failed"] += 1
                        break
                    outcome["retries"] += 1
                    await asyncio.sleep(float(exc.response.headers.get("retry-after", "1")))
                except openai.OpenAIError:
                    outcome["failed"] += 1
                    break
                else:
                    outcome["ok" if resp.choices[0].message.content else "failed"] += 1
                    break
            spans.append((started, time.time()))
            if first is None:  # CPU after the first doc: its set-up (lazy imports) excluded
                first = (len(spans), time.process_time())

    try:
        await asyncio.gather(*(one(p) for p in prompts))
    finally:
        cpu_end = time.process_time()
        await client.close()
    docs0, cpu0 = first if first is not None else (len(spans), cpu_end)
    return {
        **outcome,
        "cpu_s": round(cpu_end - cpu0, 4),
        "cpu_docs": len(spans) - docs0,
        "starts": [round(s, 4) for s, _ in spans],
        "ends": [round(e, 4) for _, e in spans],
    }


def _child_plain(args: argparse.Namespace) -> None:
    prompts: list[str] = json.loads(Path(args.prompts).read_text())[: args.docs]
    result = asyncio.run(plain_loop(args.base_url, prompts, args.concurrency, args.retries))
    print(json.dumps(result), flush=True)


# -- the mock -----------------------------------------------------------------------------------


class Mock:
    """The mock LLM (tests.mock_llm) in its own process, with its rate-limit window."""

    def __init__(self, tmp: Path, latency: float, window_s: float = 60.0, rpm: int = 0) -> None:
        self.window_s = window_s
        cmd = ["-m", "tests.mock_llm", "--window", str(window_s)]
        self._err = (tmp / f"mock-{window_s:g}s.err").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *cmd,
                "--port",
                "0",
                "--latency",
                str(latency),
                "--rpm",
                str(rpm),
                "--api-key",
                API_KEY,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.base_url = self._server = ""

    def ready(self) -> Mock:
        """Wait for its ``ready <base_url>`` line."""
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready "):
            raise SystemExit(f"mock LLM did not start: {line!r}")
        self.base_url = line.split()[1]
        self._server = self.base_url.removesuffix("/v1")
        return self

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self._server + path, data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self, **config: Any) -> None:
        """POST /_config (when given), then /_reset: stats and rate-limit window cleared."""
        if config:
            self._call("/_config", config)
        self._call("/_reset", {})

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/stats"))

    def requests(self) -> list[dict[str, Any]]:
        """The request bodies it keeps (``record_requests``, oldest first)."""
        return list(self._call("/_requests"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()


# -- child processes ----------------------------------------------------------------------------


@dataclass
class Child:
    code: int
    cpu_s: float
    rss_mb: float
    busy: float  # fraction of the host's CPU busy while it ran (every process on the host)
    stdout: str
    stderr: str
    note: str = ""  # how it was stopped, when it did not exit by itself


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host, from /proc/stat; (0, 0) elsewhere."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class _Watch:
    """When ``done()`` (checked every 0.25 s) first said yes."""

    def __init__(self, done: Callable[[], bool] | None) -> None:
        self._done = done
        self._checked = 0.0
        self.seen_at: float | None = None

    def poll(self) -> float | None:
        now = time.monotonic()
        if self._done is not None and self.seen_at is None and now - self._checked >= 0.25:
            self._checked = now
            if self._done():
                self.seen_at = now
        return self.seen_at


def run_child(
    tmp: Path,
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
    done: Callable[[], bool] | None = None,
    sample: Callable[[], None] | None = None,
) -> Child:
    """Run ``python ARGS`` to its end; CPU and peak RSS from wait4; ``sample()`` is called
    every 0.25 s while it runs.

    A child whose work is ``done()`` but has not exited EXIT_GRACE_S later gets SIGTERM, then
    SIGKILL one second after (``Child.note`` says so); its CPU is what it used until then.
    """
    out_path, err_path = tmp / f"{name}.out", tmp / f"{name}.err"
    busy0, total0 = _host_cpu()
    note = ""
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            env={**os.environ, **(env or {})},
        )
        watch = _Watch(done)
        started = sampled = time.monotonic()
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                note = _nudge(proc, watch.poll(), started, note)
                if sample is not None and time.monotonic() - sampled >= 0.25:
                    sampled = time.monotonic()
                    sample()
                time.sleep(0.05)
        except BaseException:  # interrupted, or Redis gone: do not leave the child behind
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    busy1, total1 = _host_cpu()
    busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else math.nan
    return Child(
        proc.returncode,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        busy,
        out_path.read_text(),
        err_path.read_text(),
        note,
    )


def _nudge(
    proc: subprocess.Popen[bytes], drained_at: float | None, started: float, note: str
) -> str:
    """SIGTERM, then SIGKILL, a child that outlives its work (or CHILD_TIMEOUT_S)."""
    now = time.monotonic()
    if drained_at is not None:
        late = now - drained_at
        if late > EXIT_GRACE_S and not note:
            proc.terminate()
            return f"had settled every doc but had not exited {EXIT_GRACE_S:g} s later: SIGTERM"
        if late > EXIT_GRACE_S + 1 and "SIGKILL" not in note:
            proc.kill()
            return note + "; still running 1 s after it: SIGKILL"
    elif now - started > CHILD_TIMEOUT_S and not note:
        proc.kill()
        return f"timeout after {CHILD_TIMEOUT_S:g} s: SIGKILL"
    return note


def summarize_drain(
    tmp: Path,
    redis_url: str,
    keys: CrawlKeys,
    mock: Mock,
    n: int,
    *,
    label: str,
    price: tuple[float, float],
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One `summarize --drain` process on the crawl ``keys`` against ``mock`` (the model priced
    at ``price``), until ``n`` summaries exist; their records. Exits the bench on failure."""
    import redis

    full_env = {
        "OPENAI_API_KEY": API_KEY,
        "DISTCRAWL_LLM__BASE_URL": mock.base_url,
        "DISTCRAWL_LLM__MODEL": MODEL,
        "DISTCRAWL_LLM__PRICES": json.dumps({MODEL: price}),
        **(env or {}),
    }
    argv = ["-m", "distcrawl.cli", "summarize", "--drain", "--redis", redis_url]
    argv += ["--crawl", keys.crawl, "--log-level", "WARNING", *args]
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        child = run_child(
            tmp, keys.crawl, argv, full_env, done=lambda: int(client.hlen(keys.summaries)) >= n
        )
        records = [json.loads(raw) for raw in client.hvals(keys.summaries)]
    if child.code != 0:
        raise SystemExit(f"FAILED: {label}: exit {child.code}: {_tail(child.stderr)}")
    return records


@dataclass(frozen=True)
class Spent:
    """What a run's records account for, checked against what the mock served."""

    prompt_tokens: int
    completion_tokens: int
    cost: float
    failed: int  # docs that ended failed
    mismatch: str  # empty when the records hold exactly the tokens the mock served

    @classmethod
    def of(cls, records: list[dict[str, Any]], served: tuple[int, int]) -> Spent:
        """``served``: the (prompt, completion) tokens the mock answered with."""
        prompt = sum(int(r["prompt_tokens"]) for r in records)
        completion = sum(int(r["completion_tokens"]) for r in records)
        mismatch = ""
        if (prompt, completion) != served:
            mismatch = (
                f"records {prompt}/{completion} vs mock {served[0]}/{served[1]} "
                "prompt/completion tokens"
            )
        cost = sum(float(r["cost_usd"]) for r in records)
        failed = sum(1 for r in records if r["outcome"] != "summarized")
        return cls(prompt, completion, cost, failed, mismatch)

    def failures(self, mode: str, unit: str) -> list[str]:
        """The FAILED lines of the run ``mode`` (``unit``: what its records are of)."""
        lines = [f"FAILED: {mode}: {self.failed} {unit} failed"] if self.failed else []
        return lines + ([f"FAILED: {mode}: {self.mismatch}"] if self.mismatch else [])


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# -- one measured run ---------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    expected: int
    window_s: float = 60.0
    ok: int = 0
    failed: int = 0
    seconds: float = math.nan
    cpu_s: float = math.nan  # of the whole process, start-up and exit included
    # measured inside the process: its CPU over ``work_docs`` docs, between a point where it
    # was already running (0 docs, or the first heartbeat seen) and its last docs
    work_cpu_s: float = math.nan
    work_docs: int = 0
    rss_mb: float = math.nan
    busy: float = math.nan
    requests: int = 0
    rate_limited: int = 0
    peak_concurrency: int = 0  # seen by the mock
    redis_cpu_s: float = math.nan
    redis_commands: int = 0
    starts: list[float] = field(default_factory=list, repr=False)
    ends: list[float] = field(default_factory=list, repr=False)
    error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else math.nan

    @property
    def lost(self) -> int:
        """Docs failed or never settled."""
        return self.expected - self.ok

    @property
    def cpu_ms_per_doc(self) -> float:
        """Client CPU per doc, from inside the process (start-up and exit excluded)."""
        return 1000 * self.work_cpu_s / self.work_docs if self.work_docs > 0 else math.nan

    def set_span(self, starts: list[float], ends: list[float]) -> None:
        self.starts, self.ends = starts, ends
        if starts and ends:
            self.seconds = max(ends) - min(starts)


class Bench:
    """What the runs share: temp dir, Redis, the docs and their prompts."""

    def __init__(self, tmp: Path, redis_url: str, concurrency: int, n: int, log_level: str) -> None:
        from common.settings import LLMSettings
        from distcrawl.sample_docs import make_docs

        self.tmp = tmp
        self.redis_url = redis_url
        self.concurrency = concurrency
        self.log_level = log_level
        self.stamp = f"{int(time.time())}-{os.getpid()}"
        self.notes: list[str] = []
        self._runs = 0
        # The prompts distcrawl builds for these docs (far below its input budget, so not
        # truncated): the plain loop sends exactly these.
        self.docs = make_docs(n)
        template = LLMSettings().prompt
        prompts = [template.format(title=d.title, url=d.url, text=d.text) for d in self.docs]
        self.prompts_file = tmp / "prompts.json"
        self.prompts_file.write_text(json.dumps(prompts))

    def _name(self, label: str) -> str:
        self._runs += 1
        return f"bench-{self.stamp}-{self._runs}-{label}"

    # distcrawl ----------------------------------------------------------------------------

    def distcrawl(
        self,
        name: str,
        mock: Mock,
        n: int,
        rpm: int = 0,
        transport: str = "direct",
    ) -> Result:
        import redis

        from common.keys import CrawlKeys

        keys = CrawlKeys(self._name("dc"))
        asyncio.run(_feed(self.redis_url, keys, self.docs[:n]))
        with redis.Redis.from_url(self.redis_url, decode_responses=True) as client:
            return self._distcrawl(name, mock, n, rpm, transport, keys, client)

    def _distcrawl(
        self,
        name: str,
        mock: Mock,
        n: int,
        rpm: int,
        transport: str,
        keys: CrawlKeys,
        client: redis.Redis,
    ) -> Result:
        redis_cpu0, commands0 = _redis_usage(client)
        mock.reset()
        args = [
            "-m",
            "distcrawl.cli",
            "summarize",
            "--drain",
            "--redis",
            self.redis_url,
            "--crawl",
            keys.crawl,
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
        ]
        if rpm:  # told the provider's window, as a user would configure it
            args += ["--llm-rpm", str(rpm), "--llm-limit-window", f"{mock.window_s:g}"]
        env = {
            "OPENAI_API_KEY": API_KEY,
            "DISTCRAWL_LLM__BASE_URL": mock.base_url,
            "DISTCRAWL_LLM__MODEL": MODEL,
            "DISTCRAWL_LLM__TRANSPORT": transport,
            # frequent beats: each carries the process's CPU and docs so far (the samples)
            "DISTCRAWL_WORKER__HEARTBEAT_S": str(BEAT_S),
        }
        beats = _Beats(client, keys.workers)
        child = run_child(
            self.tmp,
            keys.crawl,
            args,
            env,
            done=lambda: int(client.hlen(keys.summaries)) >= n,
            sample=beats.sample,
        )
        result = _measured(Result(name, n, mock.window_s), mock, child)
        result.work_cpu_s, result.work_docs = beats.work()
        redis_cpu1, commands1 = _redis_usage(client)
        result.redis_cpu_s = redis_cpu1 - redis_cpu0
        result.redis_commands = commands1 - commands0
        records = [json.loads(raw) for raw in client.hvals(keys.summaries)]
        result.ok = sum(1 for rec in records if rec.get("outcome") == "summarized")
        result.failed = len(records) - result.ok
        ends = [float(rec["created_at"]) for rec in records]
        result.set_span(
            [e - float(rec["elapsed_ms"]) / 1000 for e, rec in zip(ends, records, strict=True)],
            ends,
        )
        if child.note:
            self.notes.append(f"{name} (crawl {keys.crawl}) {child.note}")
        elif child.code != 0:
            result.error = f"exit {child.code}: {_tail(child.stderr)}"
        return result

    # the plain loop -----------------------------------------------------------------------

    def plain(self, name: str, mock: Mock, n: int, concurrency: int | None = None) -> Result:
        mock.reset()
        args = [
            "-m",
            "bench.llm",
            "--variant",
            "plain",
            "--base-url",
            mock.base_url,
            "--prompts",
            str(self.prompts_file),
            "--docs",
            str(n),
            "--concurrency",
            str(concurrency or self.concurrency),
            "--retries",
            str(PLAIN_RETRIES),
        ]
        child = run_child(self.tmp, self._name("plain"), args)
        result = _measured(Result(name, n, mock.window_s), mock, child)
        if child.code != 0:
            result.error = f"exit {child.code}: {_tail(child.stderr)}"
            return result
        doc = json.loads(child.stdout.strip().splitlines()[-1])
        result.ok, result.failed = int(doc["ok"]), int(doc["failed"])
        result.work_cpu_s, result.work_docs = float(doc["cpu_s"]), int(doc["cpu_docs"])
        result.set_span(doc["starts"], doc["ends"])
        return result


def _measured(result: Result, mock: Mock, child: Child) -> Result:
    stats = mock.stats()
    result.requests = int(stats["requests"])
    result.rate_limited = int(stats["rate_limited"])
    result.peak_concurrency = int(stats["peak_concurrency"])
    result.cpu_s = child.cpu_s
    result.rss_mb = child.rss_mb
    result.busy = child.busy
    return result


class _Beats:
    """The distcrawl worker's heartbeats, read while it runs: (docs settled, process CPU)
    samples taken inside the process, so CPU of N docs minus CPU of 0 docs excludes start-up
    (imports, connecting) and exit."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key
        self.samples: list[tuple[int, float]] = []

    def sample(self) -> None:
        for raw in self._client.hvals(self._key):
            beat = json.loads(raw)
            if "cpu_s" in beat:
                docs = int(beat.get("summarized", 0)) + int(beat.get("failed", 0))
                self.samples.append((docs, float(beat["cpu_s"])))

    def work(self) -> tuple[float, int]:
        """(CPU seconds, docs) from the first sample after a doc was settled (the first
        call's set-up excluded, as for the plain loop) to the last."""
        after = [s for s in self.samples if s[0] > 0]
        if len(after) < 2:
            return math.nan, 0
        (docs0, cpu0), (docs1, cpu1) = min(after), max(after)
        return cpu1 - cpu0, docs1 - docs0


async def _feed(url: str, keys: CrawlKeys, docs: list[Doc]) -> None:
    """Queue ``docs`` for a run, with the summary cache emptied: the runs of a bench summarize
    the same texts, and the cache is shared by every crawl on the bench's (private) Redis."""
    from redis.asyncio import Redis

    from distcrawl.sample_docs import feed_docs
    from summarizer.cache import SummaryCache

    client = Redis.from_url(url, decode_responses=True)
    try:
        await SummaryCache(client, ttl_s=0).clear()
        await feed_docs(client, keys, docs)
    finally:
        await client.aclose()


def _redis_usage(client: redis.Redis) -> tuple[float, int]:
    """Redis's CPU seconds so far, and the commands it has processed."""
    info = client.info()
    return (
        float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        int(info["total_commands_processed"]),
    )


# -- report -------------------------------------------------------------------------------------


def _fmt(value: float, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}{spec}}"


def _later_rate(r: Result, skip_s: float) -> float:
    """Docs/s of the docs started ``skip_s`` or more after the first one started."""
    if not r.starts:
        return math.nan
    t0 = min(r.starts)
    late = [(s, e) for s, e in zip(r.starts, r.ends, strict=True) if s >= t0 + skip_s]
    if len(late) < 2:
        return math.nan
    span = max(e for _, e in late) - min(s for s, _ in late)
    return len(late) / span if span > 0 else math.nan


def _in_flight(r: Result) -> float:
    """Mean docs in flight: the sum of the docs' times over the span (Little's law)."""
    total = sum(e - s for s, e in zip(r.starts, r.ends, strict=True))
    return total / r.seconds if r.seconds > 0 else math.nan


def _goodput(r: Result) -> float:
    return r.ok / r.seconds if r.seconds > 0 else math.nan


def _share(r: Result) -> float:
    return r.rate_limited / r.requests if r.requests else math.nan


def print_throughput(results: list[Result], ideal: float, n: int) -> None:
    print(HEADER)
    for r in results:
        print(
            f"{r.name:<30} {r.ok:>6} {_fmt(r.seconds, '.2f', 8)} {_fmt(r.rate, '.1f', 8)} "
            f"{_fmt(r.rate / ideal, '.3f', 8)} {_fmt(r.cpu_ms_per_doc, '.3f', 12)} "
            f"{_fmt(r.rss_mb, '.0f', 12)} {_fmt(100 * r.busy, '.0f', 9)}%"
        )
    print(
        f"{'ideal (C/L)':<30} {n:>6} {n / ideal:>8.2f} {ideal:>8.1f} {1.0:>8.3f} "
        f"{'-':>12} {'-':>12} {'-':>10}"
    )


def print_limited(results: list[Result], limit_rps: float) -> None:
    print(HEADER2)
    for r in results:
        goodput = _goodput(r)
        print(
            f"{r.name:<30} {r.window_s:>6g}s {r.expected:>5} {r.ok:>5} {r.lost:>6} "
            f"{_fmt(r.seconds, '.2f', 8)} {_fmt(goodput, '.1f', 10)} "
            f"{_fmt(goodput / limit_rps, '.3f', 8)} "
            f"{_fmt(r.requests / r.expected if r.expected else math.nan, '.2f', 8)} "
            f"{_fmt(100 * _share(r), '.2f', 9)}% {_fmt(r.cpu_ms_per_doc, '.3f', 12)}"
        )


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_targets(
    dc: Result, plain: Result, ideal: float, limited: list[Result], limit_rps: float
) -> None:
    print("\ntargets (from the issue; printed, not asserted):")
    ratio = dc.rate / ideal
    cores = dc.work_cpu_s / dc.seconds if dc.seconds > 0 else math.nan
    print(
        f"  distcrawl / ideal              {ratio:6.3f}  target >= 0.95 until CPU-bound  "
        f"{_verdict(ratio >= 0.95)}  (its process used {cores:.2f} CPU cores over the run, "
        f"net of start-up; the host was {100 * dc.busy:.0f}% busy)"
    )
    cpu_ratio = dc.cpu_ms_per_doc / plain.cpu_ms_per_doc
    print(
        f"  client CPU/doc distcrawl/plain  {cpu_ratio:5.3f}  target <= 0.50                "
        f" {_verdict(cpu_ratio <= 0.5)}  ({dc.cpu_ms_per_doc:.3f} vs "
        f"{plain.cpu_ms_per_doc:.3f} ms per doc)"
    )
    for r in limited:
        goodput, share = _goodput(r) / limit_rps, _share(r)
        print(
            f"  {limit_rps:g} req/s, {r.window_s:g} s window: goodput {goodput:.3f} of the limit "
            f"(>= 0.95) {_verdict(goodput >= 0.95)}; 429s {100 * share:.2f}% of requests "
            f"(< 1%) {_verdict(share < 0.01)}; docs failed {r.lost} (0) "
            f"{_verdict(r.lost == 0)}"
        )


def print_failures(results: list[tuple[Result, bool]]) -> None:
    """FAILED lines: a variant that crashed, or should have summarized every doc and did not."""
    for r, must_complete in results:
        if r.error:
            print(f"FAILED: {r.name}: {r.error}")
        elif must_complete and r.ok < r.expected:
            print(
                f"FAILED: {r.name} ({r.window_s:g} s window) summarized {r.ok} of "
                f"{r.expected} docs ({r.failed} failed, {r.expected - r.ok - r.failed} "
                "never settled)"
            )


def _notes_throughput(bench: Bench, results: list[Result], ideal: float, latency: float) -> None:
    dc, via_openai, plain, seq = results
    print(
        f"# distcrawl / ideal {dc.rate / ideal:.3f}; distcrawl / plain loop "
        f"{dc.rate / plain.rate:.3f}; client CPU per doc distcrawl / plain "
        f"{dc.cpu_ms_per_doc / plain.cpu_ms_per_doc:.3f}"
    )
    print(
        f"# docs started 1 s or more after the first (distcrawl's AdaptiveLimit starts at "
        f"C/2 and slow-starts to C): distcrawl {_later_rate(dc, 1.0):.1f} docs/s, plain loop "
        f"{_later_rate(plain, 1.0):.1f} docs/s"
    )
    print(
        f"# docs in flight on average (sum of per-doc times / span; distcrawl leases a few "
        f"more docs than it may call for): distcrawl {_in_flight(dc):.1f}, plain loop "
        f"{_in_flight(plain):.1f}; peak requests in flight at the mock: distcrawl "
        f"{dc.peak_concurrency}, plain loop {plain.peak_concurrency}"
    )
    print(
        f"# transport: distcrawl posts the AsyncOpenAI client's request on one aiohttp "
        f"session (DISTCRAWL_LLM__TRANSPORT=direct, the default); through AsyncOpenAI.post "
        f"(=openai) it used {via_openai.cpu_ms_per_doc:.3f} CPU ms per doc, "
        f"{via_openai.cpu_ms_per_doc / plain.cpu_ms_per_doc:.3f} of the plain loop's"
    )
    print(f"# sequential: {seq.rate:.2f} docs/s = {seq.rate * latency:.3f} of 1/L")
    print(
        f"# CPU ms/doc: measured inside the client process after its first doc "
        f"(time.process_time: the plain loop itself; distcrawl from its heartbeats every "
        f"{BEAT_S:g} s, the first after a settled doc and the last: distcrawl "
        f"{dc.work_docs} docs in {dc.work_cpu_s:.2f} s, plain loop {plain.work_docs} in "
        f"{plain.work_cpu_s:.2f} s), so "
        f"start-up and exit are not in it; not included: {_redis_note(dc)}"
    )
    print(
        f"# host busy: the whole machine's CPU while the variant ran (the mock, Redis and any "
        f"other load share it); distcrawl ran at --log-level {bench.log_level} on uvloop, the "
        f"plain loop on asyncio.run"
    )


def _redis_note(r: Result) -> str:
    docs = max(1, r.expected)
    return (
        f"Redis used {1000 * r.redis_cpu_s / docs:.3f} CPU ms and ran "
        f"{r.redis_commands / docs:.1f} commands per doc for {r.name}"
    )


def _notes_limited(limit_rps: float, limited: list[Result]) -> None:
    for r in limited[::2]:
        print(f"# {r.window_s:g} s window: {_redis_note(r)}")
    print(
        f"# window 60s: tests.mock_llm as it is, --rpm {LIMIT_RPM} over its sliding 60 s "
        f"window (a run shorter than a minute meets it only after {LIMIT_RPM} requests);\n"
        f"# window 1s: the same mock with a 1 s sliding window and --rpm {limit_rps:g}: "
        f"at most {limit_rps:g} requests in any second.\n"
        f"# plain loop: max_retries=0; on a 429 it sleeps the Retry-After header's seconds "
        f"(whole seconds, rounded up by the mock) holding its semaphore slot, then retries, "
        f"at most {PLAIN_RETRIES} times; then the doc is failed (its losses are data here)."
    )


# -- main ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    docs: int
    docs2: int
    sequential: int
    latency: float
    concurrency: int
    log_level: str


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--docs", type=int, default=4000, help="docs of the throughput scenario")
    p.add_argument("--docs2", type=int, default=600, help="docs of the 50 req/s scenario")
    p.add_argument("--sequential", type=int, default=20, help="docs of the one-at-a-time run")
    p.add_argument("--latency", type=float, default=0.2, help="mock latency L in seconds")
    p.add_argument("--concurrency", type=int, default=64, help="client concurrency C")
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING"],
        help="distcrawl's log level (default: INFO, its own default)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    # internal: the child processes
    p.add_argument("--variant", choices=["plain"], help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--prompts", help=argparse.SUPPRESS)
    p.add_argument("--retries", type=int, default=PLAIN_RETRIES, help=argparse.SUPPRESS)
    return p.parse_args(sys.argv[1:] if argv is None else argv)


def _header(plan: Plan) -> None:
    import openai

    print(
        f"# bench/llm: mock LLM in its own process, latency {plan.latency:g} s; client "
        f"concurrency {plan.concurrency}; {plan.docs} docs (throughput), {plan.docs2} docs "
        f"(50 req/s limit), {plan.sequential} docs (sequential); {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({platform.machine()}); openai "
        f"{openai.__version__}",
        flush=True,
    )


def run_bench(plan: Plan) -> None:
    from distcrawl.redis_server import RedisServer

    _header(plan)
    ideal = plan.concurrency / plan.latency
    limit_rps = LIMIT_RPM / 60
    c = plan.concurrency
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        server = RedisServer(tmp / "redis")
        server.start()
        stack.callback(server.stop)
        bench = Bench(
            tmp, server.url, c, max(plan.docs, plan.docs2, plan.sequential), plan.log_level
        )
        mock = Mock(tmp, plan.latency)
        stack.callback(mock.stop)
        strict = Mock(tmp, plan.latency, window_s=1.0, rpm=round(limit_rps))
        stack.callback(strict.stop)
        mock.ready(), strict.ready()
        results = [
            bench.distcrawl(f"distcrawl summarize C={c}", mock, plan.docs),
            bench.distcrawl("  (transport openai)", mock, plan.docs, transport="openai"),
            bench.plain(f"plain AsyncOpenAI loop C={c}", mock, plan.docs),
            bench.plain("sequential (plain loop, C=1)", mock, plan.sequential, 1),
        ]
        print(
            f"\n## 1. throughput: mock latency L={plan.latency:g} s, C={c}, ideal C/L = "
            f"{ideal:g} docs/s",
            flush=True,
        )
        print_throughput(results, ideal, plan.docs)
        _notes_throughput(bench, results, ideal, plan.latency)
        mock.reset(rpm=LIMIT_RPM)
        limited: list[Result] = []
        for m in (mock, strict):
            limited += [
                bench.distcrawl(f"distcrawl --llm-rpm {LIMIT_RPM}", m, plan.docs2, rpm=LIMIT_RPM),
                bench.plain(f"plain loop, {PLAIN_RETRIES} retries", m, plan.docs2),
            ]
    print(
        f"\n## 2. a provider limit of {limit_rps:g} requests/s (the mock answers 429 + "
        f"Retry-After over it), C={c}, L={plan.latency:g} s"
    )
    print_limited(limited, limit_rps)
    _notes_limited(limit_rps, limited)
    print_targets(results[0], results[2], ideal, limited[::2], limit_rps)
    for note in bench.notes:
        print(f"NOTE: {note}")
    print_failures(
        [*((r, True) for r in results), *((r, i % 2 == 0) for i, r in enumerate(limited))]
    )


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.variant == "plain":
        _child_plain(args)
    else:
        if args.quick:
            args.docs, args.docs2, args.sequential = 300, 100, 5
        run_bench(
            Plan(
                args.docs,
                args.docs2,
                args.sequential,
                args.latency,
                args.concurrency,
                args.log_level,
            )
        )


if __name__ == "__main__":
    main()
