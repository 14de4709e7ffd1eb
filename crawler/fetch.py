"""Fetching one URL: redirects followed by hand, a content-type gate, a capped streaming read.

One ``aiohttp.ClientSession`` per process, opened by ``Fetcher.open_session`` in the worker's exit
stack. The connector is tuned on purpose: a total and a per-host connection limit (the per-domain
politeness lives in Redis; this bounds sockets), a DNS cache, keep-alive. With a proxy pool
(crawler/proxypool.py) each proxy has a session of its own (a SOCKS proxy is its session's
connector) and every fetch, robots.txt included, goes through its domain's proxy.
"""

from __future__ import annotations

import codecs
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp_socks
from python_socks import ProxyType

from common.backoff import parse_retry_after
from common.errors import InvalidUrl, OutputError, PermanentError, RetryableError
from common.serde import WarcCapture
from common.settings import FetchSettings
from common.urls import canonicalize, host_of
from crawler.classify import (
    ProxyFailed,
    SkipPage,
    check_status,
    proxy_failure,
    translate_exception,
)
from crawler.proxies import ProxyEndpoint
from crawler.proxypool import ProxyPool, Route
from crawler.ssrf import GuardedResolver, ProxiedHostGuard, check_literal_host
from crawler.warc import SIDE_BODY_BYTES, Exchange, WarcArchive, WarcLocation

__all__ = ["FetchResult", "Fetcher", "decode_body"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
NOT_MODIFIED = 304
_VALIDATOR_MAX = 512  # longer ETag/Last-Modified values are not kept (nor sent back)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_CHUNK = 64 * 1024
_PROXY_AUTH = "proxy-authorization"


@dataclass(slots=True)
class FetchResult:
    url: str
    final_url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    elapsed_ms: float
    redirects: list[str] = field(default_factory=list)
    warc: WarcLocation | None = None  # the final response's record, when archiving
    etag: str | None = None  # the final response's validators (revisits send them back)
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        """A 304 to a conditional request: the page is as it was at the last visit."""
        return self.status == NOT_MODIFIED

    def text(self) -> str:
        return decode_body(self.body, self.charset)

    def markup(self) -> str | bytes:
        """The body for the HTML parser: the bytes themselves when they are declared UTF-8
        (lexbor decodes UTF-8 as ``decode_body`` would, invalid bytes becoming U+FFFD, and is
        spared a decode here and an encode back in selectolax), else ``text()``."""
        if self.body.startswith(_BOM_PREFIXES):
            return self.text()
        declared = self.charset
        if not declared:
            sniffed = _META_CHARSET.search(self.body[:4096])
            declared = sniffed.group(1).decode("ascii", "replace") if sniffed else None
        if declared is not None and declared.lower() in ("utf-8", "utf8"):
            return self.body
        return self.text()


class _Identity:
    """The no-op twin of zlib's decompressobj, for uncompressed bodies."""

    unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        self.unconsumed_tail = data[max_length:]
        return data[:max_length]


class _Deflate:
    """``Content-Encoding: deflate`` is zlib-wrapped by the RFC and raw in many servers."""

    def __init__(self) -> None:
        self._inner = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header
        self._started = False

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._inner.decompress(data, max_length)
        except zlib.error:
            if self._started:
                raise
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS)  # headerless, raw deflate
            out = self._inner.decompress(data, max_length)
        self._started = True
        return out


def _decoder(encoding: str) -> _Identity | _Deflate | zlib._Decompress:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    raise SkipPage(f"unsupported content encoding {encoding!r}", reason="content_encoding")


_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


_BOM_PREFIXES = tuple(bom for bom, _ in _BOMS)


