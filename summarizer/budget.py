"""Token budgets: estimate tokens and cut input text to fit, keeping the beginning.

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
    def __init__(self, count: Callable[[str], int], exact: bool) -> None:
        self._count = count
        self.exact = exact

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
    return TokenCounter(lambda text: len(encoding.encode(text, disallowed_special=())), True)
