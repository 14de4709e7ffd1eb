"""Token budgets: estimate tokens, cut input text to fit (keeping the beginning), or split it
into token-sized chunks that overlap (for long pages, summarizer.mapreduce).

tiktoken is used when it is installed and has the model's encoding available offline (it
downloads encodings on first use, which this project cannot count on); otherwise a character
estimate of 4 characters per token, which is close for English and errs long for most other
text. The provider's ``usage`` corrects the shared token bucket afterwards either way.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

__all__ = ["TokenCounter", "token_counter"]

_CHARS_PER_TOKEN = 4


class TokenCounter:
    def __init__(
        self,
        count: Callable[[str], int],
        exact: bool,
        tokens: Callable[[str], list[int]] | None = None,
        text: Callable[[list[int]], str] | None = None,
    ) -> None:
        self._count = count
        self.exact = exact
        self._tokens = tokens  # the encoding's encode/decode, when exact
        self._text = text

    def count(self, text: str) -> int:
        return self._count(text)

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """The longest prefix of ``text`` within ``max_tokens``; (text, was_cut)."""
        if self.count(text) <= max_tokens:
            return text, False
        if not self.exact:
            cut = text[: max_tokens * _CHARS_PER_TOKEN]
        else:  # shrink by the overshoot ratio until it fits (two or three rounds)
            cut = text
            while self.count(cut) > max_tokens:
                ratio = max_tokens / self.count(cut)
                cut = cut[: max(0, int(len(cut) * ratio * 0.98))]
        space = cut.rfind(" ", max(0, len(cut) - 40))
        return (cut[:space] if space > 0 else cut), True

    def split(self, text: str, size: int, overlap: int) -> list[str]:
        """``text`` in chunks of at most ``size`` tokens, each starting ``overlap`` tokens
        before the previous one ended (so a sentence cut at a border is whole in one of them);
        one chunk when it fits. With the estimate, borders move back to a space when one is
        near, so words are not split."""
        if not 0 <= overlap < size:
            raise ValueError(f"overlap {overlap} must be >= 0 and below the chunk size {size}")
        if self.count(text) <= size:
            return [text]
        if self._tokens is not None and self._text is not None:
            ids = self._tokens(text)
            step = size - overlap
            starts = range(0, max(1, len(ids) - overlap), step)
            return [self._text(ids[i : i + size]) for i in starts]
        return _split_chars(text, size * _CHARS_PER_TOKEN, overlap * _CHARS_PER_TOKEN)


def _split_chars(text: str, size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    start = 0
    while True:
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", end - min(40, size // 4), end)
            end = space if space > start + overlap else end
        chunks.append(text[start:end])
        if end >= len(text):
            return chunks
        nxt = end - overlap
        if overlap:  # start the overlap on a word, too
            space = text.find(" ", nxt, min(end, nxt + 40))
            nxt = space + 1 if space != -1 else nxt
        start = max(nxt, start + 1)


def _estimate(text: str) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


@cache
def token_counter(model: str) -> TokenCounter:
    """The best counter available offline for ``model``."""
    try:
        import tiktoken  # optional

        encoding = tiktoken.encoding_for_model(model)
    except Exception:  # not installed, unknown model, or no cached encoding and no network
        return TokenCounter(_estimate, exact=False)

    def tokens(text: str) -> list[int]:
        return list(encoding.encode(text, disallowed_special=()))

    return TokenCounter(lambda text: len(tokens(text)), True, tokens, encoding.decode)
