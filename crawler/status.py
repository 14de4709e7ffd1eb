"""The crawl's state for people and scripts: the outcome equations, queues, workers.

:class:`CrawlStatus` is the one typed answer (`status`, `top` and the tests read its fields);
``to_json()`` gives the `status --json` document and :meth:`CrawlStatus.from_json` reads one back.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from common.docsqueue import DocsQueue
from common.heartbeat import DEFAULT_HEARTBEAT_S, Heartbeats, is_stale
from common.spec import CrawlSpec
from crawler.frontier import BloomStats, Frontier
from crawler.proxies import parse_proxy_url
from crawler.proxypool import ProxyHealth

__all__ = [
    "Backpressure",
    "CrawlStatus",
    "DocsStatus",
    "ModelUsage",
    "ProxyStatus",
    "SeenStatus",
    "TopDomain",
    "WorkerStatus",
    "crawl_status",
    "memory_lines",
    "proxy_lines",
    "render_status",
]

Counter = int | float | str


class WorkerStatus(msgspec.Struct, kw_only=True):
    """One worker's last heartbeat (common.leasedworker writes it) and its verdict.

    ``counters`` holds the role's own counters (done, failed, summarized...): in JSON they sit
    beside the fixed fields, as the worker wrote them."""

    id: str
    age_s: float
    alive: bool  # common.heartbeat.is_stale: status, top and /healthz agree
    role: str = "?"
    host: str = "?"
    pid: int | None = None
    started: float | None = None
    last: float = 0.0
    in_flight: int = 0
    paused: str | None = None
    every: float = DEFAULT_HEARTBEAT_S
    counters: dict[str, Counter] = msgspec.field(default_factory=dict)

    @property
    def uptime_s(self) -> float | None:
        return None if self.started is None else self.last - self.started

    @classmethod
    def from_beat(cls, worker_id: str, beat: dict[str, Any], now: float) -> WorkerStatus:
        """A heartbeat's JSON object (or a `status --json` worker entry) as a WorkerStatus."""
        fixed = {k: beat[k] for k in _FIXED if k in beat}
        counters = {k: v for k, v in beat.items() if k not in _FIXED and k not in _VERDICT}
        age = now - float(fixed.get("last", 0.0))
        every = float(fixed.get("every", DEFAULT_HEARTBEAT_S))
        return msgspec.convert(
            {
                **fixed,
                "id": worker_id,
                "age_s": round(age, 1),
                "alive": not is_stale(age, every),
                "counters": counters,
            },
            cls,
            strict=False,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.update(out.pop("counters"))
        return out


_FIXED = frozenset(WorkerStatus.__struct_fields__) - {"id", "age_s", "alive", "counters"}
_VERDICT = frozenset({"id", "age_s", "alive"})


class TopDomain(msgspec.Struct):
    domain: str
    queued: int


class DocsStatus(msgspec.Struct, kw_only=True):
    """The docs equation: queued = summarized + failed + pending (waiting + in flight)."""

    queued: int
    summarized: int
    failed: int
    pending: int
    waiting: int
    in_flight: int
    balanced: bool
    cache_hits: int
    reaped: int
    failed_reasons: dict[str, int]
    dead: int = 0  # dead docs (`distcrawl requeue --docs` replays those that kept their text)
    requeued: int = 0

    @property
    def settled(self) -> int:
        return self.summarized + self.failed


class ModelUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Backpressure(msgspec.Struct, kw_only=True):
    """Why the crawl may be waiting: the docs backlog at its bound, or a full Redis."""

    docs_backlog: int  # docs waiting + docs in flight + pages in flight
    max_docs_backlog: int  # 0: no bound (a crawl that does not summarize)
    paused_on_backlog: bool
    redis_used_memory: int
    redis_maxmemory: int
    store_full: bool


class ProxyStatus(msgspec.Struct, kw_only=True):
    """One proxy of the crawl's pool (crawler/proxypool.py): its name, its URL without any
    password, and its shared health (failures in a row, seconds of back-off left)."""

    name: str
    url: str
    failures: int = 0
    backoff_s: float = 0.0

    @property
    def up(self) -> bool:
        return self.backoff_s <= 0


class SeenStatus(msgspec.Struct):
    mode: str  # set | bloom
    bloom: BloomStats | None = None


class RevisitStatus(msgspec.Struct, kw_only=True):
    """Passes and revisits (docs/revisits.md): the current pass, the pages kept for revisits
    (asleep: not in the frontier now; due: their time has come), and what visits found."""

    pass_no: int = msgspec.field(default=1, name="pass")
    revisits: int = 0  # revisits admitted, all passes
    known: int = 0
    asleep: int = 0
    due: int = 0
    changes: dict[str, int] = msgspec.field(default_factory=dict)  # changed, unchanged, gone


class CrawlStatus(msgspec.Struct, kw_only=True):
    """The crawl equation admitted = done + failed + skipped + pending, and the rest."""

    crawl: str
    admitted: int
    done: int
    failed: int
    skipped: int
    pending: int
    balanced: bool
    queued: int
    delayed: int
    in_flight: int
    ready_domains: int
    domains: int
    dead_letters: int
    retries: int
    reaped: int
    docs_queued: int
    failed_reasons: dict[str, int]
    skipped_reasons: dict[str, int]
    rejected: dict[str, int]
    top_domains: list[TopDomain]
    docs: DocsStatus
    llm: dict[str, ModelUsage]
    workers: list[WorkerStatus]
    backpressure: Backpressure | None = None
    seen: SeenStatus = msgspec.field(default_factory=lambda: SeenStatus("set"))
    proxies: list[ProxyStatus] = msgspec.field(default_factory=list)
    revisits: RevisitStatus = msgspec.field(default_factory=lambda: RevisitStatus())
    requeued: int = 0  # dead letters put back by `distcrawl requeue`

    @property
    def settled(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def tokens(self) -> int:
        return sum(use.tokens for use in self.llm.values())

    def to_json(self) -> dict[str, Any]:
        """The `status --json` document (workers' counters beside their fixed fields)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["workers"] = [w.to_json() for w in self.workers]
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CrawlStatus:
        """Read a `status --json` document back (``age_s``/``alive`` kept as written)."""
        workers = []
        for w in doc.get("workers", []):
            ws = WorkerStatus.from_beat(str(w["id"]), w, now=0.0)
            workers.append(msgspec.structs.replace(ws, age_s=w["age_s"], alive=w["alive"]))
        status = msgspec.convert({**doc, "workers": []}, cls, strict=False)
        return msgspec.structs.replace(status, workers=workers)


# the fields copied as they are from FrontierStats and DocsStats
_FROM_FRONTIER = [
    "admitted",
    "done",
    "failed",
    "skipped",
    "pending",
    "balanced",
    "queued",
    "delayed",
    "in_flight",
    "ready_domains",
    "domains",
    "dead_letters",
]
_FROM_DOCS = ["queued", "summarized", "failed", "pending", "waiting", "in_flight", "balanced"]


async def crawl_status(
    frontier: Frontier,
    docs: DocsQueue,
    heartbeats: Heartbeats,
    top: int = 10,
    memory: dict[str, float] | None = None,
) -> CrawlStatus:
    """The outcome equations, queues, reasons, LLM accounting and workers, read from Redis.

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
            workers.append(WorkerStatus.from_beat(worker_id, beat, now))
        except (ValueError, TypeError, msgspec.ValidationError):
            continue  # a beat this version cannot read (another version's worker)
    workers.sort(key=lambda w: w.id)
    counters: dict[str, Any] = {
        n: stats.count(n) for n in ("retries", "reaped", "docs_queued", "requeued")
    }
    return CrawlStatus(
        crawl=frontier.keys.crawl,
        **{name: getattr(stats, name) for name in _FROM_FRONTIER},
        **counters,
        failed_reasons=stats.reasons("failed"),
        skipped_reasons=stats.reasons("skipped"),
        revisits=RevisitStatus(
            pass_no=stats.pass_no,
            revisits=stats.count("revisits"),
            known=stats.revisit_known,
            asleep=stats.asleep,
            due=stats.due_now,
            changes={
                k: v
                for outcome, kinds in (("done", ("changed", "unchanged")), ("failed", ("gone",)))
                for k, v in stats.reasons(outcome).items()
                if k in kinds
            },
        ),
        rejected=stats.reasons("rejected"),
        top_domains=[TopDomain(dom, n) for dom, n in stats.top_domains],
        docs=DocsStatus(
            **{name: getattr(d, name) for name in _FROM_DOCS},
            cache_hits=d.counts.get("docs_summarized:cached", 0),
            reaped=d.counts.get("docs_reaped", 0),
            dead=d.dead,
            requeued=d.counts.get("docs_requeued", 0),
            failed_reasons={
                k[len("docs_failed:") :]: v
                for k, v in d.counts.items()
                if k.startswith("docs_failed:")
            },
        ),
        llm={
            model: ModelUsage(
                prompt_tokens=prompt.get(model, 0),
                completion_tokens=completion.get(model, 0),
                cost_usd=round(cost.get(model, 0) / 1_000_000, 6),
            )
            for model in sorted(set(prompt) | set(completion))
        },
        workers=workers,
        backpressure=_backpressure(spec, d.pending + stats.in_flight, memory or {}, workers),
        seen=SeenStatus(spec.seen if spec else "set", stats.bloom),
        proxies=await _proxies(frontier, spec),
    )


async def _proxies(frontier: Frontier, spec: CrawlSpec | None) -> list[ProxyStatus]:
    if spec is None or not spec.proxies:
        return []
    health = await ProxyHealth(frontier.crawl_scripts).read()
    out = []
    for i, entry in enumerate(spec.proxies):
        proxy = parse_proxy_url(entry, i)
        failures, backoff_s = health.get(proxy.name, (0, 0.0))
        out.append(ProxyStatus(name=proxy.name, url=entry, failures=failures, backoff_s=backoff_s))
    return out


def _backpressure(
    spec: CrawlSpec | None, backlog: int, memory: dict[str, float], workers: list[WorkerStatus]
) -> Backpressure:
    bound = spec.max_docs_backlog if spec and spec.summarize else 0
    used = int(memory.get("redis_used_memory_bytes", 0))
    limit = int(memory.get("redis_maxmemory_bytes", 0))
    return Backpressure(
        docs_backlog=backlog,
        max_docs_backlog=bound,
        paused_on_backlog=bool(bound) and backlog >= bound,
        redis_used_memory=used,
        redis_maxmemory=limit,
        store_full=(limit > 0 and used >= limit)
        or any(w.paused == "store_full" for w in workers if w.alive),
    )


def render_status(status: CrawlStatus) -> str:
    """Plain text for a terminal."""
    s = status
    eq = "holds" if s.balanced else "DOES NOT HOLD"
    lines = [
        f"crawl {s.crawl}",
        f"  admitted {s.admitted} = done {s.done} + failed {s.failed}"
        f" + skipped {s.skipped} + pending {s.pending}   ({eq})",
        f"  pending: queued {s.queued}, delayed retries {s.delayed}, in flight {s.in_flight}",
        f"  domains {s.domains} (ready {s.ready_domains}), dead letters {s.dead_letters},"
        f" retries {s.retries}, reaped {s.reaped}, docs queued {s.docs_queued}"
        + (f", requeued {s.requeued}" if s.requeued else ""),
    ]
    r = s.revisits
    if r.known or r.pass_no > 1:
        found = ", ".join(f"{k} {v}" for k, v in sorted(r.changes.items())) or "nothing yet"
        lines.append(
            f"  pass {r.pass_no}: revisits {r.revisits} ({found}); pages kept for revisits"
            f" {r.known}, asleep {r.asleep}, due now {r.due}"
        )
    for title, counts in reason_groups(s):
        if counts:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"  {title}: {parts}")
    if s.top_domains:
        tops = ", ".join(f"{t.domain} {t.queued}" for t in s.top_domains)
        lines.append(f"  top queues: {tops}")
    docs = s.docs
    eq = "holds" if docs.balanced else "DOES NOT HOLD"
    lines.append(
        f"  docs {docs.queued} = summarized {docs.summarized} + failed {docs.failed}"
        f" + pending {docs.pending}   ({eq}); cache hits {docs.cache_hits}"
        + (f", dead letters {docs.dead}" if docs.dead else "")
        + (f", requeued {docs.requeued}" if docs.requeued else "")
    )
    for model, use in s.llm.items():
        lines.append(
            f"  llm {model}: prompt tokens {use.prompt_tokens}, completion tokens"
            f" {use.completion_tokens}, estimated cost ${use.cost_usd:.4f}"
        )
    lines += memory_lines(s)
    lines += proxy_lines(s)
    alive = [w for w in s.workers if w.alive]
    lines.append(f"  workers alive: {len(alive)}")
    for w in alive:
        lines.append(
            f"    {w.id}  in flight {w.in_flight}  done {w.counters.get('done', 0)}"
            f"  failed {w.counters.get('failed', 0)}  beat {w.age_s}s ago"
            + (f"  PAUSED ({w.paused})" if w.paused else "")
        )
    return "\n".join(lines)


def reason_groups(status: CrawlStatus) -> list[tuple[str, dict[str, int]]]:
    """The reason tables under their titles (failed, skipped, rejected at admission)."""
    return [
        ("failed", status.failed_reasons),
        ("skipped", status.skipped_reasons),
        ("rejected at admission", status.rejected),
    ]


def proxy_lines(status: CrawlStatus) -> list[str]:
    """The proxy pool's health, when the crawl has one."""
    if not status.proxies:
        return []
    parts = [
        f"{p.name} up"
        if p.up
        else f"{p.name} DOWN ({p.failures} failures, back in {p.backoff_s:.1f}s)"
        for p in status.proxies
    ]
    return ["  proxies: " + ", ".join(parts)]


def memory_lines(status: CrawlStatus) -> list[str]:
    """Why the crawl waits (backlog bound, full Redis) and the Bloom filters' state, if any."""
    lines: list[str] = []
    bp = status.backpressure
    if bp is None:
        return lines
    if bp.paused_on_backlog:
        lines.append(
            f"  PAUSED: the docs backlog is at its bound ({bp.docs_backlog} of"
            f" {bp.max_docs_backlog}): crawlers wait for the summarizers"
        )
    if bp.store_full:
        mb = 1024 * 1024
        lines.append(
            f"  WAITING: Redis is full (used {bp.redis_used_memory / mb:.1f} MB of maxmemory"
            f" {bp.redis_maxmemory / mb:.1f} MB) and refuses writes: workers retry until"
            " memory is freed or maxmemory raised"
        )
    bloom = status.seen.bloom
    if bloom is not None:
        size = bloom.bits / 8
        lines.append(
            f"  seen: Bloom filters, {bloom.urls} URLs in {bloom.filters} filter(s),"
            f" {size / 1024 / 1024:.1f} MB ({size / max(1, bloom.urls):.1f} B/URL);"
            " new URLs dropped as false positives (estimate):"
            f" {bloom.false_positives_est:.2f}"
        )
    return lines
