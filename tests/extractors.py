"""Extractors the tests load with --extractor tests.extractors:NAME (crawler/extractor.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from selectolax.lexbor import LexborHTMLParser


def headline(url: str, final_url: str, html: str, tree: LexborHTMLParser) -> dict[str, Any]:
    h1 = tree.css_first("h1")
    return {"h1": h1.text() if h1 else None, "url": url, "final": final_url, "chars": len(html)}


async def headline_async(
    url: str, final_url: str, html: str, tree: LexborHTMLParser
) -> dict[str, Any]:
    await asyncio.sleep(0)
    return headline(url, final_url, html, tree)


def picky(url: str, final_url: str, html: str, tree: LexborHTMLParser) -> Any:
    """Fails in three ways on some pages: raises, returns a list, returns what JSON cannot hold."""
    if url.endswith("/p/1.html"):
        raise ValueError("no price on this page")
    if url.endswith("/p/2.html"):
        return ["not", "a", "dict"]
    if url.endswith("/p/3.html"):
        return {"thing": object()}
    return headline(url, final_url, html, tree)


NOT_CALLABLE = 42
