"""The proxy pool's configuration: proxy URLs parsed and checked, the crawl's pool matched.

A crawl's pool lives in its spec, so every worker of a fleet routes through the same proxies:
the producer writes each proxy's URL with its password replaced by ``***`` (a password is
never written to Redis), and each worker gives the full URLs (``--proxy-file`` or
``DISTCRAWL_PROXY__URLS``), matched to the spec's entries by their redacted form. A proxy
URL may end in ``#name``: the name labels its metrics, logs and health (default ``p<index>``).
Passwords are never printed: errors and logs show the redacted URL or the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from common.errors import ConfigError
from common.logging import get_logger
from common.settings import ProxySettings
from crawler.ssrf import is_public_address

__all__ = [
    "ProxyEndpoint",
    "check_proxy_addresses",
    "configured_proxies",
    "crawl_pool",
    "parse_proxy_url",
    "read_proxy_file",
]

log = get_logger(__name__)

SCHEMES = {"http": "http", "https": "https", "socks5": "socks5", "socks5h": "socks5"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_REDACTED = "***"


@dataclass(frozen=True, slots=True)
class ProxyEndpoint:
    """One proxy of the pool. ``password`` is kept out of repr (and so out of tracebacks)."""

    name: str
    scheme: str  # http | https | socks5
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    named: bool = False  # the name came from the URL's #fragment

    @property
    def redacted(self) -> str:
        """The URL fit for Redis, logs and errors: any password is ``***``."""
        return self._url(_REDACTED) + (f"#{self.name}" if self.named else "")

    @property
    def url(self) -> str:
        """The URL with its credentials, for the connection only."""
        return self._url(self.password)

    def _url(self, password: str | None) -> str:
        """The URL with ``password`` written where the password is, if there is one."""
        user = ""
        if self.username is not None:
            user = self.username + (f":{password}" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"

    def describe(self) -> str:
        return f"proxy {self.name} ({self.redacted})"


def _redact_text(text: str) -> str:
    """A best-effort redaction of a URL that did not parse: nothing between ':' and '@'."""
    return re.sub(r"(://[^:/@#]*):[^@/#]*@", r"\1:***@", text)


def parse_proxy_url(text: str, index: int, where: str = "") -> ProxyEndpoint:
    """The endpoint of one proxy URL (``scheme://[user[:password]@]host:port[#name]``)."""
    text = text.strip()
    shown = _redact_text(text)
    label = f"invalid proxy {where or f'#{index + 1}'} ({shown})"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{label}: {_redact_text(str(exc))}") from None
    scheme = SCHEMES.get(parts.scheme.lower())
    if "://" not in text or scheme is None:
        raise ConfigError(f"{label}: use http://, https:// or socks5:// URLs")
    if not parts.hostname:
        raise ConfigError(f"{label}: no host")
    if port is None:
        raise ConfigError(f"{label}: give the port (host:port)")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{label}: a proxy URL has no path or query")
    name = parts.fragment or f"p{index}"
    if not _NAME.match(name):
        raise ConfigError(f"{label}: a #name is 1-32 letters, digits, '.', '_' or '-'")
    return ProxyEndpoint(
        name=name,
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        named=bool(parts.fragment),
    )


def read_proxy_file(path: str) -> list[tuple[int, str]]:
    """The proxy URLs of a file with their line numbers: one a line; blank lines and ``#``
    comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the proxy file {path}: {exc}") from exc
    lines = enumerate(text.splitlines(), 1)
    return [(n, s) for n, line in lines if (s := line.strip()) and not s.startswith("#")]


def configured_proxies(settings: ProxySettings) -> list[ProxyEndpoint]:
    """This process's proxies: ``urls`` then the file's lines, parsed, names unique."""
    texts = [(u.get_secret_value(), f"#{i + 1}") for i, u in enumerate(settings.urls)]
    if settings.file:
        texts += [(t, f"{settings.file}:{n}") for n, t in read_proxy_file(settings.file)]
    pool = [parse_proxy_url(t, i, where) for i, (t, where) in enumerate(texts)]
    return _unique(pool)


def _unique(pool: list[ProxyEndpoint]) -> list[ProxyEndpoint]:
    names: set[str] = set()
    urls: set[str] = set()
    for p in pool:
        if p.name in names:
            raise ConfigError(f"two proxies are named {p.name!r}: names must be unique")
        if p.redacted in urls:
            raise ConfigError(f"{p.describe()} is given twice")
        names.add(p.name)
        urls.add(p.redacted)
    return pool


def crawl_pool(spec_entries: list[str], given: list[ProxyEndpoint]) -> list[ProxyEndpoint]:
    """The crawl's pool (its spec's entries, in order) with the credentials this worker gives.

    A spec entry with a password needs this worker to give its full URL; a worker's proxy that
    is not in the crawl's pool is an error (the pool is the crawl's, set by its producer)."""
    by_url = {p.redacted: p for p in given}
    pool = []
    for i, entry in enumerate(spec_entries):
        declared = parse_proxy_url(entry, i, f"#{i + 1} of the crawl's spec")
        mine = by_url.pop(declared.redacted, None)
        if mine is None and declared.password is not None:
            raise ConfigError(
                f"{declared.describe()} of the crawl needs its password on this worker: give "
                "its full URL with --proxy-file F or DISTCRAWL_PROXY__URLS"
            )
        pool.append(replace(mine or declared, name=declared.name, named=declared.named))
    if by_url:
        extra = ", ".join(by_url)
        if not spec_entries:
            raise ConfigError(
                f"the crawl has no proxy pool, and this worker gives {extra}: the pool is the "
                "crawl's, set by `distcrawl produce --proxy-file F` when it is created"
            )
        raise ConfigError(
            f"{extra} is not in the crawl's proxy pool ({', '.join(spec_entries)}): the pool "
            "is the crawl's, set when it was produced"
        )
    return pool


async def check_proxy_addresses(pool: list[ProxyEndpoint], *, allow_private: bool) -> None:
    """Refuse proxies on loopback, private or link-local addresses unless allowed (a proxy
    pointed at the metadata service or an internal host is an SSRF of its own)."""
    if allow_private:
        return
    loop = asyncio.get_running_loop()
    for proxy in pool:
        try:
            ipaddress.ip_address(proxy.host)
            addresses = [proxy.host]
        except ValueError:
            try:
                infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
            except OSError as exc:  # it may resolve later; its fetches fail and back it off
                log.warning("proxy_unresolved", proxy=proxy.name, error=str(exc))
                continue
            addresses = [str(info[4][0]) for info in infos]
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise ConfigError(
                f"{proxy.describe()} is on a non-public address ({private[0]}): "
                "give --allow-private-proxy to use it"
            )
