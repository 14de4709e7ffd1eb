"""What a revisit pass saves: bytes fetched and LLM calls of a second pass of a crawl where a
share of the pages changed, against its first pass (what a crawler without revisits, or a new
crawl, pays every time).

    python -m bench.revisit [--pages 10000] [--changed 0.05] [--quick]

One site (distcrawl.foldersite: static files with ETag/Last-Modified, as nginx serves them),
one mock LLM (tests.mock_llm, counting calls), two `distcrawl run` passes on one output folder.
Between the passes the given share of pages gets a new text. Bytes are response bodies as the
server counted them; calls are the mock's accepted chat completions. Target (issue 15): pass 2
at most 10% of pass 1's bytes, and exactly the changed pages' calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.llm import API_KEY, Mock

ROOT = Path(__file__).resolve().parent.parent
HEADER = "pass  requests  304s  body bytes  LLM calls  seconds  bytes vs pass 1  calls vs pass 1"


def _page(i: int, version: int, links: list[int]) -> str:
    words = " ".join(f"word{(i * 7 + k * version) % 997}" for k in range(1200))  # ~10 KB
    anchors = " ".join(f'<a href="/p{j}.html">p{j}</a>' for j in links)
    return (
        f"<html><head><title>page {i} v{version}</title></head><body><nav>{anchors}</nav>"
        f"<article><p>Page {i}, version {version}. {words}</p></article></body></html>"
    )


def _links(i: int, pages: int) -> list[int]:
    return sorted({(i * 31 + k) % pages for k in (1, 2, 3)} | {(i + 1) % pages})


class Site:
    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distcrawl.foldersite", "--root", str(root), "--log", str(log)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready "):
            raise SystemExit(f"folder site did not start: {line!r}")
        self.base = f"http://127.0.0.1:{line.split()[1]}"

    def requests_since(self, t: float) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [r for r in map(json.loads, lines) if r["t"] >= t]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _run_pass(site: Site, mock: Mock, out: Path) -> tuple[list[dict[str, object]], int, float]:
    before, started = mock.stats()["requests"], time.time()
    env = {
        **os.environ,
        "OPENAI_API_KEY": API_KEY,
        "DISTCRAWL_LLM__BASE_URL": mock.base_url,
        "DISTCRAWL_LLM__MODEL": "mock-model",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "distcrawl.cli", "run", f"{site.base}/p0.html", "--out", str(out),
         "--no-progress", "--allow-private", "--rate", "2000", "--burst", "500",
         "--per-domain-inflight", "64", "--concurrency", "64", "--llm-concurrency", "64"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        print(f"FAILED: run exited {proc.returncode}\n{proc.stderr[-3000:]}")
        raise SystemExit(1)
    return site.requests_since(started), mock.stats()["requests"] - before, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="500 pages (a smoke test)")
    args = parser.parse_args()
    pages = 500 if args.quick else args.pages
    with tempfile.TemporaryDirectory(prefix="bench-revisit-") as tmp_dir:
        tmp = Path(tmp_dir)
        root = tmp / "site"
        root.mkdir()
        for i in range(pages):
            (root / f"p{i}.html").write_text(_page(i, 1, _links(i, pages)))
        site, mock = Site(root, tmp / "site.log"), Mock(tmp, latency=0.0).ready()
        try:
            rows = []
            first = _run_pass(site, mock, tmp / "out")
            changed = random.Random(7).sample(range(pages), int(pages * args.changed))
            bump = time.time() + 2
            for i in changed:
                path = root / f"p{i}.html"
                path.write_text(_page(i, 2, _links(i, pages)))
                os.utime(path, (bump, bump))
            second = _run_pass(site, mock, tmp / "out")
            rows = [first, second]
        finally:
            site.stop()
            mock.stop()
    print(
        f"{pages} pages of ~10 KB, {len(changed)} changed between the passes ({args.changed:.0%})"
    )
    print(HEADER)
    base_bytes = sum(int(str(r["bytes"])) for r in rows[0][0])
    for n, (requests, calls, seconds) in enumerate(rows, 1):
        sent = sum(int(str(r["bytes"])) for r in requests)
        n304 = sum(1 for r in requests if r["status"] == 304)
        print(
            f"{n:>4}  {len(requests):>8}  {n304:>4}  {sent:>10,}  {calls:>9}  {seconds:>7.1f}"
            f"  {sent / base_bytes:>15.1%}  {calls / max(1, rows[0][1]):>15.1%}"
        )
    calls_2 = rows[1][1]
    verdict = "exactly the changed pages" if calls_2 == len(changed) else "NOT the changed pages"
    print(f"pass 2 LLM calls: {calls_2} for {len(changed)} changed pages ({verdict})")
    if calls_2 != len(changed):
        print("FAILED: pass 2 summarized something other than the changed pages")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
