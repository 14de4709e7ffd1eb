"""Batch vs live: the same docs summarized by live calls and through the Batch API, cost compared.

    python -m bench.llm_batch [--docs N] [--quick]

N docs (distinct texts, fed straight into the docs queue) are summarized twice by one
``distcrawl summarize --drain`` process against the mock LLM (tests/mock_llm.py in its own
process) on a real redis-server: ``--llm-mode live``, then ``--llm-mode batch`` (batches of
``--batch-size``). Per mode: the requests the mock answered (live calls, batch requests, batches),
prompt and completion tokens (the records' sums, which the mock's own totals must equal), and the
estimated cost at gpt-4o-mini's price (0.15 / 0.60 USD per million tokens; batch answers at
``DISTCRAWL_LLM__BATCH_PRICE``, 0.5 of it by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.llm import Mock, Spent, _feed, summarize_drain

PRICE = (0.15, 0.60)  # gpt-4o-mini, USD per million tokens (input, output)
HEADER = (
    f"{'mode':<6} {'docs':>6} {'live calls':>10} {'batch req':>9} {'batches':>7} "
    f"{'prompt tok':>10} {'compl tok':>9} {'USD':>10} {'USD/1k docs':>11}"
)


@dataclass
class ModeResult:
    mode: str
    docs: int
    live_calls: int
    batch_requests: int
    batches: int
    spent: Spent


def run_mode(tmp: Path, redis_url: str, mock: Mock, mode: str, n: int, size: int) -> ModeResult:
    from common.keys import CrawlKeys
    from distcrawl.sample_docs import make_docs

    keys = CrawlKeys(f"batch-bench-{mode}-{n}")
    asyncio.run(_feed(redis_url, keys, make_docs(n)))
    mock.reset(record_requests=100_000)
    records = summarize_drain(
        tmp,
        redis_url,
        keys,
        mock,
        n,
        label=mode,
        price=PRICE,
        args=["--llm-mode", mode],
        env={
            "DISTCRAWL_LLM__BATCH_SIZE": str(size),
            "DISTCRAWL_LLM__BATCH_POLL_S": "0.2",
            "DISTCRAWL_LLM__BATCH_ADOPT_S": "10",
            "DISTCRAWL_LLM__BATCH_GATHER_S": "0",
        },
    )
    stats = mock.stats()
    served = (
        stats["prompt_tokens"] + stats.get("batch_prompt_tokens", 0),
        stats["completion_tokens"] + stats.get("batch_completion_tokens", 0),
    )
    live_calls = len(mock.requests())  # (the chat completions sent live)
    batch_requests, batches = int(stats.get("batch_requests", 0)), int(stats.get("batches", 0))
    spent = Spent.of(records, served)
    return ModeResult(mode, len(records), live_calls, batch_requests, batches, spent)


def print_results(results: list[ModeResult]) -> None:
    print(HEADER)
    for r in results:
        print(
            f"{r.mode:<6} {r.docs:>6} {r.live_calls:>10} {r.batch_requests:>9} {r.batches:>7} "
            f"{r.spent.prompt_tokens:>10} {r.spent.completion_tokens:>9} {r.spent.cost:>10.6f} "
            f"{1000 * r.spent.cost / max(r.docs, 1):>11.6f}"
        )
    by = {r.mode: r for r in results}
    if "live" in by and "batch" in by and by["live"].spent.cost > 0:
        ratio = by["batch"].spent.cost / by["live"].spent.cost
        print(f"batch / live cost for the same docs: {ratio:.3f}")
    for r in results:
        for line in r.spent.failures(r.mode, "docs"):
            print(line)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.docs, args.batch_size = 60, 25
    from distcrawl.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="bench-llm-batch-") as name:
        tmp = Path(name)
        server = RedisServer(tmp / "redis")
        server.start()
        try:
            with contextlib.ExitStack() as stack:
                mock = Mock(tmp, 0.05)
                stack.callback(mock.stop)
                mock.ready()
                print(
                    f"## batch vs live: {args.docs} docs, batches of {args.batch_size}, "
                    f"gpt-4o-mini's price",
                    flush=True,
                )
                results = [
                    run_mode(tmp, server.url, mock, m, args.docs, args.batch_size)
                    for m in ("live", "batch")
                ]
            print_results(results)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
