"""Custom extraction without an LLM: ``--extractor package.module:function``.

The function is called for every page that was fetched and parsed, as
``fn(url, final_url, html, tree)``: the admitted URL, the URL after redirects, the decoded HTML
and a fresh selectolax ``LexborHTMLParser`` of it (the crawler's own tree has its boilerplate
stripped). It returns a JSON-able dict, stored as the page record's ``data``. A sync function
runs in a thread (off the event loop, with its tree built there too), an async one on the loop.
Whatever it raises, or a result that is not a JSON object, fails the page with reason
``extractor_error`` and the message; the worker goes on.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import msgspec
from selectolax.lexbor import LexborHTMLParser

from common.plugins import load_callable

__all__ = ["Extractor", "ExtractorError"]

_MAX_DATA_BYTES = 1 << 20  # a record is one line of pages.jsonl and lives in Redis until export


class ExtractorError(Exception):
    """The user's function failed on one page (its message says how)."""


class Extractor:
    def __init__(self, path: str) -> None:
        self.name = path
        self._fn = load_callable(path, "extractor")
        self._is_async = inspect.iscoroutinefunction(self._fn)

    async def extract(self, url: str, final_url: str, html: str) -> dict[str, Any]:
        try:
            if self._is_async:
                result = await self._fn(url, final_url, html, LexborHTMLParser(html))
            else:
                result = await asyncio.to_thread(self._call, url, final_url, html)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ExtractorError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        if not isinstance(result, dict):
            raise ExtractorError(f"returned {type(result).__name__}, not a dict")
        try:
            size = len(msgspec.json.encode(result))
        except (TypeError, msgspec.EncodeError) as exc:
            raise ExtractorError(f"returned a dict that is not JSON: {exc}"[:500]) from exc
        if size > _MAX_DATA_BYTES:
            raise ExtractorError(f"returned {size:,} bytes of JSON (at most {_MAX_DATA_BYTES:,})")
        return result

    def _call(self, url: str, final_url: str, html: str) -> Any:
        return self._fn(url, final_url, html, LexborHTMLParser(html))
