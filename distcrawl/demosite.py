"""A generated local website, for the README's first command and for tests and benchmarks.

Pages are deterministic: page ``i`` of a host links to the next page (so every page is
reachable from the host's root), to a few random pages of its own host and to pages of the
other hosts. Several hosts share one port on different loopback addresses (127.0.0.x).
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass

from aiohttp import web

from common.lifecycle import Shutdown

__all__ = ["DemoSite", "SiteServer", "serve_until_stopped"]

# Tries at a port free on every address of a site of several (see SiteServer.start).
_BIND_ATTEMPTS = 20

_TEXT = (
    "crawler frontier queue domain token bucket lease worker redis shard replica latency "
    "throughput budget summary model prompt parser selector anchor canonical robots sitemap "
    "politeness retry backoff cluster metric alert dashboard gauge counter histogram signal "
    "harbor river mountain valley forest garden library museum market station bridge tower "
    "engine signal circuit battery sensor antenna orbit comet planet galaxy nebula quasar"
)
_WORDS = tuple(_TEXT.split())


@dataclass(frozen=True)
class DemoSite:
    """The site's shape; ``hosts`` are ``host:port`` strings filled in by SiteServer."""

    pages_per_host: int = 60
    links_per_page: int = 8
    paragraphs: int = 4
    seed: int = 0

    def page_path(self, i: int) -> str:
        return f"/p/{i}.html"

    def page_urls(self, hosts: list[str]) -> list[str]:
        """Every page the crawl should reach: each host's root and its numbered pages."""
        return [f"http://{h}/" for h in hosts] + [
            f"http://{h}{self.page_path(i)}" for h in hosts for i in range(self.pages_per_host)
        ]

    def sentence(self, rng: random.Random) -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        return " ".join(words).capitalize() + "."

    def root_html(self, host: str) -> str:
        links = "".join(
            f'<li><a href="{self.page_path(i)}">Page {i}</a></li>'
            for i in range(min(5, self.pages_per_host))
        )
        return (
            f"<!doctype html><html lang=en><head><title>Demo site {host}</title>"
            f'<meta name="description" content="Root of the distcrawl demo site on {host}">'
            f"</head><body><nav><a href=/>Home</a></nav><h1>Demo site</h1><ul>{links}</ul>"
            "<footer>distcrawl demo</footer></body></html>"
        )

    def page_html(self, host: str, hosts: list[str], i: int) -> str:
        rng = random.Random(f"{self.seed}:{host}:{i}")
        topic = rng.choice(_WORDS)
        paras = "".join(
            "<p>" + " ".join(self.sentence(rng) for _ in range(rng.randint(3, 6))) + "</p>"
            for _ in range(self.paragraphs)
        )
        targets = [f"{self.page_path((i + 1) % self.pages_per_host)}"]
        for _ in range(self.links_per_page):
            other = rng.choice(hosts)
            j = rng.randrange(self.pages_per_host)
            targets.append(
                self.page_path(j) if other == host else f"http://{other}{self.page_path(j)}"
            )
        links = "".join(f'<a href="{t}">link {n}</a> ' for n, t in enumerate(targets))
        return (
            f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>Page {i} about {topic}</title>"
            f'<meta name="description" content="Demo page {i} on {host}, about {topic}">'
            f"</head><body><header><nav><a href=/>Home</a> | <a href=/p/0.html>First</a></nav>"
            f"</header><main><h1>Page {i}: {topic}</h1>{paras}<p>{links}</p></main>"
            f"<footer>distcrawl demo footer</footer></body></html>"
        )


class SiteServer:
    """Serves a DemoSite (plus any extra routes) on one port of several loopback addresses."""

    def __init__(self, site: DemoSite, addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.site = site
        self.addresses = addresses
        self.port = 0
        self.hosts: list[str] = []
        self.app = web.Application()
        self._runner: web.AppRunner | None = None

    def add_routes(self) -> None:
        """Override to add routes before the generic page routes."""

    def _handlers(self) -> None:
        self.add_routes()
        self.app.router.add_get("/", self._root)
        self.app.router.add_get("/robots.txt", self._robots)
        self.app.router.add_get("/p/{n}.html", self._page)

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text=self.site.root_html(request.host), content_type="text/html")

    async def _robots(self, request: web.Request) -> web.Response:
        return web.Response(text=self.robots_txt(request.host), content_type="text/plain")

    def robots_txt(self, host: str) -> str:  # noqa: ARG002 (subclasses vary it by host)
        return "User-agent: *\nAllow: /\n"

    async def _page(self, request: web.Request) -> web.Response:
        try:
            i = int(request.match_info["n"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= i < self.site.pages_per_host:
            raise web.HTTPNotFound()
        html = self.site.page_html(request.host, self.hosts, i)
        return web.Response(text=html, content_type="text/html")

    async def start(self) -> list[str]:
        """Start listening; returns the ``host:port`` of every address."""
        self._handlers()
        # Stopping waits at most 1 s for responses still being sent (aiohttp's default, 60 s,
        # would keep a site that streams a slow body to a gone client alive that long).
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        chosen = self.port == 0
        for attempt in range(_BIND_ATTEMPTS):
            try:
                await self._listen(self._runner)
                break
            except OSError as exc:
                # The port the first address got can be taken on another address (by another
                # process that bound only that one): let the system pick again.
                if not chosen or exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS - 1:
                    raise
                for site in list(self._runner.sites):
                    await site.stop()
                self.port = 0
        self.hosts = [f"{a}:{self.port}" for a in self.addresses]
        return self.hosts

    async def _listen(self, runner: web.AppRunner) -> None:
        """Listen on every address, on ``self.port`` (0: the port the first one gets)."""
        for addr in self.addresses:
            site = web.TCPSite(runner, addr, self.port, reuse_address=True)
            await site.start()
            if self.port == 0:
                server = site._server
                assert server is not None
                self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve_until_stopped(runner: web.AppRunner, port: int) -> None:
    """A site process's life after set-up: say ``ready <port>`` (the line its parent waits
    for), serve until SIGTERM or SIGINT, then clean up."""
    print(f"ready {port}", flush=True)
    shutdown = Shutdown()
    shutdown.install()
    await shutdown.stop.wait()
    await runner.cleanup()
