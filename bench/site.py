"""A fast static site for benchmarks: pre-rendered ~40 KB pages with 55 links each, in memory.

    python -m bench.site --addresses 127.0.0.11,127.0.0.12 --pages 3000

Prints ``ready <port>``. Page ``i`` of a host links to page ``i+1`` (so everything is reachable
from ``/p/0.html``) and to 54 random pages across all hosts. The markup looks like what sites
serve: text wrapped and indented in the source, a few non-ASCII characters, and links to the
same host in the usual relative forms (``j.html``, ``./j.html``, ``../p/j.html``, ``/p/j.html``)
next to absolute links to the other hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import textwrap

from aiohttp import web

from distcrawl.demosite import serve_until_stopped

_TEXT = (
    "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega crawler frontier "
    "redis queue token bucket lease worker parser anchor canonical harbor river valley forest "
    "café naïve résumé — “quoted” déjà"
)
WORDS = _TEXT.split()
LINKS = 55
PAGE_BYTES = 40_000


_POOL_RNG = random.Random(42)
PARAGRAPHS = [
    "\n      <p>\n"
    + textwrap.fill(
        " ".join(_POOL_RNG.choice(WORDS) for _ in range(60)) + ".",
        width=90,
        initial_indent="        ",
        subsequent_indent="        ",
    )
    + "\n      </p>"
    for _ in range(400)
]
# How a link to page j of the same host is written on a page under /p/ (all resolve to /p/j).
_LOCAL_FORMS = ("{j}.html", "./{j}.html", "../p/{j}.html", "/p/{j}.html")


def render(host: str, hosts: list[str], i: int, pages: int) -> bytes:
    rng = random.Random(f"{host}:{i}")
    links = [f"{(i + 1) % pages}.html"]
    for n in range(LINKS - 1):
        other = rng.choice(hosts)
        j = rng.randrange(pages)
        form = _LOCAL_FORMS[n % len(_LOCAL_FORMS)]
        links.append(form.format(j=j) if other == host else f"http://{other}/p/{j}.html")
    anchors = "".join(f'\n        <li><a href="{u}">link {n}</a></li>' for n, u in enumerate(links))
    head = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Bench {i}</title>"
        f'<meta name="description" content="bench page {i}"></head><body>'
        f"\n    <nav><a href=/>home</a></nav>\n    <main>\n      <h1>Page {i}</h1>"
    )
    tail = (
        f"\n      <ul>{anchors}\n      </ul>\n    </main>"
        "\n    <footer>bench</footer>\n  </body>\n</html>\n"
    )
    paras: list[str] = []
    size = len(head) + len(tail)
    while size < PAGE_BYTES:
        para = rng.choice(PARAGRAPHS)
        paras.append(para)
        size += len(para)
    return (head + "".join(paras) + tail).encode()  # utf-8: ~40 KB


async def serve(addresses: list[str], pages: int) -> None:
    app = web.Application()
    cache: dict[tuple[str, int], bytes] = {}
    hosts: list[str] = []

    async def page(request: web.Request) -> web.Response:
        try:
            i = int(request.match_info["n"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= i < pages:
            raise web.HTTPNotFound()
        key = (request.host, i)
        body = cache.get(key)
        if body is None:
            body = cache[key] = render(request.host, hosts, i, pages)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def robots(_: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nAllow: /\n")

    async def root(_: web.Request) -> web.Response:
        return web.Response(
            text='<title>bench</title><a href="/p/0.html">start</a>', content_type="text/html"
        )

    app.router.add_get("/", root)
    app.router.add_get("/p/{n}.html", page)
    app.router.add_get("/robots.txt", robots)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = 0
    for addr in addresses:
        site = web.TCPSite(runner, addr, port, backlog=1024)
        await site.start()
        if port == 0:
            server = site._server
            assert server is not None
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    hosts += [f"{a}:{port}" for a in addresses]
    for h in hosts:  # pre-render so that the server does no work but sending during the bench
        for i in range(pages):
            cache[(h, i)] = render(h, hosts, i, pages)
    await serve_until_stopped(runner, port)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--addresses", default="127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14")
    p.add_argument("--pages", type=int, default=2500, help="pages per host")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.addresses.split(","), args.pages))
    except ImportError:
        asyncio.run(serve(args.addresses.split(","), args.pages))


if __name__ == "__main__":
    main()
