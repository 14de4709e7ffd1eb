"""Who writes a summary: the OpenAI-compatible API, the embedded extractive summarizer, or a
user's callable (``module:function``, sync or async; a sync one runs in a thread so it never
blocks the event loop)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from common.errors import PermanentError
from common.plugins import load_callable
from summarizer.extractive import summarize_extractive
from summarizer.profiles import Profile
from summarizer.schema import INVALID_OUTPUT

__all__ = [
    "CallableEngine",
    "DocFailed",
    "Engine",
    "ExtractiveEngine",
    "InvalidOutput",
    "Request",
    "Summary",
    "load_callable",
    "source_digest",
]


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    title: str
    text: str
    profile: Profile


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary, or with a schema an extraction: ``data`` is the validated object and
    ``text`` its JSON (what the content cache keeps)."""

    text: str
    summarizer: str  # the model name, "extractive", or the callable's path
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0  # API calls made for it (retries included)
    data: Any = None
    chunks: int = 0  # map calls: 1 for a page read in one call, more for a long page
    truncated: bool = False  # the text was cut (--llm-long-pages cut, or --llm-max-doc-tokens)


class DocFailed(PermanentError):
    """A doc failed after API calls that answered: ``spent`` holds their tokens, which the
    worker accounts to the failed doc."""

    def __init__(self, message: str, spent: Summary, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.spent = spent


class InvalidOutput(DocFailed):
    """The answer was not valid (not JSON, or against the schema) on the first call and on the
    one repair call: the doc fails with reason ``invalid_output``, both calls accounted."""

    def __init__(self, message: str, spent: Summary) -> None:
        super().__init__(message, spent, INVALID_OUTPUT)


class Engine(Protocol):
    name: str
    calls_api: bool  # subject to the adaptive concurrency limit

    def cache_identity(self, request: Request) -> tuple[str, ...]:
        """Everything besides the page text that shapes ``request``'s answer (its model,
        prompt, schema, budgets ...), first the name a record gives as its ``summarizer``:
        identical text under one identity shares one answer in the summary cache
        (summarizer.cache.content_key). The page's title and URL are not part of it: the cache
        deduplicates content."""
        ...

    async def summarize(self, request: Request) -> Summary: ...

    async def aclose(self) -> None: ...


class ExtractiveEngine:
    """Sentence scoring, no network, no model files: the pipeline always completes."""

    name = "extractive"
    calls_api = False

    def __init__(self) -> None:
        self._code = source_digest(summarize_extractive)

    def cache_identity(self, request: Request) -> tuple[str, ...]:  # noqa: ARG002 (one identity)
        return "extractive", self._code

    async def summarize(self, request: Request) -> Summary:
        # CPU work on ~50 KB of text at most (the crawler caps it): a thread keeps the loop free
        text = await asyncio.to_thread(summarize_extractive, request.text, title=request.title)
        return Summary(text, "extractive")

    async def aclose(self) -> None:
        return None


class CallableEngine:
    """A user function ``fn(text, *, title, url) -> str`` (or an async one)."""

    calls_api = False

    def __init__(self, path: str) -> None:
        self.name = path
        self._fn = load_callable(path, "summarizer")
        self._is_async = inspect.iscoroutinefunction(self._fn)
        self._code = source_digest(self._fn)

    def cache_identity(self, request: Request) -> tuple[str, ...]:  # noqa: ARG002 (one identity)
        return self.name, "callable", self._code

    async def summarize(self, request: Request) -> Summary:
        kwargs = {"title": request.title, "url": request.url}
        if self._is_async:
            result = await self._call_async(request.text, kwargs)
        else:
            result = await asyncio.to_thread(self._fn, request.text, **kwargs)
        if not isinstance(result, str):
            raise PermanentError(
                f"summarizer {self.name} returned {type(result).__name__}, not str",
                reason="bad_summarizer_output",
            )
        return Summary(result, self.name)

    async def _call_async(self, text: str, kwargs: dict[str, str]) -> Any:
        awaitable: Awaitable[Any] = self._fn(text, **kwargs)
        return await awaitable

    async def aclose(self) -> None:
        return None


def source_digest(fn: Any) -> str:
    """A digest of the source file that defines ``fn`` ("" when there is none to read): part of
    a summarizer function's cache identity, so an edited summarizer writes new entries instead
    of reading its old answers (an edit in another module it calls is not seen)."""
    for obj in (fn, type(fn)):
        try:
            path = inspect.getsourcefile(obj)
            if path:
                return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        except (TypeError, OSError):
            continue
    return ""
