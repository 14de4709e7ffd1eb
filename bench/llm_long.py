"""Long pages: tokens and cost per page, `--llm-long-pages cut` against `map-reduce`.

    python -m bench.llm_long [--pages N] [--page-tokens T] [--quick]

A site of N long pages (distinct texts of about T tokens by the 4-characters estimate, fed
straight into the docs queue, so the crawler's cap on a doc's text does not apply) is
summarized twice by one ``distcrawl summarize --drain`` process against the mock LLM
(tests/mock_llm.py in its own process), on a real redis-server: with the default settings and
``--llm-long-pages cut``, then ``map-reduce``. Per page: the calls the mock answered, the map
calls (``chunks``), prompt and completion tokens (the records' sums, which the mock's own
totals must equal), the estimated cost at gpt-4o-mini's price (0.15 / 0.60 USD per million
tokens), how much of the page the model read, and the pages marked ``truncated``. The mock
answers with 20 words whatever it is asked, so completions are shorter than a model's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.llm import Mock, Spent, _feed, summarize_drain

_SENTENCE = re.compile(r"Page (\d+) paragraph (\d+) discusses topic \d+ with detail \d+\.")
PRICE = (0.15, 0.60)  # gpt-4o-mini, USD per million tokens (input, output)
HEADER3 = (
    f"{'long pages':<12} {'pages':>5} {'calls/page':>10} {'chunks/page':>11} "
    f"{'read':>6} {'prompt tok/page':>15} {'compl tok/page':>14} {'USD/page':>10} "
    f"{'truncated':>9}"
)


@dataclass
class LongResult:
    mode: str
    pages: int
    calls: int
    chunks: int
    truncated: int
    read: float  # the share of the pages' tokens the model was sent
    spent: Spent


def page_text(i: int, tokens: int) -> str:
    """About ``tokens`` tokens (4 characters each) of distinct sentences."""
    sentences: list[str] = []
    length = 0
    while length < tokens * 4:
        j = len(sentences)
        sentences.append(
            f"Page {i} paragraph {j} discusses topic {j % 13} with detail {j * 7 % 101}."
        )
        length += len(sentences[-1]) + 1
    return " ".join(sentences)


def run_mode(
    tmp: Path, redis_url: str, mock: Mock, mode: str, pages: int, page_tokens: int
) -> LongResult:
    from common.keys import CrawlKeys
    from common.serde import Doc

    keys = CrawlKeys(f"long-{mode}-{pages}")
    docs = [
        Doc(
            url=f"http://long.test/p/{i}",
            fp=f"{i:016x}",
            title=f"Page {i}",
            text=text,
            fetched_at=0,
        )
        for i, text in enumerate(page_text(i, page_tokens) for i in range(pages))
    ]
    asyncio.run(_feed(redis_url, keys, docs))
    mock.reset()
    records = summarize_drain(
        tmp, redis_url, keys, mock, pages, label=mode, price=PRICE,
        args=["--llm-long-pages", mode],
    )  # fmt: skip
    stats = mock.stats()
    calls = int(stats["by_status"].get("200", 0))
    chunks = sum(r["chunks"] for r in records)
    truncated = sum(1 for r in records if r["truncated"])
    spent = Spent.of(records, (stats["prompt_tokens"], stats["completion_tokens"]))
    read = _read(mock, pages, page_tokens)
    return LongResult(mode, len(records), calls, chunks, truncated, read, spent)


def _read(mock: Mock, pages: int, page_tokens: int) -> float:
    """The share of the pages' sentences that reached the model in some call (from the mock's
    request log)."""
    seen: set[tuple[str, str]] = set()
    for body in mock.requests():
        seen.update(_SENTENCE.findall(str(body["messages"][-1]["content"])))
    total = sum(len(_SENTENCE.findall(page_text(i, page_tokens))) for i in range(pages))
    return len(seen) / total


def print_long(results: list[LongResult]) -> None:
    print(HEADER3)
    for r in results:
        n = max(r.pages, 1)
        print(
            f"{r.mode:<12} {r.pages:>5} {r.calls / n:>10.2f} {r.chunks / n:>11.2f} "
            f"{100 * r.read:>5.0f}% {r.spent.prompt_tokens / n:>15.0f} "
            f"{r.spent.completion_tokens / n:>14.0f} {r.spent.cost / n:>10.6f} {r.truncated:>9}"
        )
    for r in results:
        for line in r.spent.failures(r.mode, "pages"):
            print(line)


def run_long(tmp: Path, redis_url: str, latency: float, pages: int, page_tokens: int) -> None:
    print(
        f"\n## 3. long pages: {pages} pages of about {page_tokens} tokens, default settings "
        f"(input budget 3000, --llm-max-doc-tokens 15000), mock latency {latency:g} s",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        mock = Mock(tmp, latency)
        stack.callback(mock.stop)
        mock.ready()
        mock.reset(record_requests=100_000)
        results = [
            run_mode(tmp, redis_url, mock, m, pages, page_tokens) for m in ("cut", "map-reduce")
        ]
    print_long(results)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--pages", type=int, default=40)
    p.add_argument("--page-tokens", type=int, default=10_000)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.pages = 4
    from distcrawl.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="bench-llm-long-") as name:
        tmp = Path(name)
        server = RedisServer(tmp / "redis")
        server.start()
        try:
            run_long(tmp, server.url, args.latency, args.pages, args.page_tokens)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
