"""Fuzzing the page pipeline: random bytes through charset decoding, parsing and link admission.

Property: for any body and any declared charset, decode -> parse -> canonicalize links never
raises anything but InvalidUrl (which admission counts as a rejection), and the text stays
within its cap. Hypothesis shrinks any failure to a minimal body.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import InvalidUrl
from common.urls import canonicalize
from crawler.fetch import decode_body
from crawler.parse import MAX_NESTING, flatten_deep_nesting, parse_html

pytestmark = pytest.mark.chaos

TAGS = [
    "<a href='",
    '<a href="',
    "'>",
    '">',
    "<base href='",
    "<meta charset='",
    "<title>",
    "</title>",
    "<script>",
    "</script>",
    "<!--",
    "-->",
    "<div>",
    "</div>",
    "<meta name='robots' content='",
    "<link rel='canonical' href='",
    "&#x",
    ";",
    "\x00",
    "\ufeff",
    "javascript:",
    "http://",
    "//",
    "../",
    "?",
    "#",
    "%",
    "\u00e9",
    "\U0001f600",
]
CHARSETS = st.sampled_from(
    [None, "utf-8", "latin-1", "cp1252", "utf-16", "shift_jis", "no-such-charset", "utf-7", ""]
)
html_like = st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=20)), max_size=60).map(
    "".join
)
bodies = st.one_of(st.binary(max_size=4000), html_like.map(lambda s: s.encode("utf-8", "replace")))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, charset=CHARSETS)
def test_any_body_decodes_parses_and_links_resolve_or_are_refused(
    body: bytes, charset: str | None
) -> None:
    text = decode_body(body, charset or None)
    page = parse_html(text, max_text_chars=500)
    assert len(page.text) <= 500
    base = "http://fuzz.example/dir/page.html"
    for link in page.links:
        try:
            url = canonicalize(link, base)
        except InvalidUrl:
            continue
        assert url.startswith(("http://", "https://"))
        assert canonicalize(url) == url  # canonical form is a fixed point


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_any_text_parses(text: str) -> None:
    parse_html(text, max_text_chars=100)


def test_deep_nesting_is_flattened_and_keeps_its_text() -> None:
    depth = 100_000
    html = "<title>deep</title>" + "<div>" * depth + "deep text" + "</div>" * depth
    flat = flatten_deep_nesting(html)
    assert flat.count("<div>") == MAX_NESTING
    page = parse_html(html, max_text_chars=100)
    assert (page.title, page.text) == ("deep", "deep text")


def test_big_shallow_pages_are_left_alone() -> None:
    rows = "".join(
        f"<li><a href='/p/{i}'>item {i}</a><div><span>{i}</span></div>" for i in range(5_000)
    )
    html = f"<ul>{rows}</ul>"
    assert html.count("<") > 10_000
    assert flatten_deep_nesting(html) == html
    assert len(parse_html(html, max_text_chars=100).links) == 5_000
