"""A separate OS process that uses the frontier, for tests that need real processes.

python -m tests.frontier_proc rate URL CRAWL START_EPOCH SECONDS
    claim one URL at a time until START+SECONDS, printing each claim's time; ack at once
python -m tests.frontier_proc hold URL CRAWL N
    claim N URLs, print "claimed <n>", then hang until killed
"""

from __future__ import annotations

import asyncio
import sys
import time

from common.keys import CrawlKeys
from common.store import open_store
from crawler.frontier import Frontier, Outcome


async def rate(url: str, crawl: str, start: float, seconds: float) -> None:
    redis = await open_store(url)
    frontier = Frontier(redis, CrawlKeys(crawl))
    worker = f"rate-{time.monotonic_ns()}"
    await asyncio.sleep(max(0.0, start - time.time()))
    end = start + seconds
    while (now := time.time()) < end:
        claim = await frontier.claim(worker, 1)
        if claim.leases:
            print(f"{time.time():.6f}", flush=True)
            await frontier.ack(worker, claim.leases[0].fp, Outcome.DONE)
        else:
            await asyncio.sleep(min(claim.wait_s or 0.05, end - now))
    await redis.aclose()


async def hold(url: str, crawl: str, n: int) -> None:
    redis = await open_store(url)
    frontier = Frontier(redis, CrawlKeys(crawl))
    claim = await frontier.claim(f"hold-{time.monotonic_ns()}", n)
    print(f"claimed {len(claim.leases)}", flush=True)
    await asyncio.sleep(3600)


def main() -> None:
    mode, url, crawl, *rest = sys.argv[1:]
    if mode == "rate":
        asyncio.run(rate(url, crawl, float(rest[0]), float(rest[1])))
    else:
        asyncio.run(hold(url, crawl, int(rest[0])))


if __name__ == "__main__":
    main()
