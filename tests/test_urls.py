"""URL canonicalization: examples, and properties checked with hypothesis."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InvalidUrl
from common.urls import (
    MAX_URL_LENGTH,
    LinkResolver,
    ParamFilter,
    canonicalize,
    fingerprint,
    host_of,
    netloc_of,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (
            "HTTP://Example.COM:80/a/./b/../c?b=2&a=1&utm_source=x#frag",
            "http://example.com/a/c?a=1&b=2",
        ),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/X", "https://example.com:8443/X"),
        ("http://user:pw@example.com/", "http://example.com/"),
        ("http://example.com./a", "http://example.com/a"),
        ("https://例え.jp/パス?q=a b", "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?q=a%20b"),
        ("http://[::1]:8080/", "http://[::1]:8080/"),
        ("http://a.com/%zz", "http://a.com/%25zz"),
        ("http://a.com/?fbclid=1&gclid=2", "http://a.com/"),
        ("  http://a.com/x\n", "http://a.com/x"),
    ],
)
def test_examples(raw: str, canonical: str) -> None:
    assert canonicalize(raw) == canonical


@pytest.mark.parametrize(
    ("href", "base", "canonical"),
    [
        ("/p/1.html", "http://a.com/dir/page", "http://a.com/p/1.html"),
        ("p/1.html", "http://a.com/dir/page", "http://a.com/dir/p/1.html"),
        ("../up", "http://a.com/dir/sub/page", "http://a.com/dir/up"),
        ("//b.com/x", "https://a.com/", "https://b.com/x"),
        ("/../x", "http://a.com/b", "http://a.com/x"),
        ("?q=1", "http://a.com/p", "http://a.com/p?q=1"),
        ("/x", "http://a.com:8080/p", "http://a.com:8080/x"),
    ],
)
def test_relative_links(href: str, base: str, canonical: str) -> None:
    assert canonicalize(href, base) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "mailto:a@b.c",
        "javascript:void(0)",
        "ftp://a.com/",
        "http://",
        "http://:80/",
        "http://a.com:99999/",
        "http://exa mple.com/",
        "//no-scheme.com/x",
        "x" * 9000,
    ],
)
def test_invalid(bad: str) -> None:
    with pytest.raises(InvalidUrl):
        canonicalize(bad)


def test_custom_tracking_params() -> None:
    params = ParamFilter(["sid", "ref_*"])
    assert canonicalize("http://a.com/?sid=1&ref_x=2&keep=3", params=params) == (
        "http://a.com/?keep=3"
    )


def test_netloc_and_host() -> None:
    assert netloc_of("http://a.com:8080/x") == "a.com:8080"
    assert host_of("http://a.com:8080/x") == "a.com"
    assert host_of("http://[::1]:8080/x") == "[::1]"


_host = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}(\.[A-Za-z]{2,5}){1,2}\.?", fullmatch=True)
_path = st.lists(
    st.one_of(st.text("abcXYZ019-_.~%é ", max_size=8), st.sampled_from([".", "..", ""])),
    max_size=5,
).map(lambda parts: "/" + "/".join(parts))
_query = st.lists(
    st.tuples(st.sampled_from(["a", "b", "utm_source", "Z", "q"]), st.text("xy1 é", max_size=4)),
    max_size=4,
)
_url = st.builds(
    lambda scheme, host, port, path, query, frag: (
        f"{scheme}://{host}{port}{path}"
        + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
        + ("#" + frag if frag else "")
    ),
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    _host,
    st.sampled_from(["", ":80", ":443", ":8080", ":1"]),
    _path,
    _query,
    st.text("ab", max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(_url)
def test_canonical_form_is_a_fixed_point(url: str) -> None:
    once = canonicalize(url)
    assert canonicalize(once) == once
    assert fingerprint(canonicalize(once)) == fingerprint(once)


@settings(max_examples=400, deadline=None)
@given(_url, st.sampled_from(["/p/1.html", "/a/./b/../c", "/x?b=1&a=2", "/é", "/"]))
def test_fast_paths_agree_with_urljoin(base: str, href: str) -> None:
    """The root-relative shortcut and the already-canonical shortcut change nothing."""
    try:
        expected = canonicalize(urljoin(base, href))
    except InvalidUrl:
        with pytest.raises(InvalidUrl):
            canonicalize(href, base)
        return
    assert canonicalize(href, base) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_anything_but_invalid_url(text: str) -> None:
    try:
        result = canonicalize(text, "http://base.example/dir/")
    except InvalidUrl:
        return
    assert result.startswith(("http://", "https://"))


@pytest.mark.parametrize("base", [None, "http://example.org/dir/page.html"])
@pytest.mark.parametrize("path", ["/" + "x" * 10_000, "/grows/" + "\u00e9" * 3_000])
def test_urls_over_the_length_limit_are_refused(base: str | None, path: str) -> None:
    url = path if base else "http://example.org" + path
    with pytest.raises(InvalidUrl, match="longer than"):
        canonicalize(url, base)
    assert len(canonicalize("http://example.org/" + "y" * 2_000, base)) < MAX_URL_LENGTH


_segment = st.one_of(
    st.sampled_from(["a", "p", "x.html", ".", "..", "", "B", "%41", "é", "q?x=1", "f#g", "c:d"]),
    st.text("ab./:?#%é ", max_size=4),
)
_href = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(
        ["", "/", "./", "../", "../../", "//h.org/", "http://a.com/", "HTTP://A.com:80/"]
    ),
    st.lists(_segment, max_size=4),
)
_base = st.one_of(
    _url,
    st.sampled_from(
        [
            "http://a.com",
            "http://a.com/p/3.html",
            "http://a.com:8080/x/y/",
            "http://a.com?q=1/2",
            "http://a.com/p#f/x",
            "http://a.com/a/./b",
            "http://a.com//p/x",
        ]
    ),
)


@settings(max_examples=1000, deadline=None)
@given(_base, _href)
def test_link_resolver_agrees_with_canonicalize(base: str, href: str) -> None:
    """The per-page resolver (base split once, string fast paths) changes nothing."""
    try:
        expected = canonicalize(href, base)
    except InvalidUrl:
        with pytest.raises(InvalidUrl):
            LinkResolver(base).canonicalize(href)
        return
    assert LinkResolver(base).canonicalize(href) == expected


@settings(max_examples=500, deadline=None)
@given(_base, _href, _base)
def test_a_canonical_url_resolves_to_itself_on_any_page(base: str, href: str, page: str) -> None:
    """What lets admission skip resolving a link found verbatim in its cache of canonical
    URLs (crawler/admission.py)."""
    try:
        url = canonicalize(href, base)
    except InvalidUrl:
        return
    assert canonicalize(url, page) == url
    assert LinkResolver(page).canonicalize(url) == url
