"""Redis memory per crawled page: exact vs Bloom seen set, with and without a lagging summarizer.

    python -m bench.memory [--pages-per-host 1000] [--hosts 4] [--quick]

Each case is a fresh crawl on its own fresh redis-server, against the bench site (bench/site.py:
40 KB pages with 55 links each): ``produce``, two ``crawl --drain`` processes and, in the
lagging cases, one ``summarize --drain`` against the mock OpenAI server answering in 0.05 s with
4 calls in flight (about 80 docs/s, several times slower than the crawlers). Redis' used_memory is
sampled every 0.2 s; the table prints the peak and the end, each minus the empty server's, per
crawled page. Two crawl lengths of the lagging case show whether the peak follows the backlog
bound or the crawl's length. Nothing here asserts: it prints.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.crawl import produce, spawn
from distcrawl.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    name: str
    seen: str
    pages_per_host: int
    summarize: bool
    revisit: bool = True  # keep revisit state (the default with the exact set; docs/revisits.md)


@dataclass
class Row:
    case: Case
    pages: int
    peak_bytes: int
    end_bytes: int
    max_docs: int

    def line(self) -> str:
        per = max(1, self.pages)
        return (
            f"{self.case.name:<34} {self.pages:>7,} {self.peak_bytes / per:>12,.0f}"
            f" {self.end_bytes / per:>11,.0f} {self.peak_bytes / 1024 / 1024:>9.1f}"
            f" {self.max_docs:>9,}"
        )


HEADER = (
    f"{'case':<34} {'pages':>7} {'peak B/page':>12} {'end B/page':>11} {'peak MB':>9}"
    f" {'max docs':>9}"
)


def _ready(proc: subprocess.Popen[str], what: str) -> str:
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("ready "):
        raise SystemExit(f"{what} did not start: {line!r}")
    return line.split()[1]


def _sample(url: str, crawl: str, stop: threading.Event, out: dict[str, int]) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    docs = f"distcrawl:{{{crawl}}}:docs"
    while not stop.is_set():
        out["peak"] = max(out["peak"], int(client.info("memory")["used_memory"]))
        out["docs"] = max(out["docs"], int(client.llen(docs)))
        stop.wait(0.2)
    client.close()


def run_case(case: Case, hosts: list[str], tmp: Path, llm_url: str, backlog: int) -> Row:
    server = RedisServer(tmp / f"redis-{case.name.replace(' ', '-')}")
    server.start()
    site = spawn(
        ["-m", "bench.site", "--addresses", ",".join(hosts), "--pages", str(case.pages_per_host)]
    )
    port = _ready(site, "bench site")
    crawl = "mem"
    store = ["--redis", server.url, "--crawl", crawl]
    client = redis.Redis.from_url(server.url, decode_responses=True)
    base = int(client.info("memory")["used_memory"])
    try:
        produce(
            [*store, *(f"http://{h}:{port}/p/0.html" for h in hosts)]
            + ["--rate", "100000", "--burst", "100000", "--per-domain-inflight", "64"]
            + ["--seen", case.seen, "--max-docs-backlog", str(backlog)]
            # Bloom filters sized for the crawl, as a user who knows its scale would
            + ["--seen-capacity", str(max(1000, len(hosts) * (case.pages_per_host + 1)))]
            + ([] if case.summarize else ["--no-summarize"])
            + ([] if case.revisit else ["--no-revisit"])
        )
        sampled = {"peak": base, "docs": 0}
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(server.url, crawl, stop, sampled))
        sampler.start()
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "DISTCRAWL_LLM__BASE_URL": llm_url,
            "DISTCRAWL_LOG_LEVEL": "WARNING",
        }
        workers = [
            spawn(["-m", "distcrawl.cli", "crawl", *store, "--drain", "--allow-private"], env)
            for _ in range(2)
        ]
        if case.summarize:
            workers.append(
                spawn(
                    ["-m", "distcrawl.cli", "summarize", *store, "--drain", "--concurrency", "4"],
                    env,
                )
            )
        for proc in workers:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"a worker failed: {err[-2000:]}")
        stop.set()
        sampler.join()
        end = int(client.info("memory")["used_memory"])
        pages = int(client.hget(f"distcrawl:{{{crawl}}}:counts", "done") or 0)
        return Row(case, pages, sampled["peak"] - base, end - base, sampled["docs"])
    finally:
        client.close()
        site.terminate()
        site.wait()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--pages-per-host", type=int, default=1000)
    p.add_argument("--backlog", type=int, default=500, help="--max-docs-backlog of the crawls")
    p.add_argument("--quick", action="store_true", help="a small site, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.hosts, args.pages_per_host, args.backlog = 2, 60, 20
    hosts = [f"127.0.0.{21 + i}" for i in range(args.hosts)]
    n = args.pages_per_host
    cases = [
        Case("exact set, no summarizer", "set", n, summarize=False),
        Case("exact set, no summ., --no-revisit", "set", n, summarize=False, revisit=False),
        Case("Bloom, no summarizer", "bloom", n, summarize=False),
        Case(f"exact set, lagging LLM, {n // 2}/host", "set", n // 2, summarize=True),
        Case(f"exact set, lagging LLM, {n}/host", "set", n, summarize=True),
        Case(f"Bloom, lagging LLM, {n}/host", "bloom", n, summarize=True),
    ]
    if args.quick:  # one case of each kind
        cases = [cases[0], cases[2], cases[4]]
    mock = spawn(
        ["-m", "tests.mock_llm", "--port", "0", "--api-key", "sk-bench", "--latency", "0.05"]
    )
    llm_url = _ready(mock, "mock LLM")
    print(
        f"distcrawl Redis memory bench: {args.hosts} hosts, 40 KB pages with 55 links, "
        f"docs backlog bound {args.backlog}, bytes = used_memory minus the empty server's"
    )
    print(HEADER)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for case in cases:
                started = time.monotonic()
                row = run_case(case, hosts, Path(tmp), llm_url, args.backlog)
                print(row.line() + f"   ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()
