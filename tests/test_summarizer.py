"""Summarizer workers against the mock OpenAI-compatible server, as separate processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from distcrawl.sample_docs import make_docs
from tests.docscrawl import DocsCrawl
from tests.processes import MockProcess, cli, error_line

API_KEY = "sk-test-0123456789abcdef"


def _env(mock: MockProcess, **extra: str) -> dict[str, str]:
    return {**mock.worker_env(API_KEY), **extra}


@pytest.mark.slow
async def test_thousand_docs_four_processes_with_random_503s(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess]
) -> None:
    mock = mock_factory(
        "--api-key", API_KEY, "--latency", "0.2", "--error-rate", "0.05", "--seed", "7"
    )
    docs = make_docs(1000)
    await docs_crawl.feed(docs)
    args = ("--drain", "--concurrency", "64")
    await docs_crawl.drain_all([docs_crawl.spawn(_env(mock), *args) for _ in range(4)])
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (1000, 0, 0)
    assert stats.balanced
    summaries = await docs_crawl.records()
    assert set(summaries) == {d.fp for d in docs}
    assert all(s["summary"].startswith("Summary: ") for s in summaries.values())
    served = mock.stats()
    assert served["by_status"].get("503", 0) > 10  # the faults did happen...
    assert served["by_status"]["200"] == 1000  # ...and every doc was summarized exactly once
    ptok = sum(int(s["prompt_tokens"]) for s in summaries.values())
    assert ptok == served["prompt_tokens"]  # every token accounted for
    assert stats.per_model("prompt_tokens") == {"mock-model": ptok}


@pytest.mark.slow
async def test_sigkilled_summarizer_docs_are_reaped_by_the_others(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess]
) -> None:
    mock = mock_factory("--api-key", API_KEY, "--latency", "0.5")
    await docs_crawl.feed(make_docs(200))
    env = _env(mock, DISTCRAWL_LLM__LEASE_S="3", DISTCRAWL_WORKER__REAP_INTERVAL_S="1")
    victim = docs_crawl.spawn(env, "--concurrency", "32")
    deadline = time.monotonic() + 30
    while (await docs_crawl.stats()).in_flight < 20:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.communicate, timeout=10)
    assert (await docs_crawl.stats()).in_flight > 0  # its leases are orphaned
    others = [docs_crawl.spawn(env, "--drain", "--concurrency", "32") for _ in range(2)]
    await docs_crawl.drain_all(others, timeout_s=120)
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (200, 0, 0)
    assert stats.counts.get("docs_reaped", 0) > 0
    assert len(await docs_crawl.records()) == 200


@pytest.mark.parametrize("mode", ["live", "batch"])
async def test_wrong_api_key_stops_with_one_line_and_keeps_docs(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess], mode: str
) -> None:
    """Live calls and batch uploads alike: one line, and every doc back in the queue."""
    mock = mock_factory("--api-key", API_KEY)
    await docs_crawl.feed(make_docs(50))
    env = _env(
        mock,
        OPENAI_API_KEY="sk-wrong-key-98765",
        DISTCRAWL_LLM__MODE=mode,
        DISTCRAWL_LLM__BATCH_GATHER_S="0",
    )
    proc = await docs_crawl.summarize(env, timeout_s=60)
    assert proc.returncode == 2
    assert "refused the credentials (HTTP 401)" in error_line(proc.stderr)
    assert "sk-wrong-key-98765" not in proc.stderr
    stats = await docs_crawl.stats()
    assert (stats.waiting, stats.in_flight, stats.summarized, stats.failed) == (50, 0, 0, 0)
    assert await docs_crawl.batch_jobs() == []  # no batch job left behind


async def test_big_page_is_truncated_to_the_input_budget(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess]
) -> None:
    mock = mock_factory("--api-key", API_KEY)
    big = ("word " * 50_000)[:200_000]
    await docs_crawl.feed(make_docs(1, text=big))
    args = ("--llm-max-input-tokens", "1000", "--llm-long-pages", "cut")
    await docs_crawl.drain(_env(mock), *args, timeout_s=60)
    [request] = mock.requests()
    prompt = request["messages"][-1]["content"]
    assert 3000 < len(prompt) <= 4000 + 8  # 1000 tokens at the 4 chars/token estimate
    assert prompt.rstrip().endswith("word")  # cut at a word boundary, beginning kept
    [summary] = (await docs_crawl.records()).values()
    assert summary["prompt_tokens"] <= 1001
    assert (summary["chunks"], summary["truncated"]) == (1, True)


async def test_same_text_under_two_urls_costs_one_call(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess]
) -> None:
    mock = mock_factory("--api-key", API_KEY, "--latency", "0.3")
    docs = make_docs(6, text="The same article text, syndicated on several sites. " * 20)
    await docs_crawl.feed(docs)
    await docs_crawl.drain(_env(mock), timeout_s=60)
    assert mock.stats()["by_status"] == {"200": 1}
    summaries = await docs_crawl.records()
    assert len(summaries) == 6
    assert len({s["summary"] for s in summaries.values()}) == 1
    assert sorted(bool(s["cached"]) for s in summaries.values()) == [False] + [True] * 5
    assert sum(float(s["cost_usd"]) for s in summaries.values()) == 0.0  # unknown price
    shown = await asyncio.to_thread(cli, "status", *docs_crawl.store, "--json")
    status = json.loads(shown.stdout)
    assert status["docs"] == {
        **status["docs"],
        "queued": 6,
        "summarized": 6,
        "failed": 0,
        "pending": 0,
        "balanced": True,
        "cache_hits": 5,
    }
    assert status["llm"]["mock-model"]["prompt_tokens"] == mock.stats()["prompt_tokens"]


async def test_a_blocking_user_summarizer_does_not_stall_the_loop(
    docs_crawl: DocsCrawl, tmp_path: Path
) -> None:
    """A sync callable that blocks for seconds runs in a thread: others finish meanwhile."""
    plugin = tmp_path / "slowsum.py"
    plugin.write_text(
        "import time\n"
        "def summarize(text, *, title, url):\n"
        "    if url.endswith('/d/0'):\n"
        "        time.sleep(4)\n"
        "    return 'custom: ' + title\n"
    )
    await docs_crawl.feed(make_docs(20))
    env = {"PYTHONPATH": str(tmp_path)}
    await docs_crawl.drain(env, "--summarizer", "slowsum:summarize", timeout_s=60)
    summaries = list((await docs_crawl.records()).values())
    assert {s["summarizer"] for s in summaries} == {"slowsum:summarize"}
    slow = next(s for s in summaries if str(s["url"]).endswith("/d/0"))
    others = [s for s in summaries if s is not slow]
    assert len(others) == 19
    # all the others were written while the slow one was still blocked in its thread
    assert max(float(s["created_at"]) for s in others) < float(slow["created_at"]) - 2


@pytest.mark.slow
async def test_shared_rate_limit_across_four_processes(
    docs_crawl: DocsCrawl, mock_factory: type[MockProcess]
) -> None:
    """A provider allowing 1,800 requests a minute, counted in 10-second windows (300 per
    window), and 4 processes x 64 slots told so: the provider sees that limit, not 4x it
    (unshared, each process would send 30/s; the 0.2 s mock takes up to 1,280/s). 600 docs:
    two full windows at the limit."""
    rpm, window_s, n = 1800, 10, 600
    per_window = rpm * window_s // 60
    mock = mock_factory(
        "--api-key",
        API_KEY,
        "--latency",
        "0.2",
        "--rpm",
        str(per_window),
        "--window",
        str(window_s),
    )
    await docs_crawl.feed(make_docs(n))
    limit = ("--llm-rpm", str(rpm), "--llm-limit-window", str(window_s))
    args = ("--drain", "--concurrency", "64", *limit)
    await docs_crawl.drain_all([docs_crawl.spawn(_env(mock), *args) for _ in range(4)])
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (n, 0, 0)
    served = mock.stats()
    stamps = sorted(served["accepted_timestamps"])
    assert len(stamps) == n
    busiest = max(sum(1 for t in stamps[i:] if t < s + window_s) for i, s in enumerate(stamps))
    assert busiest <= per_window + per_window // 60  # the limit plus one burst (5)
    # Paced, not bunched: a second sees its share (29.5) plus the burst, give or take the four
    # processes' delivery jitter. (Twice the limit, as unshared buckets would send, shows ~70
    # in a second and a goodput far over the limit, though the provider's 429s stay < 2%.)
    second = max(sum(1 for t in stamps[i:] if t < s + 1.0) for i, s in enumerate(stamps))
    assert second <= 45, second
    rejected = served["by_status"].get("429", 0)
    assert rejected / served["requests"] < 0.02, served["by_status"]
    goodput_per_min = (n - 1) / (stamps[-1] - stamps[0]) * 60
    assert 0.9 * rpm <= goodput_per_min <= 1.05 * rpm, goodput_per_min
