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
    "LinkResolver",
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
# A relative path reference of plain characters: no scheme (":"), query, fragment or escape.
_PLAIN_RELATIVE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=@-][A-Za-z0-9/._~!$&'()*+,;=@-]*\Z")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = "=/?:@!$'()*+,;-._~%"
# Already canonical: lower-case http(s), a plain lower-case host, maybe a port, a path of safe
# characters, no query, no fragment. Most links on most pages look like this.
_HOST = r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9_])?"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# The port may not be the scheme's default one (checked here, so that one regex call decides).
_CANONICAL = re.compile(
    rf"(?:http://{_HOST}(?::(?!80(?:/|\Z)){_PORT})?|https://{_HOST}(?::(?!443(?:/|\Z)){_PORT})?)"
    r"/[A-Za-z0-9/._~!$&'()*+,;=:@-]*\Z"
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
    if base is not None:
        joined = _join_common(url, base)
        if joined is not None:
            url, base = joined, None
    if (
        len(url) <= MAX_URL_LENGTH
        and (base is None or url.startswith(("http://", "https://")))
        and _is_canonical(url)
    ):
        return url
    return _canonicalize_fully(url, base, params)


class LinkResolver:
    """Canonicalizes the links found on one page: ``resolver.canonicalize(href)`` equals
    ``canonicalize(href, base, params)``, but the base is split and checked once, so the common
    href forms cost a few string operations each."""

    __slots__ = ("_base", "_directory", "_origin", "_params")

    def __init__(self, base: str, params: ParamFilter = _DEFAULT_FILTER) -> None:
        self._base = base
        self._params = params
        self._origin = self._directory = ""
        split = _split_base(base)
        if split is not None and len(base) <= MAX_URL_LENGTH and _is_canonical("".join(split)):
            self._origin, self._directory = split

    def canonicalize(self, href: str) -> str:
        """The canonical form of ``href`` found on this page; raises InvalidUrl."""
        if self._origin:
            if href.startswith(("http://", "https://")):
                if len(href) <= MAX_URL_LENGTH and _CANONICAL.match(href) and "/." not in href:
                    return href  # _is_canonical(href), inlined: most links take this path
            else:
                path = _resolve_path(href, self._directory)
                if (
                    path is not None
                    and len(self._origin) + len(path) <= MAX_URL_LENGTH
                    and _SAFE_PATH.match(path)
                ):
                    return self._origin + path
        return canonicalize(href, self._base, self._params)


def _is_canonical(url: str) -> bool:
    """True if ``url`` is already in canonical form (the common case, checked in one regex)."""
    return _CANONICAL.match(url) is not None and "/." not in url


def _canonicalize_fully(url: str, base: str | None, params: ParamFilter) -> str:
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


def _join_common(href: str, base: str) -> str | None:
    """What urljoin(base, href) gives for the common href forms (``/x``, ``x``, ``./x``,
    ``../x``) written in plain characters; None for anything else.

    String operations only, several times faster than urljoin. The caller still checks that
    the result is canonical, so a base or href that is not plain (escapes, an upper-case host,
    a query...) takes the full path.
    """
    split = _split_base(base)
    if split is None:
        return None
    path = _resolve_path(href, split[1])
    return None if path is None else split[0] + path


def _resolve_path(href: str, directory: str) -> str | None:
    """The path of a path reference (``/x``, ``x``, ``./x``, ``../x``) found in ``directory``
    (a path up to its last "/", without dot or empty segments); None for any other form."""
    if href[:1] == "/":
        if href[1:2] == "/":  # a network-path reference: //host/path
            return None
        path = href
    elif _PLAIN_RELATIVE.match(href):  # refuses "", schemes, queries, fragments, escapes
        while href[:1] == ".":
            if href[:2] == "./":
                href = href[2:]
            elif href[:3] == "../":
                href = href[3:]
                directory = directory[: directory.rfind("/", 0, -1) + 1] or "/"
            else:  # ".", "..", ".name": rare, and urljoin's business
                return None
        path = directory + href
    else:
        return None
    if "/." in path or "//" in path:
        return None  # dot segments and empty segments: urljoin resolves and collapses them
    return path


def _split_base(base: str) -> tuple[str, str] | None:
    """``scheme://netloc`` and the directory (path up to its last "/") of a base URL; None
    if it has no ``://`` or its directory has dot or empty segments."""
    scheme_end = base.find("://")
    if scheme_end < 0:
        return None
    cut = len(base)
    for mark in "?#":  # the base's own query and fragment do not count
        at = base.find(mark, scheme_end, cut)
        if at >= 0:
            cut = at
    path_at = base.find("/", scheme_end + 3, cut)
    if path_at < 0:
        return base[:cut], "/"
    directory = base[path_at : base.rfind("/", path_at, cut) + 1]
    if "/." in directory or "//" in directory:
        return None
    return base[:path_at], directory


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
