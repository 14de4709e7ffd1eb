"""Embedded extractive summarizer: pure Python, no network, no model files.

When no LLM API is configured, the summarizer stage still has to finish every document, so it
falls back to this: split the text into sentences, score them by the frequency of their content
words (with a bonus for words of the page title and for early sentences), and return the best
few in their original order. Deterministic, linear in the input, and total: any `str` gives a
summary (possibly empty), never an exception. Only the first `MAX_INPUT_CHARS` characters (and
at most 3,000 sentences of them) are read, so a huge page costs no more than a large one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, filterfalse, islice

__all__ = [
    "ELLIPSIS",
    "MAX_INPUT_CHARS",
    "normalize_text",
    "split_sentences",
    "summarize_extractive",
]

MAX_INPUT_CHARS = 200_000
ELLIPSIS = "…"

_MAX_TITLE_CHARS = 1_000
_MAX_SENTENCES = 3_000  # ~200 KB of prose; bounds the work on pathological input
_MIN_SENTENCE_TOKENS = 4
_MAX_SENTENCE_TOKENS = 80
_MAX_SENTENCE_CHARS = 1_000
_PSEUDO_SENTENCE_WORDS = 25
_TITLE_WEIGHT = 1.0
_POSITION_BONUS = 0.2  # the first sentence counts 20% more, fading out over _POSITION_WINDOW
_POSITION_WINDOW = 5

_STOP_WORDS = frozenset(
    (
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "however",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "let",
        "like",
        "may",
        "me",
        "might",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "neither",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "often",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "per",
        "rather",
        "same",
        "say",
        "says",
        "said",
        "shall",
        "she",
        "should",
        "since",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "though",
        "through",
        "thus",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "very",
        "via",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        # Single letters and digits carry no topic.
        *"abcdefghijklmnopqrstuvwxyz0123456789",
    )
)
# Followed by a capital, these still do not end a sentence ("Dr. Smith", "et al. Then").
_ABBREVIATIONS = frozenset(
    (
        "al",
        "approx",
        "ca",
        "cf",
        "dept",
        "dr",
        "est",
        "gen",
        "hon",
        "jr",
        "lt",
        "mr",
        "mrs",
        "ms",
        "mt",
        "prof",
        "rev",
        "sen",
        "sgt",
        "sr",
        "st",
        "vs",
    )
)
# These do not end a sentence when a number follows ("No. 5", "Fig. 3", "pp. 12").
_NUMBER_ABBREVIATIONS = frozenset(("art", "ch", "fig", "nn", "no", "nos", "p", "pp", "sec", "vol"))

# Control and zero-width characters, once str.split() has dealt with every kind of space.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_BULLET = re.compile(r"(?:[-*+•·▪‣◦●○■□➢➤►–—>]+|\(?\d{1,3}[.)]|\(?[a-z]\)) ")
# Sentence punctuation that may end a sentence. CJK marks need no space after them; the others
# need the one space a normalized line has, and no ASCII lower case after it (any other lower
# case is ruled out in _ends_sentence). A lone character class first lets re scan quickly.
_BOUNDARY = re.compile(
    r"[.!?…。！？]"
    r"(?:(?<=[。！？])[。！？]*[」』”’）]*|(?<=[.!?…])[.!?…]*[\"'”’»)\]]* (?![a-z]))"
)
_CLOSERS = "\"'”’»)] "
_TERMINAL = re.compile(r"[.!?…。！？]")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g, i.e, u.s, a.m
_NON_SPACE = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+")  # on text without "_": \w is faster than [^\W_]

# A sentence as the scorer sees it: its number of tokens, and its content words in order.
_Stats = tuple[int, tuple[str, ...]]


def normalize_text(text: str) -> str:
    """The text summaries are cut from: capped, one space between words, one newline between lines.

    Every kind of line break becomes ``\\n`` and every other run of white space one space; control
    characters become spaces and zero-width ones go; blank lines go; a hard-wrapped line that
    goes on in lower case is joined to the line before.
    """
    return "\n".join(_lines(text))


def split_sentences(text: str) -> list[str]:
    """The sentences the summarizer considers, in order; each is a substring of `normalize_text`.

    Splits at ``.``, ``!``, ``?`` (and their CJK forms) and at line breaks; drops list bullets;
    keeps abbreviations ("e.g.", "Dr."), initials and decimals inside their sentence. A long line
    without any sentence punctuation is cut into pseudo-sentences of about 25 words.
    """
    return list(islice(_sentences(text), _MAX_SENTENCES))


def summarize_extractive(
    text: str, *, title: str = "", max_sentences: int = 3, max_chars: int = 600
) -> str:
    """The `max_sentences` most representative sentences of `text`, in their original order.

    Joined with a space and cut to at most `max_chars` characters on a word boundary, ending in
    an ellipsis when cut. Empty or blank text, or a non-positive limit, gives ``""``.
    """
    if max_sentences < 1 or max_chars < 1:
        return ""
    sentences = split_sentences(text)
    stats = [_stats(sentence) for sentence in sentences]
    title_words = frozenset(_stats(title[:_MAX_TITLE_CHARS])[1])
    chosen = _choose(sentences, stats, title_words, max_sentences)
    return _trim(" ".join(sentences[i] for i in chosen), max_chars)


def _lines(text: str) -> Iterator[str]:
    paragraph: list[str] = []
    # splitlines() and split() are C loops over every Unicode line break and space.
    for raw in text[:MAX_INPUT_CHARS].splitlines():
        line = " ".join(raw.split())
        if not line.isprintable():
            line = " ".join(_ZERO_WIDTH.sub("", _CONTROL.sub(" ", line)).split())
        if paragraph and not (line and _continues(paragraph[-1], line)):
            yield " ".join(paragraph)
            paragraph = []
        if line:
            paragraph.append(line)
    if paragraph:
        yield " ".join(paragraph)


def _continues(previous: str, line: str) -> bool:
    """Whether `line` is the rest of a hard-wrapped sentence rather than a line of its own."""
    return (previous[-1].isalnum() or previous[-1] in ",;-") and line[0].islower()


def _sentences(text: str) -> Iterator[str]:
    for raw_line in _lines(text):
        bullet = _BULLET.match(raw_line)
        line = raw_line[bullet.end() :] if bullet else raw_line
        if line.count(" ") >= _MAX_SENTENCE_TOKENS and not _TERMINAL.search(line):
            yield from _chunk_words(line)
        else:
            yield from _split_line(line)


def _split_line(line: str) -> Iterator[str]:
    start = 0
    for match in _BOUNDARY.finditer(line):
        if _ends_sentence(line, match):
            piece = line[start : match.end()].strip()
            if piece:
                yield piece
            start = match.end()
    tail = line[start:].strip()
    if tail:
        yield tail


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    """Whether punctuation followed by a space ends a sentence, judged from its neighbours."""
    punctuation = match.group().rstrip(_CLOSERS)
    if punctuation[0] in "。！？":
        return True
    after = line[match.end() : match.end() + 1]
    if after.islower():  # "e.g. in Europe", "Wait... what"
        return False
    if punctuation != ".":
        return True
    # Only a few characters back: a boundary check must stay O(1) however long the line is.
    before = line[max(0, match.start() - 12) : match.start()]
    word = before.rsplit(" ", 1)[-1].lstrip("([{\"'“‘«").lower()
    if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return False
    if after.isdigit() and word in _NUMBER_ABBREVIATIONS:
        return False
    return _DOTTED.fullmatch(word) is None


def _chunk_words(line: str) -> Iterator[str]:
    spans = [match.span() for match in _NON_SPACE.finditer(line)]
    for first in range(0, len(spans), _PSEUDO_SENTENCE_WORDS):
        last = min(first + _PSEUDO_SENTENCE_WORDS, len(spans)) - 1
        yield line[spans[first][0] : spans[last][1]]


def _stats(sentence: str) -> _Stats:
    tokens = _TOKEN.findall(sentence.lower().replace("_", " "))
    return len(tokens), tuple(filterfalse(_STOP_WORDS.__contains__, tokens))


def _choose(
    sentences: Sequence[str], stats: Sequence[_Stats], title_words: frozenset[str], limit: int
) -> list[int]:
    """Indexes of the chosen sentences, in original order."""
    eligible = [
        i
        for i, (count, _) in enumerate(stats)
        if _MIN_SENTENCE_TOKENS <= count <= _MAX_SENTENCE_TOKENS
        and len(sentences[i]) <= _MAX_SENTENCE_CHARS
    ]
    if not eligible:
        # Only headings, fragments or run-ons: the first of them beat an empty summary.
        return [i for i, (count, _) in enumerate(stats) if count][:limit]
    weights = _word_weights(stats[i][1] for i in eligible)
    scores = {
        i: _score(stats[i], weights, title_words, position) for position, i in enumerate(eligible)
    }
    chosen: list[int] = []
    seen: set[tuple[str, ...]] = set()
    for i in sorted(eligible, key=lambda i: (-scores[i], i)):
        words = stats[i][1]
        if words not in seen:  # repeated boilerplate lines count once
            seen.add(words)
            chosen.append(i)
            if len(chosen) == limit:
                break
    return sorted(chosen)


def _word_weights(sentences: Iterable[tuple[str, ...]]) -> dict[str, float]:
    counts = Counter(chain.from_iterable(sentences))
    top = max(counts.values(), default=1)
    return {word: count / top for word, count in counts.items()}


def _score(
    stats: _Stats, weights: dict[str, float], title_words: frozenset[str], position: int
) -> float:
    count, words = stats
    relevance = sum(map(weights.__getitem__, words))
    if title_words:
        relevance += _TITLE_WEIGHT * sum(1 for word in words if word in title_words)
    early = max(0.0, 1.0 - position / _POSITION_WINDOW)
    return relevance / math.sqrt(count) * (1.0 + _POSITION_BONUS * early)


def _trim(summary: str, max_chars: int) -> str:
    if len(summary) <= max_chars:
        return summary
    limit = max_chars - len(ELLIPSIS)
    space = summary.rfind(" ", 0, limit + 1)
    # Cut at the last space unless that throws away more than half (one huge token).
    head = summary[:space] if space > 0 and space >= limit // 2 else summary[:limit]
    return head.rstrip(" ,;:-–—") + ELLIPSIS
