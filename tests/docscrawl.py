"""One crawl's docs stage on a real Redis, as the summarizer tests drive it: docs queued as the
crawler queues them, `distcrawl summarize` processes run over them, the records read back."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from common.docsqueue import DocsQueue, DocsStats
from common.keys import CrawlKeys
from common.serde import Doc
from distcrawl.sample_docs import feed_docs
from summarizer.batch import BatchRecord, decode_record
from tests.processes import assert_no_traceback, cli, spawn_cli

__all__ = ["DocsCrawl"]


@dataclass(frozen=True)
class DocsCrawl:
    """The docs of crawl ``keys`` on the Redis at ``url`` (``redis`` is a client of it)."""

    redis: Redis
    keys: CrawlKeys
    url: str

    @property
    def store(self) -> list[str]:
        """The CLI's arguments naming this crawl: ``--redis URL --crawl NAME``."""
        return ["--redis", self.url, "--crawl", self.keys.crawl]

    @property
    def queue(self) -> DocsQueue:
        return DocsQueue(self.redis, self.keys)

    async def stats(self) -> DocsStats:
        return await self.queue.stats()

    async def feed(self, docs: list[Doc]) -> None:
        await feed_docs(self.redis, self.keys, docs)

    async def records(self) -> dict[str, dict[str, Any]]:
        """The summary (or extraction) records by fingerprint."""
        raw = await self.redis.hgetall(self.keys.summaries)
        return {str(fp): json.loads(record) for fp, record in raw.items()}

    async def batch_jobs(self) -> list[BatchRecord]:
        """The crawl's Batch API jobs (``--llm-mode batch``) that are not finished."""
        raw = await self.redis.hgetall(self.keys.llm_batches)
        return [decode_record(record) for record in raw.values()]

    async def assert_accounted(self, served: Mapping[str, Any], model: str = "mock-model") -> None:
        """Every token the provider ``served`` (its ``prompt_tokens`` and ``completion_tokens``)
        is on the records, and on the crawl's counters for ``model``."""
        records = (await self.records()).values()
        stats = await self.stats()
        for kind in ("prompt_tokens", "completion_tokens"):
            assert sum(int(r[kind]) for r in records) == served[kind], kind
            assert stats.per_model(kind) == {model: served[kind]}, kind

    async def summarize(
        self, env: Mapping[str, str], *args: str, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """One ``distcrawl summarize --drain ARGS`` process, run to its end."""
        return await asyncio.to_thread(
            cli, "summarize", *self.store, "--drain", *args, env=dict(env), timeout=timeout_s
        )

    async def drain(self, env: Mapping[str, str], *args: str, timeout_s: float = 120) -> str:
        """`summarize`, which must exit 0 without a traceback; its stderr."""
        proc = await self.summarize(env, *args, timeout_s=timeout_s)
        assert proc.returncode == 0, proc.stderr
        assert_no_traceback(proc.stderr)
        return proc.stderr

    def spawn(self, env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
        """A ``distcrawl summarize ARGS`` process, left running (add ``--drain`` to end it)."""
        return spawn_cli("summarize", *self.store, *args, env=dict(env))

    async def drain_all(self, workers: list[subprocess.Popen[str]], timeout_s: float = 240) -> None:
        """Wait for ``workers`` (spawned with ``--drain``): each exits 0 without a traceback."""
        for worker in workers:
            _, err = await asyncio.to_thread(worker.communicate, timeout=timeout_s)
            assert worker.returncode == 0, err
            assert_no_traceback(err)
