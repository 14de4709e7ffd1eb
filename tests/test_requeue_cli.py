"""`distcrawl requeue` end to end: real processes (the CLI, its stores, the test site, the mock
LLM). A host of the site is down (503) while a crawl runs, its URLs are dead-lettered; once it is
back, `requeue` and a second run fetch them and every page ends done. The same for docs while the
LLM answers 503. And the command's error lines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from common.docsqueue import DocsQueue
from common.keys import CrawlKeys
from common.private_server import private_server
from common.settings import EmbeddedSettings
from common.spec import CrawlSpec
from common.store import open_store
from crawler.frontier import Frontier
from distcrawl.redis_server import RedisServer
from tests.processes import (
    MockProcess,
    SiteProcess,
    assert_no_traceback,
    cli,
    log_events,
    read_pages,
)

KEY = "sk-requeue-0123456789"
PAGES = 8  # per host
FLAGS = [
    "--rate",
    "200",
    "--burst",
    "50",
    "--per-domain-inflight",
    "16",
    "--allow-private",
    "--no-progress",
]


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.to_thread(cli, *args, env=env)
    assert_no_traceback(proc.stdout, proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_after_a_site_outage_requeue_and_run_fetch_the_dead_urls(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    outage = tmp_path / "outage"
    outage.write_text("127.0.0.2\n")
    site = site_factory(
        "--addresses", "127.0.0.1,127.0.0.2", "--pages", str(PAGES), "--outage-file", str(outage)
    )
    out = tmp_path / "out"
    seeds = [f"http://{h}/" for h in site.hosts]
    code, _, err = await _run("run", *seeds, "--out", str(out), "--max-attempts", "2", *FLAGS)
    assert code == 0, err
    failed = {r["url"]: r for r in read_pages(out) if r["outcome"] == "failed"}
    assert failed, "the outage dead-lettered nothing"
    assert {urlsplit(u).hostname for u in failed} == {"127.0.0.2"}
    assert {(r["reason"], r["attempts"]) for r in failed.values()} == {("http_503", 2)}
    hits = site.hits()
    assert all(hits[u] == 2 for u in failed), {u: hits[u] for u in failed}

    outage.unlink()  # the host is back
    code, out_text, err = await _run(
        "requeue", "--out", str(out), "--reason", "http_503", "--log-format", "json"
    )
    assert code == 0, err
    n = len(failed)
    assert out_text.strip() == f"requeued {n} URLs (reason http_503: {n})"
    [event] = log_events(err, "dead_letters_requeued")
    assert (event["queue"], event["requeued"], event["reasons"]) == ("urls", n, {"http_503": n})

    code, _, err = await _run("run", "--out", str(out), *FLAGS)
    assert code == 0, err
    records = read_pages(out)
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls)), "a URL appears twice in pages.jsonl"
    expected = {f"http://{h}/" for h in site.hosts}
    expected |= {f"http://{h}/p/{i}.html" for h in site.hosts for i in range(PAGES)}
    assert set(urls) == expected  # the dead URLs and the pages only they linked to
    assert {r["outcome"] for r in records} == {"done"}
    hits = site.hits()
    assert all(hits[u] == 3 for u in failed), {u: hits[u] for u in failed}

    async with private_server(out / ".store", EmbeddedSettings()) as url:
        redis = await open_store(url)
        try:
            stats = await Frontier(redis, CrawlKeys("default")).stats()
        finally:
            await redis.aclose()
    assert stats.balanced
    total = len(expected)
    assert (stats.admitted, stats.done, stats.failed, stats.pending) == (total, total, 0, 0)
    assert (stats.dead_letters, stats.count("requeued")) == (0, n)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_after_an_llm_outage_requeue_docs_and_summarize_again(
    site_factory: Callable[..., SiteProcess],
    mock_factory: type[MockProcess],
    redis_server: RedisServer,
    server_store: Redis,
    crawl_keys: CrawlKeys,
    tmp_path: Path,
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", str(PAGES))
    mock = mock_factory("--api-key", KEY, "--error-rate", "1.0")  # every call: 503
    llm = {**mock.worker_env(KEY), "DISTCRAWL_LLM__MAX_FAILED_CALLS": "2"}
    store = ["--redis", redis_server.url, "--crawl", crawl_keys.crawl]
    code, _, err = await _run("produce", *store, f"http://{site.hosts[0]}/", *FLAGS[:6])
    assert code == 0, err
    code, _, err = await _run("crawl", *store, "--drain", "--allow-private")
    assert code == 0, err
    code, _, err = await _run("summarize", *store, "--drain", env=llm)
    assert code == 0, err
    queue = DocsQueue(server_store, crawl_keys)
    pages = PAGES + 1
    stats = await queue.stats()
    assert (stats.queued, stats.failed, stats.dead, stats.pending) == (pages, pages, pages, 0)
    assert stats.counts["docs_failed:http_503"] == pages
    calls = mock.stats()["requests"]
    assert calls == 2 * pages

    mock.configure(error_rate_5xx=0.0)  # the LLM is back
    code, out_text, err = await _run("requeue", *store, "--docs")
    assert code == 0, err
    assert out_text.strip() == f"requeued {pages} docs (reason http_503: {pages})"
    code, _, err = await _run("summarize", *store, "--drain", env=llm)
    assert code == 0, err
    stats = await queue.stats()
    assert stats.balanced
    assert (stats.queued, stats.summarized, stats.failed, stats.pending, stats.dead) == (
        pages,
        pages,
        0,
        0,
        0,
    )
    assert stats.counts["docs_requeued"] == pages
    assert mock.stats()["requests"] == calls + pages

    code, _, err = await _run("export", *store, "--out", str(tmp_path / "export"))
    assert code == 0, err
    lines = (tmp_path / "export" / "summaries.jsonl").read_text().splitlines()
    summaries = [json.loads(line) for line in lines]
    assert len(summaries) == pages
    assert {(s["outcome"], s["attempts"]) for s in summaries} == {("summarized", 1)}
    code, text, err = await _run("status", *store)
    assert code == 0, err
    [line] = [x for x in text.splitlines() if x.strip().startswith(f"docs {pages} =")]
    assert f"= summarized {pages} + failed 0 + pending 0   (holds)" in line
    assert line.endswith(f", requeued {pages}")


async def test_requeue_error_lines(
    redis_server: RedisServer, server_store: Redis, crawl_keys: CrawlKeys, tmp_path: Path
) -> None:
    """One `distcrawl: error:` line and exit 2 for each mistake; an unknown crawl gets the
    very line `status` gives."""
    await Frontier(server_store, crawl_keys).init(CrawlSpec())
    server = ["--redis", redis_server.url]
    missing = [*server, "--crawl", "no-such-crawl"]
    _, _, status_err = await _run("status", *missing)
    cases: list[tuple[list[str], str]] = [
        (missing, status_err.strip()),
        ([], "needs --redis URL"),
        (["--out", str(tmp_path / "nothing")], "holds no crawl"),
        (["--redis", redis_server.url, "--out", str(tmp_path)], "not both"),
        (
            ["--redis", redis_server.url, "--crawl", crawl_keys.crawl, "--domain", "http://a/"],
            "host",
        ),
    ]
    for args, expected in cases:
        code, out_text, err = await _run("requeue", *args)
        assert code == 2, (args, err)
        assert out_text == ""
        [line] = err.strip().splitlines()
        assert line.startswith("distcrawl: error: "), (args, line)
        assert expected in line, (args, line)
    assert not (tmp_path / "nothing").exists()
    code, out_text, err = await _run(
        "requeue", "--redis", redis_server.url, "--crawl", crawl_keys.crawl, "--domain", "A.test"
    )
    assert (code, out_text.strip()) == (0, "requeued 0 URLs"), err
