"""The extractive fallback summarizer: examples, limits, and properties checked with hypothesis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from summarizer.extractive import (
    ELLIPSIS,
    MAX_INPUT_CHARS,
    normalize_text,
    split_sentences,
    summarize_extractive,
)

# One topic (Redis) dominates; the other sentences are about something else entirely.
REDIS_TEXT = (
    "The weather in Paris was pleasant last weekend, with sunny skies and a light breeze. "
    "Redis is an in-memory data store used as a database, cache and message broker. "
    "Many people enjoy long walks along the river after a good lunch. "
    "Redis supports data structures such as strings, hashes, lists, sets and sorted sets. "
    "A local bakery won a prize for its croissants this spring. "
    "Because Redis keeps data in memory, Redis reads and writes are extremely fast. "
    "The museum will stay open late on Thursdays during the summer."
)
REDIS_SENTENCES = split_sentences(REDIS_TEXT)
ON_TOPIC = [s for s in REDIS_SENTENCES if "Redis" in s]


def test_the_example_text_splits_into_its_seven_sentences() -> None:
    assert len(REDIS_SENTENCES) == 7
    assert len(ON_TOPIC) == 3


def test_picks_the_sentences_about_the_title_topic_in_original_order() -> None:
    summary = summarize_extractive(REDIS_TEXT, title="Redis: an in-memory data store")
    assert summary == " ".join(ON_TOPIC)


def test_the_dominant_topic_wins_even_without_a_title() -> None:
    assert summarize_extractive(REDIS_TEXT) == " ".join(ON_TOPIC)


def test_the_title_steers_the_choice() -> None:
    summary = summarize_extractive(REDIS_TEXT, title="croissants bakery prize", max_sentences=1)
    assert summary == "A local bakery won a prize for its croissants this spring."


def test_output_keeps_the_original_order() -> None:
    # The best sentence comes last in the text; it must still come last in the summary.
    text = (
        "Gardens need water in the dry months of the year. "
        "Some gardeners collect rain water in large barrels. "
        "Tomatoes and tomato plants need tomato care: tomatoes, tomatoes, tomatoes everywhere."
    )
    sentences = split_sentences(text)
    summary = summarize_extractive(text, title="tomatoes", max_sentences=2)
    picked = [s for s in sentences if s in summary]
    assert len(picked) == 2
    assert picked[-1] == sentences[-1]
    assert summary == " ".join(picked)


@pytest.mark.parametrize("max_sentences", [1, 2, 3, 5])
def test_respects_max_sentences(max_sentences: int) -> None:
    summary = summarize_extractive(REDIS_TEXT, max_sentences=max_sentences, max_chars=10_000)
    assert len(split_sentences(summary)) == min(max_sentences, len(REDIS_SENTENCES))


def test_cuts_to_max_chars_on_a_word_boundary_with_an_ellipsis() -> None:
    full = summarize_extractive(REDIS_TEXT, max_chars=10_000)
    for max_chars in range(40, len(full), 7):
        cut = summarize_extractive(REDIS_TEXT, max_chars=max_chars)
        assert len(cut) <= max_chars
        assert cut.endswith(ELLIPSIS)
        kept = cut.removesuffix(ELLIPSIS)
        assert full.startswith(kept)
        assert len(kept) >= max_chars - 25  # no word of this text is that long
        # Whole words only: what follows in the full summary is a space or trailing punctuation.
        assert full[len(kept)] in " ,;:"


def test_a_summary_that_fits_is_not_cut() -> None:
    full = summarize_extractive(REDIS_TEXT, max_chars=10_000)
    assert summarize_extractive(REDIS_TEXT, max_chars=len(full)) == full
    assert not full.endswith(ELLIPSIS)


def test_one_huge_token_is_cut_hard() -> None:
    summary = summarize_extractive("x" * 5_000, max_chars=100)
    assert summary == "x" * 99 + ELLIPSIS


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \r\n", "\u2028\u3000\xa0", "\x00\x01\u200b"])
def test_empty_or_blank_text_gives_an_empty_summary(text: str) -> None:
    assert summarize_extractive(text) == ""
    assert split_sentences(text) == []


@pytest.mark.parametrize(("max_sentences", "max_chars"), [(0, 600), (-1, 600), (3, 0), (3, -5)])
def test_non_positive_limits_give_an_empty_summary(max_sentences: int, max_chars: int) -> None:
    assert summarize_extractive(REDIS_TEXT, max_sentences=max_sentences, max_chars=max_chars) == ""


def test_text_without_punctuation_gives_a_bounded_summary() -> None:
    words = [f"word{i % 40}" for i in range(600)]
    text = " ".join(words)
    pseudo = split_sentences(text)
    assert len(pseudo) == 24
    assert all(len(p.split()) == 25 for p in pseudo)
    summary = summarize_extractive(text, max_sentences=2, max_chars=10_000)
    assert 0 < len(summary.split()) <= 50
    assert summary in text
    assert len(summarize_extractive(text, max_chars=120)) <= 120


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "The price rose 3.5 percent, e.g. in Europe. Dr. Smith agreed.",
            ["The price rose 3.5 percent, e.g. in Europe.", "Dr. Smith agreed."],
        ),
        (
            "J. R. R. Tolkien wrote it. See No. 5 and Fig. 3.",
            ["J. R. R. Tolkien wrote it.", "See No. 5 and Fig. 3."],
        ),
        ("Is it? Yes! It is... Really.", ["Is it?", "Yes!", "It is...", "Really."]),
        ("He said “stop.” Then he left.", ["He said “stop.”", "Then he left."]),
        ("Wait... what happened here?", ["Wait... what happened here?"]),
        ("Wait... über alles, e.g. école.", ["Wait... über alles, e.g. école."]),
        ("Heading\nA line of text. Another one.", ["Heading", "A line of text.", "Another one."]),
        ("- first item\n* second item\n1. third item", ["first item", "second item", "third item"]),
        (
            "a sentence that was hard\nwrapped by an editor.",
            ["a sentence that was hard wrapped by an editor."],
        ),
        ("中文句子。第二句！", ["中文句子。", "第二句！"]),
    ],
)
def test_sentence_splitting(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_abbreviations_and_decimals_stay_in_one_sentence_of_a_summary() -> None:
    sentence = "The price rose 3.5 percent, e.g. in Europe."
    assert summarize_extractive(sentence) == sentence


def test_repeated_boilerplate_counts_once() -> None:
    text = "\n".join(["Subscribe to our newsletter for weekly crawler news."] * 5 + [REDIS_TEXT])
    summary = summarize_extractive(text, title="crawler newsletter")
    assert summary.count("Subscribe to our newsletter") == 1
    assert summary.startswith("Subscribe to our newsletter")


def test_short_fragments_only_still_give_a_summary() -> None:
    assert summarize_extractive("Contact us\nAbout\nImprint", max_sentences=2) == "Contact us About"


# Many near-ties: only the tie-break by position makes the choice stable.
TIED_TEXT = "\n".join(f"Line {i} is on topic {i % 7} and topic {i % 3} today." for i in range(300))


def test_ties_go_to_the_earlier_sentence() -> None:
    # Five sentences of stop words only, then five that score exactly alike.
    filler = "This is what it is. That was all there was. It is as it was. So it is, so it was. "
    filler += "We were all here with them."
    tied = [f"{fruit} grow on trees." for fruit in ("Apples", "Pears", "Plums", "Figs", "Limes")]
    summary = summarize_extractive(" ".join([filler, *tied]), max_sentences=2)
    assert summary == "Apples grow on trees. Pears grow on trees."


def test_is_deterministic() -> None:
    results = {summarize_extractive(TIED_TEXT, title="topic 5") for _ in range(5)}
    assert len(results) == 1
    assert results.pop()


def test_is_deterministic_across_hash_seeds() -> None:
    code = (
        "import sys; from summarizer.extractive import summarize_extractive as s; "
        "sys.stdout.write(s(sys.stdin.read(), title='topic 5'))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            input=TIED_TEXT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert outputs == {summarize_extractive(TIED_TEXT, title="topic 5")}


def test_only_the_first_max_input_chars_are_read() -> None:
    head = REDIS_TEXT + " "
    tail = "Zebras graze on zebra grass while zebras watch other zebras. " * 10
    text = head + "x" * (MAX_INPUT_CHARS - len(head)) + " " + tail
    assert "Zebras" not in summarize_extractive(text, title="zebras", max_sentences=10)


def test_huge_and_odd_inputs_do_not_raise() -> None:
    odd = ["abc def. " * 600_000, "a" * 5_000_000, ". " * 200_000, "\ud800 lone surrogate", "_" * 9]
    for text in odd:
        assert len(summarize_extractive(text, max_chars=300)) <= 300


def _joins_some_in_order(full: str, sentences: list[str]) -> bool:
    """Whether `full` is some of `sentences`, in their order, joined with single spaces."""
    reachable = {0}  # offsets in `full` where the next joined sentence may start
    for sentence in sentences:
        for start in list(reachable):
            end = start + len(sentence)
            if full.startswith(sentence, start) and end == len(full):
                reachable.add(end)
            elif full.startswith(sentence + " ", start):
                reachable.add(end + 1)
    return len(full) in reachable


_PIECES = st.one_of(
    st.text(),
    st.sampled_from(
        [
            ". ",
            "! ",
            "? ",
            "...",
            "\n",
            "\r\n",
            "\n\n",
            "- ",
            "e.g. ",
            "Dr. ",
            "3.5",
            "…",
            "。",
            " the ",
            "Redis ",
            "data ",
            "Store ",
            "_",
            "\t",
            "\x00",
            "\u200b",
            "\u2028",
            "“",
            "” ",
        ]
    ),
    st.lists(st.sampled_from(["alpha", "beta", "gamma", "the", "of"]), max_size=30).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(_PIECES, max_size=40).map("".join),
    title=st.text(max_size=30),
    max_sentences=st.integers(1, 5),
    max_chars=st.integers(1, 400),
)
@example(text="A b c d. E f g h.", title="", max_sentences=1, max_chars=1)
@example(text="Contact us\nContact us now please", title="", max_sentences=1, max_chars=400)
def test_never_raises_and_returns_only_sentences_of_the_input(
    text: str, title: str, max_sentences: int, max_chars: int
) -> None:
    normalized = normalize_text(text)
    sentences = split_sentences(text)
    assert all(sentence and sentence in normalized for sentence in sentences)

    summary = summarize_extractive(
        text, title=title, max_sentences=max_sentences, max_chars=max_chars
    )
    assert len(summary) <= max_chars  # within the brief's max_chars + 1: the "…" is counted

    # Before any cut: at most max_sentences of the input's sentences, in their original order.
    full = summarize_extractive(text, title=title, max_sentences=max_sentences, max_chars=10**9)
    assert _joins_some_in_order(full, sentences)
    assert summary == full or (
        summary.endswith(ELLIPSIS) and full.startswith(summary.removesuffix(ELLIPSIS))
    )
