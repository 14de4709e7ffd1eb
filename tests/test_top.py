"""`distcrawl top`: Rates, the pure render_top, and run_top against a real redis-server."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from rich.console import Console, RenderableType
from rich.live import Live

import distcrawl.top as top
from common.docsqueue import DocsQueue
from common.errors import ConfigError, StoreUnavailable
from common.heartbeat import Heartbeats, is_stale
from common.keys import CrawlKeys
from common.settings import Settings, build_settings
from common.spec import CrawlSpec
from crawler.frontier import Frontier, Outcome
from crawler.proxypool import ProxyHealth
from crawler.status import CrawlStatus, crawl_status, render_status
from distcrawl.redis_server import RedisServer
from distcrawl.sample_docs import feed_docs, make_docs
from distcrawl.top import NO_RATE, Rates, render_top, run_top
from tests.helpers import make_frontier

# -- units: Rates and render_top -----------------------------------------------------------------


def _status_doc(**over: Any) -> dict[str, Any]:
    """A `status --json` document with distinctive numbers (each appears once in a frame)."""
    status: dict[str, Any] = {
        "crawl": "news",
        "admitted": 1234,
        "done": 1000,
        "failed": 21,
        "skipped": 13,
        "pending": 200,
        "balanced": True,
        "queued": 151,
        "delayed": 9,
        "in_flight": 40,
        "ready_domains": 7,
        "domains": 12,
        "dead_letters": 5,
        "retries": 55,
        "reaped": 2,
        "docs_queued": 1020,
        "failed_reasons": {"http_404": 17, "timeout": 4},
        "skipped_reasons": {"robots": 13},
        "rejected": {},
        "top_domains": [],
        "docs": {
            "queued": 1020,
            "summarized": 901,
            "failed": 3,
            "pending": 116,
            "waiting": 82,
            "in_flight": 34,
            "balanced": True,
            "cache_hits": 33,
            "reaped": 0,
            "failed_reasons": {},
        },
        "llm": {
            "gpt-4o-mini": {"prompt_tokens": 123456, "completion_tokens": 7890, "cost_usd": 0.0234}
        },
        "workers": [
            {
                "id": "crawl:h1:11:aaaaaa",
                "age_s": 1.2,
                "alive": True,
                "role": "crawl",
                "host": "h1",
                "pid": 11,
                "started": 100.0,
                "last": 400.0,
                "in_flight": 6,
                "done": 517,
                "failed": 3,
                "skipped": 1,
                "retried": 4,
                "stale": 0,
            },
            {
                "id": "summarize:h2:12:bbbbbb",
                "age_s": 42.0,
                "alive": False,
                "role": "summarize",
                "host": "h2",
                "pid": 12,
                "started": 100.0,
                "last": 160.0,
                "in_flight": 0,
                "summarized": 901,
                "failed": 3,
                "cached": 33,
                "stale": 0,
            },
        ],
    }
    status.update(over)
    return status


def _status(**over: Any) -> CrawlStatus:
    return CrawlStatus.from_json(_status_doc(**over))


def _text(renderable: RenderableType, width: int = 120) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _line_with(text: str, needle: str) -> str:
    [line] = [line for line in text.splitlines() if needle in line]
    return line


def test_rates_from_two_samples() -> None:
    before = _status()
    after = _status(
        done=1010,
        failed=23,
        skipped=16,  # +15 pages
        docs={**_status_doc()["docs"], "summarized": 905, "failed": 4},  # +5 docs
        llm={
            "gpt-4o-mini": {"prompt_tokens": 124456, "completion_tokens": 7990, "cost_usd": 0.03},
            "other": {"prompt_tokens": 50, "completion_tokens": 50, "cost_usd": 0.0},
        },
    )  # +1,200 tokens
    rates = Rates.from_samples(before, after, 2.5)
    assert rates == Rates(pages_per_s=6.0, docs_per_s=2.0, tokens_per_s=480.0, elapsed_s=2.5)


def test_rates_never_go_negative_and_need_elapsed_time() -> None:
    before = _status()
    restarted = _status(done=0, failed=0, skipped=0, llm={})
    assert Rates.from_samples(before, restarted, 1.0).pages_per_s == 0.0
    assert Rates.from_samples(before, restarted, 1.0).tokens_per_s == 0.0
    with pytest.raises(ValueError, match="elapsed_s"):
        Rates.from_samples(before, before, 0.0)


def _assert_cells(text: str, cells: dict[str, int], in_flight: tuple[int, int]) -> None:
    """Each ``label value`` cell of the tables, and the frontier's and the docs' in flight."""
    for label, value in cells.items():
        assert re.search(rf"│ {label}\s+{value:,} ", text), (label, value)
    frontier, docs = in_flight
    assert re.search(rf"│ in flight\s+{frontier:,} ", text), frontier
    assert re.search(rf"│ in flight\s+{docs:,} ", text), docs


def test_first_frame_shows_every_number_and_no_rates() -> None:
    text = _text(render_top(_status(), None))
    assert "admitted 1,234 = done 1,000 + failed 21 + skipped 13 + pending 200" in text
    assert "holds" in text
    assert "DOES NOT HOLD" not in text
    assert f"pages/s {NO_RATE}" in text
    assert re.search(rf"docs/s\s+{NO_RATE}", text)
    assert f"tokens/s {NO_RATE}" in text
    cells = {"queued": 151, "delayed": 9, "ready domains": 7, "domains": 12, "dead letters": 5}
    cells |= {"waiting": 82, "summarized": 901, "cache hits": 33}
    _assert_cells(text, cells, in_flight=(40, 34))
    assert "retries 55" in text
    assert "reaped 2" in text
    assert "http_404 17, timeout 4" in text
    assert "robots 13" in text
    assert re.search(r"gpt-4o-mini\s+123,456\s+7,890\s+0\.0234", text)


def test_later_frames_show_rates_and_a_broken_equation() -> None:
    rates = Rates(pages_per_s=6.0, docs_per_s=2.25, tokens_per_s=480.0, elapsed_s=2.0)
    text = _text(render_top(_status(balanced=False), rates))
    assert NO_RATE not in text
    assert "pages/s 6.0" in text
    assert re.search(r"docs/s\s+2\.2", text)  # 2.25 rounds to one decimal
    assert "tokens/s 480.0" in text
    assert "DOES NOT HOLD" in text


def test_workers_table_flags_stale_beats_and_shows_counters() -> None:
    text = _text(render_top(_status(), None))
    assert "workers 2 (1 stale)" in text
    fresh = _line_with(text, "crawl:h1:11:aaaaaa")
    stale = _line_with(text, "summarize:h2:12:bbbbbb")
    assert "STALE" not in fresh
    assert re.search(r"1\.2s ago", fresh)
    assert re.search(r"42\.0s ago STALE", stale)
    assert re.search(r"\bh1\s+11\s+6\s+5m00s\b", fresh)  # host, pid, in flight, uptime
    assert "done=517" in fresh
    assert "summarized=901" in stale
    # the verdict is crawl_status's "alive" (common.heartbeat.is_stale), not top's own
    doc = _status_doc()
    doc["workers"][1]["alive"] = True
    relaxed = _text(render_top(CrawlStatus.from_json(doc), None))
    assert "STALE" not in relaxed
    assert "stale)" not in relaxed


def test_empty_crawl_renders() -> None:
    status = _status(
        admitted=0,
        done=0,
        failed=0,
        skipped=0,
        pending=0,
        workers=[],
        llm={},
        failed_reasons={},
        skipped_reasons={},
    )
    text = _text(render_top(status, None))
    assert "admitted 0 = done 0 + failed 0 + skipped 0 + pending 0" in text
    assert "no worker heartbeats" in text
    assert "no LLM usage yet" in text


async def test_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="interval"):
        await run_top(build_settings(), interval_s=0, once=False)


async def test_unreachable_redis_propagates() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = build_settings(redis=f"redis://127.0.0.1:{port}/0", crawl="x")
    with pytest.raises(StoreUnavailable):
        await run_top(settings, interval_s=1, once=True, console=Console(file=io.StringIO()))


# -- end to end on a real redis-server ---------------------------------------------------------


async def _seed(redis: Redis, keys: CrawlKeys) -> tuple[Frontier, str]:
    """5 admitted URLs on 2 domains: 1 done, 1 failed, 1 in flight, 2 queued; 3 docs waiting;
    LLM accounting for one model; a fresh crawl heartbeat and a stale summarizer one.
    Returns the frontier and the fingerprint of the URL in flight (leased to "w1")."""
    frontier, admitter = await make_frontier(
        redis, keys, CrawlSpec(rate=100, burst=10, per_domain_inflight=10)
    )
    await admitter.admit(
        [f"http://a.test/{i}" for i in range(3)] + [f"http://b.test/{i}" for i in range(2)], depth=0
    )
    a, b, c = (await frontier.claim("w1", 3)).leases
    await frontier.ack("w1", a.fp, Outcome.DONE)
    await frontier.ack("w1", b.fp, Outcome.FAILED, "http_404")
    await feed_docs(redis, keys, make_docs(3))
    await redis.hset(
        keys.counts,
        mapping={
            "llm_prompt_tokens:gpt-test": 4321,
            "llm_completion_tokens:gpt-test": 765,
            "llm_cost_micro_usd:gpt-test": 4200,
        },
    )
    beats, now = Heartbeats(redis, keys), time.time()
    await beats.beat(
        "crawl:testhost:4242:aaaaaa",
        json.dumps(
            {
                "role": "crawl",
                "host": "testhost",
                "pid": 4242,
                "started": now - 61,
                "last": now,
                "in_flight": 1,
                "done": 7,
                "failed": 2,
                "skipped": 0,
                "retried": 0,
                "stale": 0,
            }
        ),
    )
    await beats.beat(
        "summarize:otherhost:4343:bbbbbb",
        json.dumps(
            {
                "role": "summarize",
                "host": "otherhost",
                "pid": 4343,
                "started": now - 500,
                "last": now - 100,
                "in_flight": 0,
                "summarized": 9,
                "failed": 0,
                "cached": 0,
                "stale": 0,
            }
        ),
    )
    return frontier, c.fp


def _settings(server: RedisServer, keys: CrawlKeys) -> Settings:
    return build_settings(redis=server.url, crawl=keys.crawl)


def _console() -> Console:
    return Console(record=True, width=140, file=io.StringIO())


async def test_once_prints_one_frame_of_a_real_crawl(
    server_store: Redis, crawl_keys: CrawlKeys, redis_server: RedisServer
) -> None:
    frontier, _ = await _seed(server_store, crawl_keys)
    ready = (await frontier.stats()).ready_domains  # 1 or 2: which domain the claims drained
    console = _console()
    assert (
        await run_top(
            _settings(redis_server, crawl_keys), interval_s=0.1, once=True, console=console
        )
        == 0
    )
    text = console.export_text()
    assert f"crawl {crawl_keys.crawl}" in text
    assert "admitted 5 = done 1 + failed 1 + skipped 0 + pending 3   holds" in text
    assert f"pages/s {NO_RATE}" in text
    assert f"tokens/s {NO_RATE}" in text
    assert "http_404 1" in text
    cells = {"queued": 2, "ready domains": ready, "domains": 2, "dead letters": 0}
    _assert_cells(text, cells | {"waiting": 3, "summarized": 0}, in_flight=(1, 0))
    assert re.search(r"gpt-test\s+4,321\s+765\s+0\.0042", text)
    assert "workers 2 (1 stale)" in text
    fresh = _line_with(text, "crawl:testhost:4242:aaaaaa")
    stale = _line_with(text, "summarize:otherhost:4343:bbbbbb")
    assert "STALE" not in fresh
    assert "done=7" in fresh
    assert "1m01s" in fresh
    assert "STALE" in stale
    assert "summarized=9" in stale


async def _until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


Frames = list[tuple[CrawlStatus, Rates | None, float]]  # status, rates, when rendered


def _record_frames(monkeypatch: pytest.MonkeyPatch) -> Frames:
    frames: Frames = []
    real = top.render_top

    def recording(status: CrawlStatus, rates: Rates | None) -> RenderableType:
        frames.append((status, rates, time.monotonic()))
        return real(status, rates)

    monkeypatch.setattr(top, "render_top", recording)
    return frames


async def _start_live(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, first_frames: int
) -> tuple[asyncio.Task[int], Frames, Console]:
    """`top` refreshing every 0.1 s, once it has rendered ``first_frames`` frames: its task,
    the frames so far (and to come) and its console."""
    frames = _record_frames(monkeypatch)
    console = _console()
    task = asyncio.create_task(run_top(settings, interval_s=0.1, once=False, console=console))
    await _until(lambda: len(frames) >= first_frames or task.done())
    assert not task.done(), task
    return task, frames, console


async def test_live_refreshes_rates_and_stops_on_sigterm(
    server_store: Redis,
    crawl_keys: CrawlKeys,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frontier, in_flight = await _seed(server_store, crawl_keys)
    before = signal.getsignal(signal.SIGTERM)
    task, frames, console = await _start_live(_settings(redis_server, crawl_keys), monkeypatch, 1)
    # three pages settle between refreshes
    leases = (await frontier.claim("w2", 3)).leases
    assert len(leases) == 2  # the two queued URLs; the third is still leased to w1
    for lease in leases:
        await frontier.ack("w2", lease.fp, Outcome.SKIPPED, "robots")
    await frontier.ack("w1", in_flight, Outcome.DONE)
    seen = len(frames)
    await _until(lambda: len(frames) >= max(seen + 2, 4))  # ~3 refreshes, 1 after the acks
    # our handler is in place (else SIGTERM would end pytest itself): send the real signal
    assert signal.getsignal(signal.SIGTERM) is not before
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == 0
    assert signal.getsignal(signal.SIGTERM) == before  # handler removed again

    assert frames[0][1] is None
    rates = [r for _, r, _ in frames[1:]]
    assert len(rates) >= 3
    assert all(r is not None for r in rates)
    moved = sum(r.pages_per_s * r.elapsed_s for r in rates if r is not None)
    assert moved == pytest.approx(3.0)
    assert all(r is not None and r.elapsed_s > 0.05 for r in rates)
    # each rate spans the time since the previous refresh, not since the first one
    for (_, _, t0), (_, r, t1) in itertools.pairwise(frames[1:]):
        assert r is not None
        assert abs(r.elapsed_s - (t1 - t0)) < abs(r.elapsed_s - (t1 - frames[0][2]))
    last = frames[-1][0]
    assert (last.done, last.skipped, last.pending) == (2, 2, 0)
    # the final frame stays on screen, with a number where the first frame had "–"
    text = console.export_text()
    assert "admitted 5 = done 2 + failed 1 + skipped 2 + pending 0" in text
    assert re.search(r"pages/s \d+\.\d", text)


async def test_live_stops_cleanly_when_cancelled(
    server_store: Redis,
    crawl_keys: CrawlKeys,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _seed(server_store, crawl_keys)
    before = signal.getsignal(signal.SIGTERM)
    task, frames, console = await _start_live(_settings(redis_server, crawl_keys), monkeypatch, 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert signal.getsignal(signal.SIGTERM) == before
    with Live(console=console):  # raises LiveError if run_top left its display running
        pass
    assert frames[0][1] is None
    assert frames[2][1] is not None
    assert "crawl:testhost:4242:aaaaaa" in console.export_text()


async def test_status_and_top_call_the_same_workers_stale(
    server_store: Redis, crawl_keys: CrawlKeys
) -> None:
    """One definition (common.heartbeat.is_stale): three beat periods plus 5 s. Beats just
    either side of it, with a 1 s period and with the default (5 s), get the same verdict from
    `status` and `top`."""
    frontier = Frontier(server_store, crawl_keys)
    await frontier.init(CrawlSpec())
    beats = Heartbeats(server_store, crawl_keys)
    now = time.time()
    ages = {"fast-fresh": (7.0, 1.0), "fast-stale": (9.0, 1.0), "fresh": (19.0, None),
            "stale": (21.0, None)}  # fmt: skip
    for name, (age, every) in ages.items():
        beat: dict[str, Any] = {"role": "crawl", "last": now - age}
        if every is not None:
            beat["every"] = every
        await beats.beat(f"crawl:{name}", json.dumps(beat))
    status = await crawl_status(frontier, DocsQueue(server_store, crawl_keys), beats)
    verdicts = {w.id: w.alive for w in status.workers}
    assert verdicts == {
        "crawl:fast-fresh": True,
        "crawl:fast-stale": False,
        "crawl:fresh": True,
        "crawl:stale": False,
    }
    text = _text(render_top(status, None))
    for worker_id, alive in verdicts.items():
        assert ("STALE" in _line_with(text, worker_id)) is not alive, worker_id
    assert "workers 4 (2 stale)" in text
    assert is_stale(9.0, 1.0)
    assert not is_stale(7.0, 1.0)


def test_status_json_round_trips() -> None:
    """`status --json` keeps its flat keys (workers' counters beside their fixed fields), and
    reading it back gives the same typed status."""
    doc = _status_doc()
    status = CrawlStatus.from_json(doc)
    assert status.workers[0].counters == {
        "done": 517,
        "failed": 3,
        "skipped": 1,
        "retried": 4,
        "stale": 0,
    }
    assert status.workers[1].alive is False
    out = status.to_json()
    assert out["workers"][0]["done"] == 517
    assert "counters" not in out["workers"][0]
    assert CrawlStatus.from_json(json.loads(json.dumps(out))) == status
    assert status.settled == 1034
    assert status.docs.settled == 904
    assert status.tokens == 131346


async def test_status_shows_the_proxy_pools_shared_health(
    server_store: Redis, crawl_keys: CrawlKeys
) -> None:
    """The pool comes from the spec (passwords already ***), the health from the shared hash."""
    frontier = Frontier(server_store, crawl_keys)
    pool = ["http://bob:***@127.0.0.1:3128#office", "socks5://127.0.0.1:1080"]
    await frontier.init(CrawlSpec(proxies=pool))
    await ProxyHealth(frontier.crawl_scripts).fail("office")
    beats = Heartbeats(server_store, crawl_keys)
    status = await crawl_status(frontier, DocsQueue(server_store, crawl_keys), beats)
    office, second = status.proxies
    assert (office.name, office.url, office.failures, office.up) == ("office", pool[0], 1, False)
    assert office.backoff_s > 0
    assert (second.name, second.failures, second.up) == ("p1", 0, True)
    text = render_status(status)
    assert "proxies: office DOWN (1 failures, back in" in text
    assert "p1 up" in text
    assert CrawlStatus.from_json(json.loads(json.dumps(status.to_json()))) == status
    assert "office DOWN" in _text(render_top(status, None))
