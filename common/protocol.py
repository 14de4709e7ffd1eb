"""The Python <-> Lua protocol, declared once: op kinds, the fields of each batched op, result
codes and special answers.

common/scripts.py generates the Lua header every script starts with from these declarations
(``SETTLE.fp``, ``SETTLE.width``, ``SETTLE_RESULT.STALE``, ``CLAIM_WAIT.PAUSED`` ...), so a
field's position, a group's width or a code's value is written here and nowhere else; the
Python side builds its ARGV from the same tuples (crawler.frontier.SettleOp,
common.docsqueue.DocOp, crawler.frontier.Candidate). tests/test_keys.py checks that the tables
a script sees equal these.
"""

from __future__ import annotations

import enum
import json

__all__ = [
    "ADMIT_FIELDS",
    "DOC_OP_FIELDS",
    "PASS_FIELD",
    "PASS_STARTED_FIELD",
    "REVISIT_FORGET",
    "SETTLE_FIELDS",
    "AdmitCode",
    "CacheProbe",
    "ClaimWait",
    "DocKind",
    "DocResult",
    "Outcome",
    "SettleKind",
    "SettleResult",
    "lua_header",
]

# One admitted URL in an admit section (lib_admit.lua): its group of ARGV values, in order.
# lastmod_ms: a sitemap's <lastmod> for the URL (0: none): a URL already known and fetched
# before that time becomes due for a revisit (lib_admit.lua).
ADMIT_FIELDS = ("domain", "fp", "depth", "payload", "lastmod_ms")

# One settle op of the frontier (lib_settle.lua).
SETTLE_FIELDS = (
    "kind",
    "fp",
    "outcome",
    "reason",
    "delay_ms",
    "retry_after_ms",
    "record",
    "doc",
    "attempt",
    # Revisits (docs/revisits.md): "" leaves the URL's revisit state as it is; else the
    # interval in ms until its next visit (0: at the next pass only), with ``revisit`` the
    # queue payload that visit will carry (its validators), or REVISIT_FORGET (gone).
    "revisit_ms",
    "revisit",
)

# The revisit_ms of an ack whose URL is gone (404/410 on a revisit): never visit it again.
REVISIT_FORGET = -1
# The spec hash field holding the crawl's current pass (1, 2, ... ; absent: 1).
PASS_FIELD = "pass"
# ... and when it started (ms): a new pass's wake-up skips URLs visited since, so it can be
# repeated after a crash without visiting a page twice in one pass.
PASS_STARTED_FIELD = "pass_started"

# One settle op of the docs queue (docs_settle.lua).
DOC_OP_FIELDS = (
    "kind",
    "fp",
    "reason",
    "record",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_micro_usd",
    "attempt",
)


class AdmitCode(enum.IntEnum):
    """What the admit script did with one URL."""

    DUPLICATE = 0
    ADMITTED = 1
    MAX_DEPTH = 2
    MAX_PAGES = 3
    MAX_DOMAIN_PAGES = 4


class Outcome(enum.StrEnum):
    """How a page ends (the crawl equation's terms)."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class SettleKind(enum.StrEnum):
    """How a frontier lease ends (lib_settle.lua knows exactly these)."""

    ACK = "ack"  # done, failed or skipped, with its record and doc
    RETRY = "retry"  # attempts + 1, back to the queue (or the dead letters)
    RELEASE = "release"  # back to the head of its queue untouched (shutdown)


class SettleResult(enum.IntEnum):
    STALE = 0  # the lease had expired and was reaped (or re-leased): nothing changed
    SETTLED = 1
    REQUEUED = 2
    DEAD = 3  # retried once too often: dead-lettered as failed


class DocKind(enum.StrEnum):
    """How a doc's lease ends (docs_settle.lua knows exactly these)."""

    SUMMARIZED = "summarized"
    FAILED = "failed"
    RELEASE = "release"  # back to the head of the queue, untouched (shutdown)
    # Failed after its retries on a passing trouble (the API down, slow or pacing us): counted
    # as failed, and dead-lettered with its text for `distcrawl requeue --docs`.
    DEAD = "dead"


class DocResult(enum.IntEnum):
    STALE = 0
    SETTLED = 1
    REQUEUED = 2


class CacheProbe(enum.IntEnum):
    """summary_cache_probe.lua's answer (its first element)."""

    BUSY = 0  # another caller holds the key's lock: wait, probe again
    HIT = 1  # the summary follows
    LOCKED = 2  # this caller took the lock: compute, then store and unlock


class ClaimWait(enum.IntEnum):
    """claim.lua's wait when it claimed nothing and knows no time (else: ms until ready)."""

    NONE = -1  # nothing queued, or everything queued waits for an in-flight slot
    PAUSED = -2  # the docs backlog is at the crawl's bound


def _fields(name: str, fields: tuple[str, ...]) -> str:
    body = ", ".join(f"{f} = {i}" for i, f in enumerate(fields))
    return f"local {name} = {{{body}, width = {len(fields)}}}"


def _codes(name: str, codes: type[enum.Enum]) -> str:
    body = ", ".join(f"{c.name} = {json.dumps(c.value)}" for c in codes)
    return f"local {name} = {{{body}}}"


def lua_header() -> str:
    """Lua source declaring the protocol tables (field offsets within a group, group widths,
    kinds and codes), generated from the declarations above."""
    return "\n".join(
        [
            _fields("ADMIT", ADMIT_FIELDS),
            _fields("SETTLE", SETTLE_FIELDS),
            _fields("DOC_OP", DOC_OP_FIELDS),
            _codes("ADMIT_CODE", AdmitCode),
            _codes("OUTCOME", Outcome),
            _codes("SETTLE_KIND", SettleKind),
            _codes("SETTLE_RESULT", SettleResult),
            _codes("DOC_KIND", DocKind),
            _codes("DOC_RESULT", DocResult),
            _codes("CACHE_PROBE", CacheProbe),
            _codes("CLAIM_WAIT", ClaimWait),
            f"local REVISIT_FORGET = {REVISIT_FORGET}",
            f"local PASS_FIELD = {json.dumps(PASS_FIELD)}",
            f"local PASS_STARTED_FIELD = {json.dumps(PASS_STARTED_FIELD)}",
        ]
    )
