"""The crawl's state for people and scripts: the outcome equation, queues, workers."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

from common.docsqueue import DocsQueue
from common.heartbeat import DEFAULT_HEARTBEAT_S, Heartbeats, is_stale
from common.spec import CrawlSpec
from crawler.frontier import Frontier

__all__ = ["crawl_status", "memory_lines", "render_status"]


async def crawl_status(
    frontier: Frontier,
    docs: DocsQueue,
    heartbeats: Heartbeats,
    top: int = 10,
    memory: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A JSON-ready dict: the outcome equations, queues, reasons, LLM accounting, workers.

    ``memory`` is common.store.redis_memory's answer (used and max bytes), if known."""
    stats = await frontier.stats(top)
    d = await docs.stats()
    spec = await frontier.spec()
    prompt, completion = d.per_model("prompt_tokens"), d.per_model("completion_tokens")
    cost = d.per_model("cost_micro_usd")
    now = time.time()
    workers = []
    for worker_id, raw in (await heartbeats.all()).items():
        try:
            beat = json.loads(raw)
        except ValueError:
            continue
        age = now - float(beat.get("last", 0))
        alive = not is_stale(age, float(beat.get("every", DEFAULT_HEARTBEAT_S)))
        workers.append({"id": worker_id, "age_s": round(age, 1), "alive": alive, **beat})
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
        "top_domains": [{"domain": dom, "queued": n} for dom, n in stats.top_domains],
        "docs": {
            "queued": d.queued,
            "summarized": d.summarized,
            "failed": d.failed,
            "pending": d.pending,
            "waiting": d.waiting,
            "in_flight": d.in_flight,
            "balanced": d.balanced,
            "cache_hits": d.counts.get("docs_summarized:cached", 0),
            "reaped": d.counts.get("docs_reaped", 0),
            "failed_reasons": {
                k[len("docs_failed:") :]: v
                for k, v in d.counts.items()
                if k.startswith("docs_failed:")
            },
        },
        "llm": {
            model: {
                "prompt_tokens": prompt.get(model, 0),
                "completion_tokens": completion.get(model, 0),
                "cost_usd": round(cost.get(model, 0) / 1_000_000, 6),
            }
            for model in sorted(set(prompt) | set(completion))
        },
        "workers": sorted(workers, key=lambda w: w["id"]),
        "backpressure": _backpressure(spec, d.pending + stats.in_flight, memory or {}, workers),
        "seen": {
            "mode": spec.seen if spec else "set",
            "bloom": None if stats.bloom is None else dataclasses.asdict(stats.bloom),
        },
    }


def _backpressure(
    spec: CrawlSpec | None, backlog: int, memory: dict[str, float], workers: list[dict[str, Any]]
) -> dict[str, Any]:
    """Why the crawl may be waiting: the docs backlog at its bound, or a full Redis."""
    bound = spec.max_docs_backlog if spec and spec.summarize else 0
    used = int(memory.get("redis_used_memory_bytes", 0))
    limit = int(memory.get("redis_maxmemory_bytes", 0))
    return {
        "docs_backlog": backlog,  # docs waiting + docs in flight + pages in flight
        "max_docs_backlog": bound,
        "paused_on_backlog": bool(bound) and backlog >= bound,
        "redis_used_memory": used,
        "redis_maxmemory": limit,
        "store_full": (limit > 0 and used >= limit)
        or any(w.get("paused") == "store_full" for w in workers if w["alive"]),
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
    for title, key in (
        ("failed", "failed_reasons"),
        ("skipped", "skipped_reasons"),
        ("rejected at admission", "rejected"),
    ):
        if status[key]:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(status[key].items()))
            lines.append(f"  {title}: {parts}")
    if status["top_domains"]:
        tops = ", ".join(f"{t['domain']} {t['queued']}" for t in status["top_domains"])
        lines.append(f"  top queues: {tops}")
    docs = status["docs"]
    eq = "holds" if docs["balanced"] else "DOES NOT HOLD"
    lines.append(
        f"  docs {docs['queued']} = summarized {docs['summarized']} + failed {docs['failed']}"
        f" + pending {docs['pending']}   ({eq}); cache hits {docs['cache_hits']}"
    )
    for model, use in status["llm"].items():
        lines.append(
            f"  llm {model}: prompt tokens {use['prompt_tokens']}, completion tokens"
            f" {use['completion_tokens']}, estimated cost ${use['cost_usd']:.4f}"
        )
    lines += memory_lines(status)
    alive = [w for w in status["workers"] if w["alive"]]
    lines.append(f"  workers alive: {len(alive)}")
    for w in alive:
        lines.append(
            f"    {w['id']}  in flight {w.get('in_flight', 0)}  done {w.get('done', 0)}"
            f"  failed {w.get('failed', 0)}  beat {w['age_s']}s ago"
            + (f"  PAUSED ({w['paused']})" if w.get("paused") else "")
        )
    return "\n".join(lines)


def memory_lines(status: Mapping[str, Any]) -> list[str]:
    """Why the crawl waits (backlog bound, full Redis) and the Bloom filters' state, if any."""
    lines: list[str] = []
    bp = status.get("backpressure")
    if not bp:
        return lines
    if bp["paused_on_backlog"]:
        lines.append(
            f"  PAUSED: the docs backlog is at its bound ({bp['docs_backlog']} of"
            f" {bp['max_docs_backlog']}): crawlers wait for the summarizers"
        )
    if bp["store_full"]:
        mb = 1024 * 1024
        lines.append(
            f"  WAITING: Redis is full (used {bp['redis_used_memory'] / mb:.1f} MB of maxmemory"
            f" {bp['redis_maxmemory'] / mb:.1f} MB) and refuses writes: workers retry until"
            " memory is freed or maxmemory raised"
        )
    bloom = status.get("seen", {}).get("bloom")
    if bloom is not None:
        size = bloom["bits"] / 8
        lines.append(
            f"  seen: Bloom filters, {bloom['urls']} URLs in {bloom['filters']} filter(s),"
            f" {size / 1024 / 1024:.1f} MB ({size / max(1, bloom['urls']):.1f} B/URL);"
            " new URLs dropped as false positives (estimate):"
            f" {bloom['false_positives_est']:.2f}"
        )
    return lines
