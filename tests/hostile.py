"""Hostile pages for the chaos suite (served by ``python -m tests.site --hostile``).

Each route is a page built to break a crawler: huge link counts, a 5 MB single line, 100k nested
tags, mixed encodings, bodies that never end or lie about their length, endless redirects,
spider traps, 10 KB URLs, links with non-HTTP schemes and IDN hosts.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from aiohttp import web

__all__ = ["HOSTILE_PATHS", "add_hostile_routes"]

HOSTILE_PATHS = (  # (/h/links is not linked from here: tests seed it on its own host)
    "/h/oneline",
    "/h/nested",
    "/h/mixed",
    "/h/utf16",
    "/h/endless",
    "/h/lies-long",
    "/h/lies-short",
    "/h/chain/0",
    "/h/a/",
    "/h/cal/2024-01-01",
    "/h/longurls",
    "/h/schemes",
    "/t/gzipbomb",
)


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


async def _index(_: web.Request) -> web.StreamResponse:
    links = "".join(f'<a href="{p}">{p}</a>\n' for p in HOSTILE_PATHS)
    return _html(f"<!doctype html><title>hostile</title><body>{links}</body>")


async def _links(_: web.Request) -> web.StreamResponse:
    """10,000 links on one page (most end up refused by the per-domain page cap)."""
    links = "".join(f'<a href="/h/l/{i}">{i}</a>' for i in range(10_000))
    return _html(f"<title>10k links</title><body>{links}</body>")


async def _leaf(request: web.Request) -> web.StreamResponse:
    return _html(f"<title>leaf {request.match_info['n']}</title><p>a leaf</p>")


async def _oneline(_: web.Request) -> web.StreamResponse:
    """A 5,000,000-byte page on a single line (under the 5 MiB cap: parsed whole)."""
    body = "<title>one line</title><p>" + "word " * 999_990 + "</p>"
    return _html(body)


async def _nested(_: web.Request) -> web.StreamResponse:
    depth = 100_000
    return _html("<title>nested</title>" + "<div>" * depth + "deep text" + "</div>" * depth)


async def _mixed(_: web.Request) -> web.StreamResponse:
    """Declared UTF-8, with Latin-1, Windows-1252 and broken UTF-8 bytes mixed in."""
    body = (
        "<meta charset='utf-8'><title>mixed \u00e9</title><p>".encode()
        + "caf\u00e9 na\u00efve ".encode("latin-1")
        + b"\x93smart quotes\x94 "
        + b"\xf0\x28\x8c\x28 broken \xc3"
        + "<p>r\u00e9sum\u00e9</p>".encode()
    )
    return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})


async def _utf16(_: web.Request) -> web.StreamResponse:
    body = "<html><title>utf-16 page</title><p>\u00fcber</p></html>".encode("utf-16")
    return web.Response(body=body, headers={"Content-Type": "text/html"})


async def _endless(request: web.Request) -> web.StreamResponse:
    """A chunked body that never ends: the size cap must cut it."""
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    chunk = b"<p>" + b"x" * 16_000 + b"</p>\n"
    try:
        await resp.write(b"<title>endless</title>")
        while True:
            await resp.write(chunk)
            await asyncio.sleep(0)
    except (ConnectionResetError, RuntimeError):
        pass
    return resp


async def _lies_long(request: web.Request) -> web.StreamResponse:
    """Content-Length promises 100,000 bytes; 60 arrive, then the connection closes."""
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.content_length = 100_000
    await resp.prepare(request)
    await resp.write(b"<title>liar</title><p>short body, long promise</p>")
    if request.transport is not None:
        request.transport.close()
    return resp


async def _lies_short(request: web.Request) -> web.StreamResponse:
    """Content-Length says 40; more bytes follow (the reader must stop at 40)."""
    body = b"<title>short</title><p>first forty b.." + b"<p>EXTRA BYTES</p>" * 50
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.content_length = 40
    await resp.prepare(request)
    if request.transport is not None:
        request.transport.write(body)
        request.transport.close()
    return resp


async def _chain(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    return web.Response(status=302, headers={"Location": f"/h/chain/{n + 1}"})


async def _trap(request: web.Request) -> web.StreamResponse:
    """/h/a/, /h/a/a/, /h/a/a/a/ ...: always one level deeper."""
    return _html(f"<title>trap {request.path.count('/a/')}</title><a href='a/'>deeper</a>")


async def _calendar(request: web.Request) -> web.StreamResponse:
    day = dt.date.fromisoformat(request.match_info["day"])
    prev, nxt = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
    return _html(
        f"<title>{day}</title><a href='/h/cal/{prev}'>prev</a><a href='/h/cal/{nxt}'>next</a>"
    )


async def _long_urls(_: web.Request) -> web.StreamResponse:
    links = "".join(f'<a href="/h/long/{i}/{"x" * 10_000}">long {i}</a>' for i in range(20))
    links += '<a href="/h/long/ok/' + "y" * 2_000 + '">2 KB, fine</a>'
    return _html(f"<title>long urls</title>{links}")


async def _schemes(_: web.Request) -> web.StreamResponse:
    hrefs = [
        "javascript:alert(1)",
        "mailto:a@example.org",
        "tel:+123",
        "ftp://example.org/x",
        "data:text/html,<b>x</b>",
        "file:///etc/passwd",
        "ws://example.org/",
        "http://b\u00fccher.example/",
        "http://xn--bcher-kva.example/p",
        "http://[::1]:99999/",
        "http://exa mple.org/",
        "//",
        "http://",
        "#frag",
        "\x00http://nul.example/",
        "http://169.254.169.254/latest/meta-data/",
    ]
    links = "".join(f'<a href="{h}">{i}</a>' for i, h in enumerate(hrefs))
    return _html(f"<title>schemes</title>{links}<a href='/h/l/1'>a good one</a>")


def add_hostile_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", _index)
    router.add_get("/h/links", _links)
    router.add_get("/h/l/{n}", _leaf)
    router.add_get("/h/oneline", _oneline)
    router.add_get("/h/nested", _nested)
    router.add_get("/h/mixed", _mixed)
    router.add_get("/h/utf16", _utf16)
    router.add_get("/h/endless", _endless)
    router.add_get("/h/lies-long", _lies_long)
    router.add_get("/h/lies-short", _lies_short)
    router.add_get("/h/chain/{n}", _chain)
    router.add_get("/h/a/{rest:.*}", _trap)
    router.add_get("/h/cal/{day}", _calendar)
    router.add_get("/h/longurls", _long_urls)
    router.add_get("/h/long/{rest:.*}", _leaf_any)
    router.add_get("/h/schemes", _schemes)


async def _leaf_any(_: web.Request) -> web.StreamResponse:
    return _html("<title>long leaf</title><p>reached</p>")
