"""The baseline: the crawl loop a performance-minded engineer would write by hand.

    python -m bench.rawloop --concurrency 100 --per-host 20 SEED...

aiohttp + uvloop + selectolax, an asyncio queue and a plain set: no Redis, no politeness, no
robots.txt. It follows distcrawl's link policy so that both crawl the same pages: the same
scope (the seeds' hosts and their subdomains) and the same canonical dedupe. The common href
forms (``page.html``, ``./page.html``, ``../dir/page.html``, ``/page.html`` and already-canonical
absolute URLs) are resolved with string operations; anything else (queries, escapes, odd
schemes, upper-case hosts...) goes through ``common.urls.canonicalize``, which a hand-written
crawler would get from a library. Each page yields its title, links and main text (boilerplate
tags stripped, capped), as distcrawl's parser does, minus the whitespace clean-up.

Prints one JSON line: pages, first/last fetch times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

import aiohttp
from selectolax.lexbor import LexborHTMLParser

from common.errors import InvalidUrl
from common.urls import canonicalize, host_matches, host_of

_BOILERPLATE = ["script", "style", "noscript", "nav", "header", "footer", "aside", "form"]
_SKIP = ("#", "javascript:", "mailto:", "tel:", "data:")
# a relative path or an absolute http(s) URL that is already canonical: nothing to escape,
# no query, no fragment, a lower-case host without a default port
_PLAIN_REL = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=@-]*\Z")
_PLAIN_ABS = re.compile(
    r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::[1-9][0-9]{0,4})?/[A-Za-z0-9/._~!$&'()*+,;=:@-]*\Z"
)


def resolve(href: str, base: str, origin: str, directory: str) -> str | None:
    """The canonical absolute URL of ``href`` on the page ``base``; None if not crawlable.

    ``origin`` is ``scheme://netloc`` of the page and ``directory`` its path up to the last "/".
    """
    hash_at = href.find("#")
    if hash_at >= 0:
        href = href[:hash_at]
    if href.startswith(("http://", "https://")):
        default_port = ":80/" if href[4] == ":" else ":443/"
        if _PLAIN_ABS.match(href) and "/." not in href and default_port not in href:
            return href
    elif href[:1] == "/":
        if href[1:2] != "/" and "/." not in href and _PLAIN_REL.match(href):
            return origin + href
    elif href and _PLAIN_REL.match(href):  # no ":" allowed, so no scheme
        while href.startswith(("./", "../")):
            if href[1] == "/":
                href = href[2:]
            else:
                href = href[3:]
                directory = directory[: directory.rfind("/", 0, -1) + 1] or "/"
        if "/." not in href and not href.startswith("."):
            return origin + directory + href
    try:
        return canonicalize(href, base)
    except InvalidUrl:
        return None


class CarefulLoop:
    """One process, one session, one queue, one set."""

    def __init__(self, seeds: list[str], limit: int, max_text: int) -> None:
        self.domains = tuple({host_of(canonicalize(s)) for s in seeds})
        self.in_scope: dict[str, bool] = {}  # netloc -> verdict
        self.seen: set[str] = {canonicalize(s) for s in seeds}
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        for s in self.seen:
            self.queue.put_nowait(s)
        self.limit = limit
        self.max_text = max_text
        self.pages = 0
        self.first = self.last = 0.0

    def links(self, url: str, tree: LexborHTMLParser) -> None:
        seen, in_scope = self.seen, self.in_scope
        path_at = url.index("/", url.index("://") + 3)
        origin, directory = url[:path_at], url[path_at : url.rindex("/") + 1]
        for node in tree.css("a[href]"):
            href = (node.attributes.get("href") or "").strip()
            if not href or href.startswith(_SKIP):
                continue
            absolute = resolve(href, url, origin, directory)
            if absolute is None or absolute in seen or len(seen) >= self.limit:
                continue
            netloc = absolute[absolute.index("://") + 3 :].split("/", 1)[0]
            ok = in_scope.get(netloc)
            if ok is None:
                ok = in_scope[netloc] = host_matches(host_of(absolute), self.domains)
            if ok:
                seen.add(absolute)
                self.queue.put_nowait(absolute)

    def parse(self, url: str, body: bytes) -> None:
        tree = LexborHTMLParser(body)  # bytes: lexbor decodes UTF-8 itself
        title = tree.css_first("title")
        _ = title.text() if title is not None else ""
        self.links(url, tree)
        tree.strip_tags(_BOILERPLATE)
        main = tree.body
        _ = main.text(separator=" ", strip=True)[: self.max_text] if main is not None else ""

    async def slot(self, session: aiohttp.ClientSession) -> None:
        while True:
            url = await self.queue.get()
            try:
                if self.first == 0.0:
                    self.first = time.time()
                async with session.get(url) as resp:
                    body = await resp.read()
                self.parse(url, body)
                self.pages += 1
                self.last = time.time()
            except (aiohttp.ClientError, TimeoutError):
                pass
            finally:
                self.queue.task_done()


async def crawl(
    seeds: list[str], concurrency: int, per_host: int, limit: int, max_text: int
) -> dict[str, float]:
    loop = CarefulLoop(seeds, limit, max_text)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=60, sock_read=20)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workers = [asyncio.create_task(loop.slot(session)) for _ in range(concurrency)]
        await loop.queue.join()
        for w in workers:
            w.cancel()
    return {"pages": loop.pages, "first": loop.first, "last": loop.last}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("seeds", nargs="+")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--per-host", type=int, default=20)
    p.add_argument("--limit", type=int, default=10**9)
    p.add_argument("--max-text", type=int, default=50_000)
    args = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(
            crawl(args.seeds, args.concurrency, args.per_host, args.limit, args.max_text)
        )
    except ImportError:
        result = asyncio.run(
            crawl(args.seeds, args.concurrency, args.per_host, args.limit, args.max_text)
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
