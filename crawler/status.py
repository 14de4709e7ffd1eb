"""The crawl's state for people and scripts: the outcome equation, queues, workers."""

from __future__ import annotations

import json
import time
from typing import Any

from common.heartbeat import Heartbeats
from crawler.frontier import Frontier

__all__ = ["crawl_status", "render_status"]

_STALE_S = 30.0


async def crawl_status(
    frontier: Frontier, heartbeats: Heartbeats, top: int = 10
) -> dict[str, Any]:
    """A JSON-ready dict: admitted/done/failed/skipped/pending, queues, reasons, workers."""
    stats = await frontier.stats(top)
    now = time.time()
    workers = []
    for worker_id, raw in (await heartbeats.all()).items():
        try:
            beat = json.loads(raw)
        except ValueError:
            continue
        age = now - float(beat.get("last", 0))
        workers.append({"id": worker_id, "age_s": round(age, 1), "alive": age < _STALE_S, **beat})
    return {
        "crawl": frontier.keys.crawl,
        "admitted": stats.admitted,
        "done": stats.done,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "pending": stats.pending,
        "balanced": stats.balanced,
        "queued": stats.queued,
        "delayed": stats.delayed,
        "in_flight": stats.in_flight,
        "ready_domains": stats.ready_domains,
        "domains": stats.domains,
        "dead_letters": stats.dead_letters,
        "retries": stats.count("retries"),
        "reaped": stats.count("reaped"),
        "docs_queued": stats.count("docs_queued"),
        "failed_reasons": stats.reasons("failed"),
        "skipped_reasons": stats.reasons("skipped"),
        "rejected": stats.reasons("rejected"),
        "top_domains": [{"domain": d, "queued": n} for d, n in stats.top_domains],
        "workers": sorted(workers, key=lambda w: w["id"]),
    }


def render_status(status: dict[str, Any]) -> str:
    """Plain text for a terminal."""
    eq = "holds" if status["balanced"] else "DOES NOT HOLD"
    lines = [
        f"crawl {status['crawl']}",
        f"  admitted {status['admitted']} = done {status['done']} + failed {status['failed']}"
        f" + skipped {status['skipped']} + pending {status['pending']}   ({eq})",
        f"  pending: queued {status['queued']}, delayed retries {status['delayed']},"
        f" in flight {status['in_flight']}",
        f"  domains {status['domains']} (ready {status['ready_domains']}),"
        f" dead letters {status['dead_letters']}, retries {status['retries']},"
        f" reaped {status['reaped']}, docs queued {status['docs_queued']}",
    ]
    for title, key in (("failed", "failed_reasons"), ("skipped", "skipped_reasons"),
                       ("rejected at admission", "rejected")):
        if status[key]:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(status[key].items()))
            lines.append(f"  {title}: {parts}")
    if status["top_domains"]:
        tops = ", ".join(f"{t['domain']} {t['queued']}" for t in status["top_domains"])
        lines.append(f"  top queues: {tops}")
    alive = [w for w in status["workers"] if w["alive"]]
    lines.append(f"  workers alive: {len(alive)}")
    for w in alive:
        lines.append(
            f"    {w['id']}  in flight {w.get('in_flight', 0)}  done {w.get('done', 0)}"
            f"  failed {w.get('failed', 0)}  beat {w['age_s']}s ago"
        )
    return "\n".join(lines)
