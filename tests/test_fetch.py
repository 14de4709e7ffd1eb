"""The fetcher against an in-process server: encodings, the decoded-size cap, charsets, SSRF."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from common.errors import PermanentError, RetryableError
from common.settings import FetchSettings
from crawler.classify import SkipPage, check_status
from crawler.fetch import Fetcher, FetchResult, decode_body

KB = 1024
PAGE = b"<title>t</title><p>" + b"hello " * 2000 + b"</p>"


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def _bomb() -> bytes:
    c = zlib.compressobj(9)
    zeros = b"0" * (1024 * KB)
    return b"".join([c.compress(b"<p>"), *(c.compress(zeros) for _ in range(64)), c.flush()])


@pytest.fixture
async def server() -> AsyncIterator[str]:
    bodies = {
        "/gzip": (gzip.compress(PAGE), "gzip"),
        "/zlib": (zlib.compress(PAGE), "deflate"),
        "/raw-deflate": (_raw_deflate(PAGE), "deflate"),
        "/bomb": (_bomb(), "deflate"),
        "/br": (b"\x00\x01", "br"),
        "/corrupt": (b"\x1f\x8b not really gzip at all", "gzip"),
    }

    async def handler(request: web.Request) -> web.Response:
        body, encoding = bodies[request.path]
        return web.Response(
            body=body, headers={"Content-Type": "text/html", "Content-Encoding": encoding}
        )

    app = web.Application()
    for path in bodies:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _fetch(url: str, *, cap: int = 1024 * KB, allow_private: bool = True) -> FetchResult:
    settings = FetchSettings(max_body_bytes=cap)
    async with Fetcher.open_session(settings, allow_private=allow_private) as session:
        return await Fetcher(settings, session, allow_private=allow_private).fetch(url)


@pytest.mark.parametrize("path", ["/gzip", "/zlib", "/raw-deflate"])
async def test_compressed_bodies_are_inflated(server: str, path: str) -> None:
    result = await _fetch(server + path)
    assert result.body == PAGE
    assert result.truncated is False


async def test_a_bomb_stops_at_the_decoded_cap(server: str) -> None:
    result = await _fetch(server + "/bomb", cap=256 * KB)
    assert len(result.body) == 256 * KB
    assert result.truncated is True


async def test_unsupported_and_corrupt_encodings(server: str) -> None:
    with pytest.raises(SkipPage, match="content encoding"):
        await _fetch(server + "/br")
    with pytest.raises(RetryableError) as caught:  # like a truncated body: may pass
        await _fetch(server + "/corrupt")
    assert caught.value.reason == "bad_body"


async def test_private_addresses_are_refused_by_default(server: str) -> None:
    with pytest.raises(SkipPage) as caught:
        await _fetch(server + "/gzip", allow_private=False)
    assert caught.value.reason == "blocked_address"


@pytest.mark.parametrize(
    ("body", "charset", "text"),
    [
        ("café".encode("latin-1"), "latin-1", "café"),
        ('<meta charset="windows-1252"><p>caf\xe9'.encode("cp1252"), None, "café"),
        ("naïve".encode(), None, "naïve"),
        (b"caf\xe9 au lait, tr\xe8s bien", None, "café au lait, très bien"),
        (b"ok \xff\xfe bytes", "utf-8", "ok \ufffd\ufffd bytes"),
        (b"x", "no-such-charset", "x"),
    ],
)
def test_charsets(body: bytes, charset: str | None, text: str) -> None:
    assert text in decode_body(body, charset)


@pytest.fixture
async def https_server(tmp_path: Path) -> AsyncIterator[str]:
    """An HTTPS server whose certificate no trust store knows (a fresh self-signed one)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await openssl.wait() == 0
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    yield f"https://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_an_untrusted_certificate_is_a_final_tls_error(https_server: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await _fetch(https_server)
    assert caught.value.reason == "tls_error"
    assert not isinstance(caught.value, RetryableError)
    assert "certificate" in str(caught.value).lower()


def test_failures_carry_their_status_class_and_domain_backoff() -> None:
    with pytest.raises(RetryableError) as caught:
        check_status(503, "7")
    assert (caught.value.reason, caught.value.status_class) == ("http_503", "5xx")
    assert caught.value.domain_backoff
    assert caught.value.retry_after_s == 7
    with pytest.raises(RetryableError) as caught:
        check_status(500, None)
    assert not caught.value.domain_backoff  # one broken page, not an overloaded host
    with pytest.raises(PermanentError) as final:
        check_status(404, None)
    assert (final.value.reason, final.value.status_class) == ("http_404", "4xx")
