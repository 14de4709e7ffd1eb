"""Main text (the cheap whitespace collapse, the cap applied before it) and UTF-8 bodies handed
to the parser as bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.fetch import FetchResult
from crawler.parse import _capped_text, _clean, parse_html

_spaces = [" ", "  ", "\n", "\n        ", "\t", "\r\n", "\xa0", "\u3000", "\u2009", "\x1f", "\x85"]
_texty = st.lists(
    st.one_of(st.sampled_from(_spaces), st.text(max_size=6), st.sampled_from(["word", "é—“x”"])),
    max_size=40,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_texty)
def test_clean_is_split_and_join(text: str) -> None:
    assert _clean(text) == " ".join(text.split())


@settings(max_examples=500, deadline=None)
@given(_texty, st.integers(min_value=1, max_value=60))
def test_capping_before_cleaning_changes_nothing(text: str, cap: int) -> None:
    capped, chars = _capped_text(text, cap)
    full = " ".join(text.split())
    assert capped == full[:cap]
    assert chars >= len(full)  # exact below the cap, the length before collapsing above it
    if len(full) <= cap:
        assert chars == len(full)


def test_the_cap_is_reached_through_long_whitespace_runs() -> None:
    text = ("word" + " " * 500 + "\n" * 300) * 50
    capped, chars = _capped_text(text, 100)
    assert capped == " ".join(text.split())[:100]
    assert len(capped) == 100
    assert chars == len(text)


def test_page_text_and_its_full_length() -> None:
    html = "<body><nav>menu</nav><p>one\n   two</p>" + "<p>x  y</p>" * 1000 + "</body>"
    page = parse_html(html, max_text_chars=100)
    assert page.text.startswith("one two x y x y")
    assert len(page.text) == 100
    assert page.text_chars > 4000
    small = parse_html("<p>one\n   two</p>", max_text_chars=100)
    assert (small.text, small.text_chars) == ("one two", 7)


def _result(body: bytes, charset: str | None) -> FetchResult:
    return FetchResult("http://a.com/", "http://a.com/", 200, "text/html", charset, body, False, 1)


def test_utf8_bodies_go_to_the_parser_as_bytes_with_the_same_result() -> None:
    body = "<title>caf\u00e9 \u2014</title><p>bad \xff bytes</p><a href=/x>x</a>".encode(
        "utf-8", "surrogateescape"
    )
    body = body.replace(b"\xc3\xbf", b"\xff")  # an invalid byte in the middle
    for charset in ("utf-8", "UTF8"):
        assert isinstance(_result(body, charset).markup(), bytes)
    sniffed = _result(b"<meta charset=utf-8>" + body, None)
    assert isinstance(sniffed.markup(), bytes)
    for result in (_result(body, "utf-8"), sniffed):
        as_bytes, as_text = parse_html(result.markup(), 100), parse_html(result.text(), 100)
        assert (as_bytes.title, as_bytes.text, as_bytes.links) == (
            as_text.title,
            as_text.text,
            as_text.links,
        )
    assert as_bytes.title == "caf\u00e9 \u2014"
    assert "\ufffd" in as_bytes.text


def test_other_bodies_are_decoded_first() -> None:
    assert (
        _result("<p>caf\u00e9</p>".encode("cp1252"), "windows-1252").markup() == "<p>caf\u00e9</p>"
    )
    assert isinstance(_result(b"<p>x</p>", None).markup(), str)  # nothing declared
    assert isinstance(_result(b"\xef\xbb\xbf<p>x</p>", "utf-8").markup(), str)  # a BOM
