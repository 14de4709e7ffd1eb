"""Revisits: what a visit of a known URL found, and what the next visit will need.

A done URL keeps, in its shard, the payload of its next visit: its validators (ETag,
Last-Modified), the hash of its main text and the interval that led there (common.serde.Revisit).
A revisit sends the validators back; a 304, or a 200 whose text hash did not change, is
``unchanged``: no record is rewritten, no doc goes to the summarizer, no link is admitted again.
A revisit answered 404 or 410 is ``gone``: the URL fails and is never visited again. See
docs/revisits.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from common.protocol import REVISIT_FORGET
from common.serde import Revisit, UrlEntry, WarcCapture, encode_url_entry
from common.spec import CrawlSpec

__all__ = ["GONE_STATUSES", "Change", "RevisitPolicy"]

GONE_STATUSES = frozenset({404, 410})


class Change(enum.StrEnum):
    """What a visit found, on a page record (``change``) and as the reason of its ack."""

    NEW = "new"  # the first visit
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    GONE = "gone"

    @property
    def reason(self) -> str:
        """The reason its ack is counted under (done:changed ...); a first visit has none."""
        return "" if self is Change.NEW else self.value


@dataclass(frozen=True, slots=True)
class RevisitPolicy:
    """The revisit side of a crawl's spec, as the worker applies it."""

    spec: CrawlSpec

    @staticmethod
    def judge(entry: UrlEntry, text_hash: str, *, not_modified: bool = False) -> Change:
        """A visit's change: new on a first visit; unchanged on a 304 or the same text hash."""
        if entry.r is None:
            return Change.NEW
        if not_modified or text_hash == entry.r.h:
            return Change.UNCHANGED
        return Change.CHANGED

    def keep(
        self,
        entry: UrlEntry,
        change: Change,
        *,
        text_hash: str,
        etag: str | None,
        last_modified: str | None,
        capture: WarcCapture | None = None,
    ) -> tuple[int, str]:
        """(interval in ms, payload) of the URL's next visit after this one found ``change``
        (validators not sent this time are kept from the last visit, and so is where its
        payload was archived when this visit archived none of its own: ``capture``)."""
        last = entry.r
        interval = self.spec.next_interval_ms(
            last.i if last is not None else None, change is not Change.UNCHANGED
        )
        if last is not None and change is Change.UNCHANGED:
            text_hash = last.h
            etag = etag or last.e
            last_modified = last_modified or last.m
        if capture is None and last is not None:
            capture = last.w
        nxt = Revisit(h=text_hash, e=etag, m=last_modified, i=interval, w=capture)
        return interval, encode_url_entry(msgspec.structs.replace(entry, r=nxt))

    @staticmethod
    def gone(entry: UrlEntry, status: int | None) -> bool:
        """Whether a final HTTP status on this visit means the known page is gone."""
        return entry.r is not None and status in GONE_STATUSES

    FORGET = REVISIT_FORGET
