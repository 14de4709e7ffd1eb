"""The baseline: a minimal raw aiohttp + selectolax crawl loop, no Redis, no politeness.

    python -m bench.rawloop --concurrency 64 SEED...

Prints one JSON line: pages, first/last fetch times. It is what a hand-written crawler with an
in-memory set and an asyncio queue does; distcrawl is measured against it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urljoin, urlsplit

import aiohttp
from selectolax.lexbor import LexborHTMLParser


async def crawl(seeds: list[str], concurrency: int, limit: int) -> dict[str, float]:
    allowed = {urlsplit(s).netloc for s in seeds}
    seen: set[str] = set(seeds)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for s in seeds:
        queue.put_nowait(s)
    pages = 0
    first = last = 0.0
    connector = aiohttp.TCPConnector(
        limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300
    )
    timeout = aiohttp.ClientTimeout(total=60, sock_read=20)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def slot() -> None:
            nonlocal pages, first, last
            while True:
                url = await queue.get()
                try:
                    if first == 0.0:
                        first = time.time()
                    async with session.get(url) as resp:
                        body = await resp.read()
                    tree = LexborHTMLParser(body.decode("utf-8", "replace"))
                    _ = tree.css_first("title")
                    for node in tree.css("a[href]"):
                        href = node.attributes.get("href")
                        if not href:
                            continue
                        absolute = urljoin(url, href).split("#", 1)[0]
                        if (
                            absolute not in seen
                            and len(seen) < limit
                            and urlsplit(absolute).netloc in allowed
                        ):
                            seen.add(absolute)
                            queue.put_nowait(absolute)
                    pages += 1
                    last = time.time()
                except (aiohttp.ClientError, TimeoutError):
                    pass
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(slot()) for _ in range(concurrency)]
        await queue.join()
        for w in workers:
            w.cancel()
    return {"pages": pages, "first": first, "last": last}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("seeds", nargs="+")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--limit", type=int, default=10**9)
    args = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(crawl(args.seeds, args.concurrency, args.limit))
    except ImportError:
        result = asyncio.run(crawl(args.seeds, args.concurrency, args.limit))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
