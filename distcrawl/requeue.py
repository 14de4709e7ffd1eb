"""`distcrawl requeue`: put a crawl's dead letters (URLs, or with ``--docs`` docs) back in their
queues with fresh attempts, after the outage that killed them is over.

On a shared Redis (``--redis``) the running workers pick them up; on the embedded store of a
`distcrawl run --out DIR` (``--out DIR``), this command opens DIR's store itself (a run must not
hold it meanwhile), and the next `distcrawl run --out DIR` resumes and crawls them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from common.deadletters import Requeued
from common.docsqueue import DocsQueue
from common.errors import ConfigError
from common.logging import get_logger
from common.private_server import private_server
from common.settings import Settings
from common.store import EMBEDDED
from distcrawl.embedded import STORE_DIR
from distcrawl.runtime import store_session

__all__ = ["describe", "requeue_command", "valid_domain"]

log = get_logger(__name__)


def valid_domain(text: str | None) -> str | None:
    """``--domain`` as the queues name domains (host[:port], lower case), or None for any."""
    if text is None:
        return None
    domain = text.strip().lower()
    if not domain or any(c in domain for c in "/ \t?#@"):
        raise ConfigError(
            f"--domain takes a host or host:port as `distcrawl status` lists it, got {text!r}"
        )
    return domain


def describe(result: Requeued, *, docs: bool) -> str:
    """The command's answer, e.g. ``requeued 123 URLs (reason http_503: 100, timeout: 23)``."""
    what = "docs" if docs else "URLs"
    reasons = ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(result.reasons.items()))
    line = f"requeued {result.count} {what}" + (f" (reason {reasons})" if reasons else "")
    if result.kept_no_text:
        line += (
            f"; {result.kept_no_text} matching dead docs kept no text (they died past the "
            "crawl's --max-docs-backlog) and stay failed"
        )
    return line


@contextlib.asynccontextmanager
async def _store(settings: Settings, out: Path | None) -> AsyncIterator[Settings]:
    """``settings`` pointing at the crawl's store: ``--redis``, or DIR's embedded store."""
    if out is None:
        if settings.redis == EMBEDDED:
            raise ConfigError(
                "`distcrawl requeue` needs --redis URL (or DISTCRAWL_REDIS), or --out DIR for "
                "the embedded store of a `distcrawl run --out DIR`"
            )
        yield settings
        return
    if settings.redis != EMBEDDED:
        raise ConfigError("give --redis URL or --out DIR (a run's embedded store), not both")
    data = out / STORE_DIR
    if not data.is_dir():
        raise ConfigError(f"{out} holds no crawl: no embedded store in {data}")
    async with private_server(data, settings.embedded) as url:
        yield settings.model_copy(update={"redis": url})


async def requeue_command(
    settings: Settings, *, out: Path | None, docs: bool, reason: str | None, domain: str | None
) -> int:
    """Requeue the matching dead letters of ``settings.crawl``; print how many, by reason."""
    domain = valid_domain(domain)
    async with (
        _store(settings, out) as store_settings,
        store_session(store_settings, existing=True) as (redis, frontier),
    ):
        if docs:
            result = await DocsQueue(redis, frontier.keys).requeue(reason, domain)
        else:
            result = await frontier.requeue(reason, domain)
    log.info(
        "dead_letters_requeued",
        crawl=settings.crawl,
        queue="docs" if docs else "urls",
        requeued=result.count,
        reasons=result.reasons,
        kept_no_text=result.kept_no_text,
        reason=reason,
        domain=domain,
    )
    print(describe(result, docs=docs))
    if result.count and out is not None:
        verb = "summarizes" if docs else "crawls"
        print(f"distcrawl: `distcrawl run --out {out}` {verb} them", file=sys.stderr)
    return 0
