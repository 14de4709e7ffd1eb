"""The local test site: generated pages on several 127.0.0.x hosts, plus deliberate trouble.

Run as a process so that crawlers under test (also processes) see a real server:

    python -m tests.site --addresses 127.0.0.1,127.0.0.2 --pages 100 --log FILE [--trouble]

It prints ``ready <port>`` when listening and appends one JSON line per request to FILE
(time, host, path, status, bytes sent) so tests measure at the server. ``--outage-file F``
simulates a site outage: while F exists, the addresses it lists (one a line; none: all of them)
answer every request but robots.txt with 503.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from common.lifecycle import Shutdown
from distcrawl.demosite import DemoSite, SiteServer
from tests.hostile import add_hostile_routes

MB = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TROUBLE_INDEX = """<!doctype html><html><head><title>Trouble</title></head><body>
<a href="/t/404">missing</a> <a href="/t/flaky">flaky</a> <a href="/t/429">rate limited</a>
<a href="/t/loop">redirect loop</a> <a href="/t/huge">huge</a> <a href="/t/doc.pdf">pdf</a>
<a href="/t/slow">slow</a> <a href="/t/latin1">latin1</a> <a href="/t/badutf8">bad utf8</a>
<a href="/t/noindex">noindex</a> <a href="/t/nofollow">nofollow</a>
<a href="/t/malformed">malformed</a> <a href="/t/redirected">redirected</a>
<a href="/t/gzipbomb">gzip bomb</a> <a href="/private/secret">robots-disallowed</a>
</body></html>"""


class TestSite(SiteServer):
    def __init__(
        self,
        site: DemoSite,
        addresses: tuple[str, ...],
        log: Path,
        trouble: bool,
        crawl_delay: float | None,
        page_delay_s: float,
        hostile: bool = False,
        robots_sitemaps: bool = False,
        no_robots_on: tuple[str, ...] = (),
        outage_file: Path | None = None,
    ) -> None:
        self.hostile = hostile
        self.robots_sitemaps = robots_sitemaps
        self.no_robots_on = no_robots_on
        self.outage_file = outage_file
        super().__init__(site, addresses)
        self.log_path = log
        self.trouble = trouble
        self.crawl_delay = crawl_delay
        self.page_delay_s = page_delay_s
        self.hits: dict[str, int] = {}
        self._log = log.open("a", buffering=1)
        self.app.middlewares.append(self._logger)
        self.app.middlewares.append(self._outage)

    @web.middleware
    async def _logger(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.time()
        key = f"{request.host}{request.path}"
        self.hits[key] = self.hits.get(key, 0) + 1
        status, sent = 0, 0
        try:
            if self.page_delay_s and request.path.startswith("/p/"):
                await asyncio.sleep(self.page_delay_s)
            resp = await handler(request)
            status = resp.status
            sent = getattr(resp, "body_length", 0) or len(getattr(resp, "body", b"") or b"")
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._log.write(
                json.dumps(
                    {
                        "t": started,
                        "host": request.host,
                        "path": request.path,
                        "status": status,
                        "sent": sent,
                        "ua": request.headers.get("User-Agent", ""),
                    }
                )
                + "\n"
            )

    @web.middleware
    async def _outage(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """503 for the addresses the outage file lists (every one if it lists none)."""
        if self.outage_file is None or request.path == "/robots.txt":
            return await handler(request)
        try:
            down = self.outage_file.read_text().split()
        except FileNotFoundError:
            return await handler(request)
        address = request.host.rsplit(":", 1)[0]
        if down and address not in down:
            return await handler(request)
        return _status(503)

    def robots_txt(self, host: str) -> str:
        lines = ["User-agent: *", "Disallow: /private/"]
        if self.crawl_delay:
            lines.append(f"Crawl-delay: {self.crawl_delay}")
        if self.robots_sitemaps:  # one index, one relative line to a sitemap that is not there
            lines += [f"Sitemap: http://{host}/sitemap-split.xml", "sitemap: /nowhere.xml"]
        return "\n".join(lines) + "\n"

    async def _robots(self, request: web.Request) -> web.Response:
        if request.host.rsplit(":", 1)[0] in self.no_robots_on:
            return _status(404)
        return await super()._robots(request)

    def root_html_with_trouble(self, host: str) -> str:
        return self.site.root_html(host).replace("</ul>", '</ul><a href="/t/">trouble</a>')

    def add_routes(self) -> None:
        r = self.app.router
        r.add_get("/sitemap.xml", self._sitemap_index)
        r.add_get("/sitemap-pages.xml", self._sitemap)
        r.add_get("/sitemap-pages.xml.gz", self._sitemap_gz)
        r.add_get("/sitemap-lastmod.xml", self._sitemap_lastmod)
        r.add_get("/sitemap-split.xml", self._sitemap_split)
        r.add_get("/sitemap-half/{n}.xml", self._sitemap_half)
        r.add_get("/feed.rss", self._rss)
        r.add_get("/feed.atom", self._atom)
        r.add_get("/gzipped", _const(_gzipped))
        if self.hostile:
            add_hostile_routes(r)
            r.add_get("/t/gzipbomb", self._gzip_bomb)
            return
        if not self.trouble:
            return
        r.add_get("/", self._trouble_root)
        r.add_get("/t/", _const(lambda: _html(TROUBLE_INDEX)))
        r.add_get("/t/404", _const(lambda: _status(404)))
        r.add_get("/t/flaky", self._flaky)
        r.add_get("/t/429", self._rate_limited)
        r.add_get("/t/loop", _const(lambda: _redirect("/t/loop2")))
        r.add_get("/t/loop2", _const(lambda: _redirect("/t/loop")))
        r.add_get("/t/redirected", _const(lambda: _redirect("/t/target")))
        r.add_get("/t/target", _const(lambda: _html("<title>target</title><p>landed</p>")))
        r.add_get("/t/huge", self._huge)
        r.add_get("/t/doc.pdf", self._pdf)
        r.add_get("/t/slow", self._slow)
        r.add_get(
            "/t/latin1",
            _const(
                lambda: web.Response(
                    body="<title>caf\xe9</title><p>na\xefve r\xe9sum\xe9</p>".encode("latin-1"),
                    content_type="text/html",
                )
            ),
        )
        r.add_get(
            "/t/badutf8",
            _const(
                lambda: web.Response(
                    body=b"<title>bad \xff\xfe bytes</title><p>ok \xc3\x28 text</p>",
                    headers={"Content-Type": "text/html; charset=utf-8"},
                )
            ),
        )
        r.add_get(
            "/t/noindex",
            _const(
                lambda: _html(
                    '<meta name="robots" content="noindex"><title>hidden</title><p>secret text</p>'
                    '<a href="/t/from-noindex">still followed</a>'
                )
            ),
        )
        r.add_get("/t/from-noindex", _const(lambda: _html("<title>from noindex</title><p>x</p>")))
        r.add_get(
            "/t/nofollow",
            _const(
                lambda: _html(
                    '<meta name="robots" content="nofollow"><title>nofollow</title><p>text</p>'
                    '<a href="/t/never">must not be crawled</a>'
                )
            ),
        )
        r.add_get("/t/never", _const(lambda: _html("<title>never</title>")))
        r.add_get(
            "/t/malformed",
            _const(
                lambda: _html(
                    '<title>malformed</title><a href="http://[bad">1</a>'
                    '<a href="javascript:alert(1)">2'
                    '</a><a href="mailto:a@b.c">3</a><a href="   ">4</a><a href="ht!tp://x">5</a>'
                    '<a href="//">6</a><a href="http://:80/">7</a><a href="'
                    + "x"
                    * 9000
                    + '">8</a>'
                    '<a href="/t/fine?utm_source=x#frag">9</a>'
                )
            ),
        )
        r.add_get("/t/fine", _const(lambda: _html("<title>fine</title>")))
        r.add_get("/t/gzipbomb", self._gzip_bomb)
        r.add_get("/private/secret", _const(lambda: _html("<title>secret</title>")))

    async def _sitemap_index(self, request: web.Request) -> web.StreamResponse:
        return _xml(
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap>'
            f"<loc>http://{request.host}/sitemap-pages.xml</loc></sitemap></sitemapindex>"
        )

    async def _sitemap(self, request: web.Request) -> web.StreamResponse:
        locs = "".join(
            f"<url><loc>http://{request.host}/p/{i}.html?a=1&amp;b=2</loc></url>"
            for i in range(self.site.pages_per_host)
        )
        return _xml(f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>')

    async def _sitemap_gz(self, request: web.Request) -> web.StreamResponse:
        """The same sitemap as a .xml.gz file (gzip is the file's format, not an encoding)."""
        plain = await self._sitemap(request)
        assert isinstance(plain, web.Response)
        assert plain.text is not None
        body = gzip.compress(plain.text.encode())
        return web.Response(body=body, content_type="application/x-gzip")

    async def _sitemap_lastmod(self, request: web.Request) -> web.StreamResponse:
        """Pages 0-3 with LASTMODS (a date, a datetime with a zone, a Z time, nonsense), sent
        with Content-Encoding: gzip (the transport's compression, undone by the Fetcher)."""
        urls = "".join(
            f"<url><loc>http://{request.host}/p/{i}.html</loc><lastmod>{mod}</lastmod></url>"
            for i, mod in enumerate(LASTMODS)
        )
        text = f'<?xml version="1.0"?><urlset xmlns="{SITEMAP_NS}">{urls}</urlset>'
        return web.Response(
            body=gzip.compress(text.encode()),
            headers={"Content-Type": "application/xml", "Content-Encoding": "gzip"},
        )

    async def _sitemap_split(self, request: web.Request) -> web.StreamResponse:
        """A sitemap index with two children: the even pages, then the odd ones."""
        children = "".join(
            f"<sitemap><loc>http://{request.host}/sitemap-half/{n}.xml</loc></sitemap>"
            for n in (0, 1)
        )
        return web.Response(
            text=f'<?xml version="1.0"?><sitemapindex xmlns="{SITEMAP_NS}">{children}'
            "</sitemapindex>",
            content_type="application/xml",
        )

    async def _sitemap_half(self, request: web.Request) -> web.StreamResponse:
        half = int(request.match_info["n"])
        urls = "".join(
            f"<url><loc>http://{request.host}/p/{i}.html</loc></url>"
            for i in range(half, self.site.pages_per_host, 2)
        )
        return web.Response(
            text=f'<urlset xmlns="{SITEMAP_NS}">{urls}</urlset>', content_type="application/xml"
        )

    async def _rss(self, request: web.Request) -> web.StreamResponse:
        """RSS 2.0 listing pages 0-4 (newest first, as blogs do)."""
        items = "".join(
            f"<item><title>Page {i}</title><link>http://{request.host}/p/{i}.html</link>"
            f"<guid>p{i}</guid><pubDate>Sat, 0{i + 1} Nov 2026 10:00:00 GMT</pubDate></item>"
            for i in reversed(range(min(5, self.site.pages_per_host)))
        )
        channel = f"<title>Test blog</title><link>http://{request.host}/</link>"
        channel += f"<description>d</description>{items}"
        return _xml(f'<rss version="2.0"><channel>{channel}</channel></rss>', "application/rss+xml")

    async def _atom(self, request: web.Request) -> web.StreamResponse:
        """Atom 1.0 listing pages 5-9, links as rel=alternate."""
        entries = "".join(
            f"<entry><title>Page {i}</title><id>urn:p{i}</id><updated>2026-11-0{i - 4}T10:00:00Z"
            f'</updated><link rel="alternate" href="http://{request.host}/p/{i}.html"/></entry>'
            for i in range(5, min(10, self.site.pages_per_host))
        )
        feed = "<title>Test blog</title><id>urn:blog</id><updated>2026-11-05T10:00:00Z</updated>"
        body = f'<feed xmlns="http://www.w3.org/2005/Atom">{feed}{entries}</feed>'
        return _xml(body, "application/atom+xml")

    async def _trouble_root(self, request: web.Request) -> web.StreamResponse:
        return _html(self.root_html_with_trouble(request.host))

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.hits[f"{request.host}{request.path}"] == 1:
            return _status(500)
        return _html("<title>flaky ok</title><p>second time lucky</p>")

    async def _rate_limited(self, request: web.Request) -> web.Response:
        if self.hits[f"{request.host}{request.path}"] == 1:
            return web.Response(status=429, headers={"Retry-After": "2"}, text="slow down")
        return _html("<title>429 ok</title><p>after waiting</p>")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        chunks = _chunks(HUGE_CHUNK, 50 * MB // len(HUGE_CHUNK) + 1)
        return await _stream(request, "text/html", chunks, length=50 * MB)

    async def _pdf(self, request: web.Request) -> web.StreamResponse:
        return await _stream(request, "application/pdf", _chunks(b"%PDF" + b"0" * 65532, 200, 0.01))

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"<title>slow</title><p>"
            await asyncio.sleep(30)
            yield b"never</p>"

        return await _stream(request, "text/html", chunks())

    async def _gzip_bomb(self, _: web.Request) -> web.Response:
        return web.Response(
            body=_BOMB, headers={"Content-Type": "text/html", "Content-Encoding": "deflate"}
        )


async def _stream(
    request: web.Request, content_type: str, chunks: AsyncIterator[bytes], length: int | None = None
) -> web.StreamResponse:
    """A body sent as ``chunks`` come; the client may hang up at any point (the crawler cuts
    what it does not want)."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.content_length = length
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        async for chunk in chunks:
            await resp.write(chunk)
    return resp


async def _chunks(chunk: bytes, times: int, pause_s: float = 0.0) -> AsyncIterator[bytes]:
    for _ in range(times):
        yield chunk
        if pause_s:
            await asyncio.sleep(pause_s)


def _make_bomb() -> bytes:
    """~100 KB that inflates to 100 MB; built once, in pieces, so the server stays small."""
    c = zlib.compressobj(9)
    zeros = b"0" * MB
    parts = [c.compress(b"<title>bomb</title><p>")]
    parts += [c.compress(zeros) for _ in range(100)]
    return b"".join([*parts, c.compress(b"</p>"), c.flush()])


_BOMB = _make_bomb()
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
# /sitemap-lastmod.xml: the <lastmod> of pages 0-3
LASTMODS = ("2026-11-01", "2026-11-02T10:30:00+02:00", "2026-11-03T08:00Z", "soon")
HUGE_CHUNK = b"<p>" + b"a" * (64 * 1024 - 7) + b"</p>\n"  # /t/huge: this, over and over
GZIPPED_HTML = b"<!doctype html><title>gzipped</title><p>" + b"compressible text " * 500
GZIPPED = gzip.compress(GZIPPED_HTML, mtime=0)  # /gzipped sends these bytes


def bomb() -> bytes:
    """What /t/gzipbomb sends (deflate-encoded)."""
    return _BOMB


def _gzipped() -> web.Response:
    return web.Response(
        body=GZIPPED, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"}
    )


def _const(make: Callable[[], web.Response]) -> Handler:
    """An async handler that answers every request with a fresh ``make()``."""

    async def handler(_: web.Request) -> web.StreamResponse:
        return make()

    return handler


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _xml(body: str, content_type: str = "application/xml") -> web.Response:
    """An XML document: the declaration, then ``body``."""
    return web.Response(text='<?xml version="1.0"?>' + body, content_type=content_type)


def _status(code: int) -> web.Response:
    return web.Response(status=code, text=f"status {code}")


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


async def _main(args: argparse.Namespace) -> None:
    site = TestSite(
        DemoSite(pages_per_host=args.pages, links_per_page=args.links),
        tuple(args.addresses.split(",")),
        Path(args.log),
        args.trouble,
        args.crawl_delay,
        args.page_delay,
        args.hostile,
        args.robots_sitemaps,
        tuple(args.no_robots_on.split(",")) if args.no_robots_on else (),
        Path(args.outage_file) if args.outage_file else None,
    )
    await site.start()
    print(f"ready {site.port}", flush=True)
    shutdown = Shutdown()
    shutdown.install()
    await shutdown.stop.wait()
    await site.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--addresses", default="127.0.0.1")
    p.add_argument("--pages", type=int, default=50)
    p.add_argument("--links", type=int, default=8)
    p.add_argument("--log", required=True)
    p.add_argument("--trouble", action="store_true")
    p.add_argument("--hostile", action="store_true", help="serve tests/hostile.py's pages at /")
    p.add_argument("--crawl-delay", type=float, default=None)
    p.add_argument("--page-delay", type=float, default=0.0)
    p.add_argument("--robots-sitemaps", action="store_true", help="robots.txt lists sitemaps")
    p.add_argument("--no-robots-on", default="", help="addresses whose robots.txt is a 404")
    p.add_argument("--outage-file", help="while this file exists, its addresses answer 503")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
