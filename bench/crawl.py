"""Crawl throughput: distcrawl on the real Redis frontier vs a raw aiohttp+selectolax loop.

    python -m bench.crawl [--pages-per-host 2500] [--hosts 4] [--concurrency 64] [--quick]

One run, side by side, on the same local site (bench/site.py, pre-rendered 40 KB pages with 55
links each, several 127.0.0.x hosts): the raw loop, one distcrawl `crawl` process, two
processes. Prints pages/s, the ratio to the raw loop, CPU seconds per 1,000 pages (user+sys of
the crawler processes, from wait4) and peak RSS. Politeness limits are raised for the bench
(it measures the crawler, not the delay). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.nginx_site import NginxSite, nginx_available
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    name: str
    pages: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    redis_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0


def _wait(proc: subprocess.Popen[str]) -> tuple[int, float, float]:
    """Exit status, CPU seconds and peak RSS (MB) of one child, from wait4."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_raw(seeds: list[str], concurrency: int) -> Result:
    proc = _spawn(["-m", "bench.rawloop", "--concurrency", str(concurrency), *seeds])
    out = proc.stdout.read() if proc.stdout else ""
    code, cpu, rss = _wait(proc)
    if code != 0:
        raise SystemExit(f"raw loop failed: {proc.stderr.read() if proc.stderr else ''}")
    doc = json.loads(out.strip().splitlines()[-1])
    return Result("raw aiohttp loop", int(doc["pages"]), doc["last"] - doc["first"], cpu, rss)


def run_distcrawl(
    name: str, url: str, crawl: str, seeds: list[str], concurrency: int, processes: int
) -> Result:
    store = ["--redis", url, "--crawl", crawl]
    client = redis.Redis.from_url(url, decode_responses=True)
    redis_cpu_before = _redis_cpu(client)
    produce = subprocess.run(
        [
            sys.executable,
            "-m",
            "distcrawl.cli",
            "produce",
            *store,
            *seeds,
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--per-domain-inflight",
            str(concurrency * processes),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if produce.returncode != 0:
        raise SystemExit(f"produce failed: {produce.stderr}")
    procs = [
        _spawn(
            [
                "-m",
                "distcrawl.cli",
                "crawl",
                *store,
                "--drain",
                "--allow-private",
                "--concurrency",
                str(concurrency),
                "--log-level",
                "WARNING",
            ]
        )
        for _ in range(processes)
    ]
    cpu = rss = 0.0
    for proc in procs:
        code, c, r = _wait(proc)
        if code != 0:
            raise SystemExit(f"crawl failed: {proc.stderr.read() if proc.stderr else ''}")
        cpu += c
        rss = max(rss, r)
    redis_cpu = _redis_cpu(client) - redis_cpu_before
    starts, ends = [], []
    pages = 0
    for raw in client.hvals(f"distcrawl:{{{crawl}}}:pages"):
        rec = json.loads(raw)
        if rec.get("outcome") == "done":
            pages += 1
            starts.append(rec["fetched_at"])
            ends.append(rec["fetched_at"] + rec["elapsed_ms"] / 1000)
    client.close()
    return Result(name, pages, max(ends) - min(starts), cpu, rss, redis_cpu)


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class _AiohttpSite:
    def __init__(self, addresses: str, pages: int) -> None:
        self.proc = _spawn(["-m", "bench.site", "--addresses", addresses, "--pages", str(pages)])
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready "):
            raise SystemExit(f"bench site did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _start_site(tmp: Path, addresses: str, pages: int, nginx: bool) -> _AiohttpSite | NginxSite:
    if not nginx:
        return _AiohttpSite(addresses, pages)
    site = NginxSite(tmp / "nginx", addresses.split(","), free_port(), pages)
    site.start()
    return site


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--pages-per-host", type=int, default=2500)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="a small site, for a smoke test")
    p.add_argument("--skip-two", action="store_true", help="do not run the 2-process case")
    p.add_argument(
        "--server",
        choices=["auto", "nginx", "aiohttp"],
        default="auto",
        help="who serves the site (auto: nginx when installed)",
    )
    args = p.parse_args()
    if args.quick:
        args.hosts, args.pages_per_host = 2, 150
    addresses = ",".join(f"127.0.0.{11 + i}" for i in range(args.hosts))
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        use_nginx = args.server == "nginx" or (args.server == "auto" and nginx_available())
        site = _start_site(Path(tmp), addresses, args.pages_per_host, use_nginx)
        try:
            port = site.port
            seeds = [f"http://{a}:{port}/p/0.html" for a in addresses.split(",")]
            total = args.hosts * (args.pages_per_host + 1)  # each host's "/" too
            print(
                f"# bench/crawl: {total} pages of ~40 KB with 55 links on {args.hosts} hosts; "
                f"served by {'nginx' if use_nginx else 'aiohttp'}; concurrency "
                f"{args.concurrency}; {os.cpu_count()} CPUs; Python {platform.python_version()}"
            )
            results = [run_raw(seeds, args.concurrency)]
            stamp = int(time.time())
            results.append(
                run_distcrawl(
                    "distcrawl, 1 process", server.url, f"b1-{stamp}", seeds, args.concurrency, 1
                )
            )
            if not args.skip_two:
                results.append(
                    run_distcrawl(
                        "distcrawl, 2 processes",
                        server.url,
                        f"b2-{stamp}",
                        seeds,
                        args.concurrency,
                        2,
                    )
                )
        finally:
            site.stop()
            server.stop()
    raw = results[0]
    print(
        f"{'run':<24} {'pages':>6} {'seconds':>8} {'pages/s':>8} {'x raw':>6} "
        f"{'CPU-s/1k':>9} {'redis CPU-s/1k':>15} {'peak RSS MB':>12}"
    )
    for r in results:
        print(
            f"{r.name:<24} {r.pages:>6} {r.seconds:>8.2f} {r.rate:>8.0f} "
            f"{r.rate / raw.rate:>6.2f} {1000 * r.cpu_s / max(1, r.pages):>9.2f} "
            f"{1000 * r.redis_cpu_s / max(1, r.pages):>15.2f} {r.peak_rss_mb:>12.0f}"
        )
    for r in results:
        if r.pages != total:
            print(f"FAILED: {r.name} crawled {r.pages} pages, expected {total}")
    if len(results) == 3:
        print(f"two processes / one: {results[2].rate / results[1].rate:.2f}x")
    load1, _, _ = os.getloadavg()
    print(
        f"# CPU-s/1k: user+sys of the crawler process(es) per 1,000 pages; load average "
        f"after the run {load1:.1f} on {os.cpu_count()} CPUs (the site server, Redis and the "
        "crawlers share them)"
    )


if __name__ == "__main__":
    main()