def decode_body(body: bytes, charset: str | None) -> str:
    """Text of a body: a byte-order mark, the header's charset, then ``<meta charset>``, then
    UTF-8, then cp1252 (a BOM wins over the header, as in the WHATWG encoding standard).

    Undecodable bytes become U+FFFD; this never raises.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace")
    candidates = [charset] if charset else []
    sniffed = _META_CHARSET.search(body[:4096])
    if sniffed:
        candidates.append(sniffed.group(1).decode("ascii", "replace"))
    for name in candidates:
        try:
            return body.decode(name, errors="replace")
        except LookupError:
            continue
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        if text.count("\ufffd") * 100 > len(text):  # mostly not UTF-8: a legacy single-byte page
            return body.decode("cp1252", errors="replace")
        return text


class Fetcher:
    """Fetches pages under the configured limits; raises classified errors."""

    def __init__(
        self,
        settings: FetchSettings,
        session: aiohttp.ClientSession,
        *,
        allow_private: bool,
        archive: WarcArchive | None = None,
        proxies: ProxyPool | None = None,
    ) -> None:
        self._s = settings
        self._session = session
        self._allow_private = allow_private
        self._archive = archive  # every response (redirects and errors too) goes to WARC
        self._types = tuple(t.lower() for t in settings.content_types)
        self._proxies = proxies
        self._proxied_guard = (
            ProxiedHostGuard(max(settings.dns_cache_s, 1))
            if proxies is not None and not allow_private
            else None
        )

    @staticmethod
    def open_session(
        settings: FetchSettings,
        *,
        allow_private: bool,
        proxy: ProxyEndpoint | None = None,
        allow_private_proxy: bool = False,
    ) -> aiohttp.ClientSession:
        """The session for direct fetches, or for the fetches through ``proxy`` (then the
        connector only ever resolves the proxy's host, guarded unless ``allow_private_proxy``;
        the proxy resolves the sites' names)."""
        limits: dict[str, Any] = {
            "limit": settings.connections,
            "limit_per_host": settings.connections_per_host,
            "keepalive_timeout": 30,
            "enable_cleanup_closed": False,
        }
        connector: aiohttp.TCPConnector
        if proxy is not None and proxy.scheme == "socks5":
            connector = aiohttp_socks.ProxyConnector(
                proxy_type=ProxyType.SOCKS5,
                host=proxy.host,
                port=proxy.port,
                username=proxy.username,
                password=proxy.password,
                rdns=True,  # the proxy resolves the sites' names, as HTTP proxies do
                **limits,
            )
        else:
            guarded = allow_private_proxy if proxy is not None else allow_private
            connector = aiohttp.TCPConnector(
                ttl_dns_cache=settings.dns_cache_s,
                use_dns_cache=settings.dns_cache_s > 0,
                resolver=None if guarded else GuardedResolver(),
                **limits,
            )
        timeout = aiohttp.ClientTimeout(
            total=settings.total_timeout_s,
            connect=settings.connect_timeout_s,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.read_timeout_s,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
                "Accept-Encoding": "gzip, deflate",
            },
            # We inflate bodies ourselves, a bounded step at a time: aiohttp would inflate each
            # network chunk whole, and one 256 KB chunk of a gzip bomb is hundreds of MB.
            auto_decompress=False,
            raise_for_status=False,
            max_line_size=16 * 1024,
            max_field_size=16 * 1024,
        )

    async def fetch(
        self,
        url: str,
        *,
        accept_any_type: bool = False,
        etag: str | None = None,
        last_modified: str | None = None,
        previous: WarcCapture | None = None,
    ) -> FetchResult:
        """GET ``url``; raise RetryableError, PermanentError or SkipPage when it cannot be used
        (ProxyFailed when the proxy, not the site, failed). ``etag``/``last_modified`` (a
        revisit) make it conditional: a 304 answer is a result (``not_modified``), no body.
        ``previous``: where the page's last payload was archived (a 304 or the same payload
        is archived as a revisit record referring to it)."""
        conditional: dict[str, str] = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        started = time.perf_counter()
        # A fetch and its redirects go through the proxy of the URL's domain.
        route = self._proxies.route(host_of(url)) if self._proxies is not None else None
        try:
            result = await self._fetch(url, started, accept_any_type, route, conditional, previous)
        except ProxyFailed as exc:
            if route is not None and self._proxies is not None:
                await self._proxies.failed(route, exc)
            raise
        except (PermanentError, SkipPage, OutputError):
            raise
        except Exception as exc:
            failure = proxy_failure(exc) if route is not None else None
            if failure is None or route is None or self._proxies is None:
                raise translate_exception(exc) from exc
            reason, auth = failure
            what = "refused the credentials" if auth else f"failed: {reason}"
            proxy_exc = ProxyFailed(
                f"{route.proxy.describe()} {what}",
                reason=reason,
                proxy=route.name,
                unsent=True,
                auth=auth,
            )
            await self._proxies.failed(route, proxy_exc)
            raise proxy_exc from exc
        if route is not None and self._proxies is not None:
            await self._proxies.succeeded(route)
        return result

    async def _fetch(
        self,
        url: str,
        started: float,
        accept_any_type: bool,
        route: Route | None,
        conditional: dict[str, str],
        previous: WarcCapture | None,
    ) -> FetchResult:
        current = url
        hops: list[str] = []
        session = route.session if route is not None else self._session
        proxy = route.proxy_url if route is not None else None
        for _ in range(self._s.max_redirects + 1):
            if self._proxied_guard is not None:
                await self._proxied_guard.check(host_of(current))
            elif not self._allow_private:
                check_literal_host(host_of(current))
            sent = time.time()
            async with session.get(
                current, allow_redirects=False, proxy=proxy, headers=conditional or None
            ) as resp:
                if route is not None and self._proxies is not None:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    self._proxies.status_failure(route, resp.status, retry_after)
                if resp.status in _REDIRECTS:
                    await self._archive_unread(resp, current, sent)
                    current = self._next_hop(current, resp.headers.get("Location"), hops)
                    continue
                content_type = resp.content_type.lower()
                if resp.status == NOT_MODIFIED and conditional:
                    await self._archive_unread(resp, current, sent, previous)
                    return self._result(resp, url, current, b"", False, started, hops)
                try:
                    check_status(resp.status, resp.headers.get("Retry-After"))
                    if not accept_any_type and not content_type.startswith(self._types):
                        raise SkipPage(f"content type {content_type}", reason="content_type")
                except (PermanentError, RetryableError):  # (SkipPage too) archived, then raised
                    await self._archive_unread(resp, current, sent)
                    raise
                raw: list[bytes] | None = [] if self._archive is not None else None
                try:
                    body, truncated = await self._read_capped(resp, raw)
                except Exception as exc:  # archive what came, then fail as before
                    if raw is not None and self._archive is not None:
                        cut = "time" if isinstance(exc, TimeoutError) else "disconnect"
                        ex = _exchange(resp, current, sent, b"".join(raw), cut)
                        await self._archive.record(ex)
                    raise
            result = self._result(resp, url, current, body, truncated, started, hops)
            if raw is not None and self._archive is not None:
                # (uncoded bodies are archived as kept: cut at the cap, not at a chunk's end)
                payload = body if resp.headers.get("Content-Encoding") is None else b"".join(raw)
                why = "length" if truncated else None
                ex = _exchange(resp, current, sent, payload, why, previous)
                result.warc = await self._archive.record(ex)
            return result
        raise PermanentError(f"more than {self._s.max_redirects} redirects", reason="redirects")

    @staticmethod
    def _result(
        resp: aiohttp.ClientResponse,
        url: str,
        final_url: str,
        body: bytes,
        truncated: bool,
        started: float,
        hops: list[str],
    ) -> FetchResult:
        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        return FetchResult(
            url=url,
            final_url=final_url,
            status=resp.status,
            content_type=resp.content_type.lower(),
            charset=resp.charset,
            body=body,
            truncated=truncated,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            redirects=hops,
            etag=etag if etag and len(etag) <= _VALIDATOR_MAX else None,
            last_modified=modified if modified and len(modified) <= _VALIDATOR_MAX else None,
        )

    async def _archive_unread(
        self,
        resp: aiohttp.ClientResponse,
        url: str,
        sent: float,
        previous: WarcCapture | None = None,
    ) -> None:
        """Archive a response the crawler does not parse (a redirect, an error status, a skipped
        content type, a 304: a revisit record when ``previous`` says where its payload is) with
        the first SIDE_BODY_BYTES of its body as sent."""
        if self._archive is None:
            return
        chunks: list[bytes] = []
        size, truncated = 0, None  # (or WARC-Truncated's reason)
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                if size + len(chunk) > SIDE_BODY_BYTES:
                    chunks.append(chunk[: SIDE_BODY_BYTES - size])
                    truncated = "length"
                    resp.close()
                    break
                chunks.append(chunk)
                size += len(chunk)
        except TimeoutError:  # what came is archived; the response's own error stands
            truncated = "time"
        except aiohttp.ClientError:
            truncated = "disconnect"
        exchange = _exchange(resp, url, sent, b"".join(chunks), truncated, previous)
        await self._archive.record(exchange)

    def _next_hop(self, current: str, location: str | None, hops: list[str]) -> str:
        if not location:
            raise PermanentError("redirect without a Location", reason="bad_redirect")
        try:
            target = canonicalize(location, base=current)
        except InvalidUrl as exc:
            raise PermanentError(f"bad redirect target: {exc}", reason="bad_redirect") from exc
        if target == current or target in hops:
            raise PermanentError(f"redirect loop at {target}", reason="redirect_loop")
        hops.append(target)
        return target

    async def _read_capped(
        self, resp: aiohttp.ClientResponse, raw: list[bytes] | None
    ) -> tuple[bytes, bool]:
        """Read at most max_body_bytes of the *decoded* body; stop (and drop the socket) there.
        Every network chunk read also goes to ``raw`` when given (the bytes as sent, for the
        archive, kept even when reading fails).

        Inflating never produces more than the room left plus one byte per step, so memory
        stays bounded whatever the compression ratio or the size of network chunks."""
        cap = self._s.max_body_bytes
        decoder = _decoder(resp.headers.get("Content-Encoding", ""))
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                if raw is not None:
                    raw.append(chunk)
                data = chunk
                while data:
                    room = cap - size
                    out = decoder.decompress(data, room + 1)
                    data = decoder.unconsumed_tail
                    if len(out) > room:
                        chunks.append(out[:room])
                        resp.close()  # do not drain the rest of a huge or endless body
                        return b"".join(chunks), True
                    chunks.append(out)
                    size += len(out)
        except zlib.error as exc:
            raise RetryableError(
                f"broken compressed body: {exc}", reason="bad_body", domain_backoff=True
            ) from exc
        return b"".join(chunks), False


def _exchange(
    resp: aiohttp.ClientResponse,
    url: str,
    sent: float,
    payload: bytes,
    truncated: str | None,
    previous: WarcCapture | None = None,
) -> Exchange:
    info = resp.request_info
    version = resp.version
    return Exchange(
        url=url,
        started=sent,
        method=info.method,
        target=info.url.raw_path_qs,
        # (a proxy's credentials are not the exchange's: they never go to WARC files)
        request_headers=[(k, v) for k, v in info.headers.items() if k.lower() != _PROXY_AUTH],
        protocol=f"HTTP/{version.major}.{version.minor}" if version else "HTTP/1.1",
        status=resp.status,
        reason=resp.reason or "",
        response_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers],
        payload=payload,
        truncated=truncated,
        previous=previous,
    )
