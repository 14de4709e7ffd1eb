"""Sample docs for tests and benchmarks, queued as the crawler's settle script queues them."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from common.keys import CrawlKeys
from common.serde import Doc, encode_doc
from common.spec import CrawlSpec
from crawler.frontier import Frontier

__all__ = ["feed_docs", "make_docs"]


def make_docs(n: int, *, text: str | None = None, host: str = "docs.test") -> list[Doc]:
    """``n`` docs with distinct texts (or the same ``text`` under distinct URLs)."""
    docs = []
    for i in range(n):
        url = f"http://{host}/d/{i}"
        body = (
            text
            if text is not None
            else (f"Document {i} explains topic {i % 17}. " * 8 + f"It ends with fact {i}.")
        )
        fp = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
        docs.append(Doc(url=url, fp=fp, title=f"Doc {i}", text=body, fetched_at=0.0))
    return docs


async def feed_docs(redis: Redis, keys: CrawlKeys, docs: list[Doc]) -> None:
    """Queue docs exactly as the crawler's settle script does (entry format and counter), in a
    one-shard crawl: one is created with the default spec if ``keys`` name none yet (`status`
    and the workers read a crawl from its spec)."""
    spec = await Frontier(redis, keys).init(CrawlSpec())
    if spec.shards != 1:
        raise ValueError(f"feed_docs queues into one shard; crawl {keys.crawl} has {spec.shards}")
    entries = [f"{d.fp}\t0\t{encode_doc(d)}" for d in docs]
    for start in range(0, len(entries), 500):
        await redis.rpush(keys.docs, *entries[start : start + 500])
    await redis.hincrby(keys.counts, "docs_queued", len(entries))
