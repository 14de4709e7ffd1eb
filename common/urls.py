"""URL canonicalization and fingerprints: pure functions, no I/O.

Canonical form: lower-case scheme and host (IDNA-encoded), no user info, no default port, no
fragment, dot segments resolved, unsafe characters percent-encoded, query parameters sorted
with tracking parameters removed. Path case is kept (servers may treat it as significant).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import quote, urljoin, urlsplit

from common.errors import InvalidUrl

__all__ = [
    "DEFAULT_TRACKING_PARAMS",
    "MAX_URL_LENGTH",
    "ParamFilter",
    "canonicalize",
    "fingerprint",
    "host_matches",
    "host_of",
    "netloc_of",
]

MAX_URL_LENGTH = 8192
DEFAULT_TRACKING_PARAMS = (
    "utm_*",
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "yclid",
    "igshid",
    "_ga",
    "_gl",
    "ref_src",
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_STRIP_CHARS = re.compile(r"[\t\n\r]")
_PLAIN_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]*[a-z0-9_])?\.?$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._~!$&'()*+,;=:@-]*$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = "=/?:@!$'()*+,;-._~%"
# Already canonical: lower-case http(s), a plain lower-case host, maybe a port, a path of safe
# characters, no query, no fragment. Most links on most pages look like this.
_CANONICAL = re.compile(
    r"^(https?)://[a-z0-9](?:[a-z0-9_.-]*[a-z0-9_])?(:[1-9][0-9]{0,4})?"
    r"(/[A-Za-z0-9/._~!$&'()*+,;=:@-]*)$"
)


class ParamFilter:
    """Decides which query parameters are dropped: exact names and ``prefix*`` patterns."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, patterns: Iterable[str] = DEFAULT_TRACKING_PARAMS) -> None:
        pats = [p.lower() for p in patterns]
        self._exact = frozenset(p for p in pats if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in pats if p.endswith("*"))

    def drops(self, name: str) -> bool:
        low = name.lower()
        return low in self._exact or (bool(self._prefixes) and low.startswith(self._prefixes))


_DEFAULT_FILTER = ParamFilter()


def canonicalize(url: str, base: str | None = None, params: ParamFilter = _DEFAULT_FILTER) -> str:
    """The canonical form of ``url`` (resolved against ``base``); raises InvalidUrl."""
    if base is not None and url[:1] == "/" and url[1:2] != "/":
        origin_end = base.find("/", base.find("://") + 3) if "://" in base else -1
        url = (base if origin_end < 0 else base[:origin_end]) + url  # what urljoin would do
        base = None
    if len(url) <= MAX_URL_LENGTH and (base is None or url.startswith(("http://", "https://"))):
        fast = _CANONICAL.match(url)
        if fast is not None and "/." not in url and _port_kept(fast.group(1), fast.group(2)):
            return url
    url = _STRIP_CHARS.sub("", url.strip())
    if not url:
        raise InvalidUrl("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        if base is not None:
            url = urljoin(base, url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"malformed URL {_clip(url)!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        what = f"unsupported scheme {scheme!r}" if scheme else "no scheme (expected http/https)"
        raise InvalidUrl(f"{what} in {_clip(url)!r}")
    host = _normalize_host(parts.hostname, url)
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalize_path(parts.path)
    query = _normalize_query(parts.query, params)
    canonical = f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"
    if len(canonical) > MAX_URL_LENGTH:  # resolving against the base or escaping grew it
        raise InvalidUrl(f"URL longer than {MAX_URL_LENGTH} characters")
    return canonical


def _port_kept(scheme: str, port: str | None) -> bool:
    if port is None:
        return True
    number = int(port[1:])
    return number <= 65535 and number != _DEFAULT_PORTS[scheme]


def fingerprint(canonical_url: str) -> str:
    """A short stable hash of a canonical URL: 16 hex characters (64 bits)."""
    return hashlib.blake2b(canonical_url.encode(), digest_size=8).hexdigest()


def netloc_of(canonical_url: str) -> str:
    """``host[:port]`` of a canonical URL: the unit of politeness (one queue, one bucket)."""
    start = canonical_url.index("://") + 3
    end = canonical_url.find("/", start)
    return canonical_url[start:] if end < 0 else canonical_url[start:end]


def host_of(canonical_url: str) -> str:
    """The host of a canonical URL, without the port (IPv6 literals keep their brackets)."""
    netloc = netloc_of(canonical_url)
    if netloc.startswith("["):
        return netloc[: netloc.index("]") + 1]
    return netloc.split(":", 1)[0]


def host_matches(host: str, domains: Iterable[str]) -> bool:
    """True if ``host`` (no port) is one of ``domains`` or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in domains)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _normalize_host(host: str | None, url: str) -> str:
    if not host:
        raise InvalidUrl(f"no host in {_clip(url)!r}")
    if ":" in host:  # IPv6 literal; urlsplit already removed the brackets
        return f"[{host}]"
    if not _PLAIN_HOST.match(host):
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidUrl(f"invalid host {_clip(host)!r}") from exc
        if not _PLAIN_HOST.match(host.lower()):
            raise InvalidUrl(f"invalid host {_clip(host)!r}")
        host = host.lower()
    return host.rstrip(".")


def _normalize_path(path: str) -> str:
    if not path:
        return "/"
    if _SAFE_PATH.match(path) and "/." not in path:
        return path
    if "/." in path or path.startswith("."):
        path = _remove_dot_segments(path)
    path = _BAD_PERCENT.sub("%25", path)
    path = quote(path, safe=_PATH_SAFE)
    return path if path.startswith("/") else "/" + path


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for seg in segments:
        if seg == "..":
            if len(out) > 1:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def _normalize_query(query: str, params: ParamFilter) -> str:
    if not query:
        return ""
    kept = [
        quote(_BAD_PERCENT.sub("%25", pair), safe=_QUERY_SAFE)
        for pair in query.split("&")
        if pair and not params.drops(pair.split("=", 1)[0])
    ]
    kept.sort()  # after encoding, so that the canonical form is a fixed point
    return "&".join(kept)
