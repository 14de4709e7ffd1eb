"""Main text (cut by the crawler, whitespace collapsed by the doc's reader, cheaply), the text
hash revisits compare, and UTF-8 bodies handed to the parser as bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from common.serde import Doc, decode_doc, encode_doc
from common.text import collapse_whitespace
from crawler.fetch import FetchResult
from crawler.parse import parse_html, text_hash

_spaces = [" ", "  ", "\n", "\n        ", "\t", "\r\n", "\xa0", "\u3000", "\u2009", "\x1f", "\x85"]
_texty = st.lists(
    st.one_of(st.sampled_from(_spaces), st.text(max_size=6), st.sampled_from(["word", "é—“x”"])),
    max_size=40,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_texty)
def test_clean_is_split_and_join(text: str) -> None:
    assert collapse_whitespace(text) == " ".join(text.split())


def test_page_text_is_cut_before_collapsing_and_docs_read_it_collapsed() -> None:
    """The crawler keeps the main text as the parser gives it (text nodes stripped), cut at
    the doc's budget; a doc's reader gets it collapsed, the same as collapsing first would."""
    html = "<body><nav>menu</nav><p>one\n   two</p>" + "<p>x \t y</p>" * 1000 + "</body>"
    page = parse_html(html, max_text_chars=100)
    assert page.text.startswith("one\n   two x \t y x")
    assert len(page.text) == 100
    assert page.text_chars == len("one\n   two") + 1000 * len(" x \t y")
    small = parse_html("<p>\n  one\n   two </p>", max_text_chars=100)
    assert (small.text, small.text_chars) == ("one\n   two", 10)
    doc = Doc(url="http://a.com/", fp="f", title="t", text=page.text, fetched_at=0.0)
    assert decode_doc(encode_doc(doc)).text == collapse_whitespace(page.text)


@settings(max_examples=300, deadline=None)
@given(_texty)
def test_docs_are_read_with_whitespace_collapsed(text: str) -> None:
    for body in (text, text * 60):  # under and over the size that is compressed
        doc = Doc(url="http://a.com/", fp="f", title="t", text=body, fetched_at=0.0)
        assert decode_doc(encode_doc(doc)).text == " ".join(body.split())


def _hash(html: str) -> str:
    page = parse_html(html, max_text_chars=50, hash_text=True)
    assert len(page.text_hash) == 16
    assert int(page.text_hash, 16) >= 0  # hex
    return page.text_hash


def test_the_text_hash_sees_text_not_markup() -> None:
    """Same title and main text in other markup (attributes, tags around the same text nodes,
    boilerplate): the same hash. Any change of the text, even past the cap, or of the title:
    another."""
    body = "<p>one two</p>" + "<p>filler</p>" * 200 + "<p>the end</p>"
    page = f"<title>T</title><nav>menu</nav><main>{body}</main>"
    same = (
        f"<title>T</title><header>new ad</header><script>x=1</script>"
        f'<div class="x">{body.replace("<p>", "<p id=a> ")}</div><footer>2027</footer>'
    )
    assert _hash(page) == _hash(same)
    for other in (
        page.replace("the end", "the End"),  # far past the 50 characters of text kept
        page.replace("one two", "one  two!"),
        page.replace("<title>T", "<title>U"),
        page.replace("</main>", "x</main>"),
    ):
        assert _hash(other) != _hash(page), other[-60:]


def test_the_text_hash_keeps_title_and_text_apart() -> None:
    assert text_hash("ab", "c") != text_hash("a", "bc")
    assert text_hash("", "\ud800") != text_hash("", "\ufffd")  # (lone surrogates hash too)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=5))
def test_different_texts_hash_apart(a: str, b: str, title: str) -> None:
    assert (text_hash(title, a) == text_hash(title, b)) is (a == b)


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
