"""The `distcrawl` command: builds Settings once from flags and DISTCRAWL_* variables.

Every failure a user can cause (bad flag, bad URL, unreachable Redis, bad value) ends as one
line on stderr and a non-zero exit code, never a traceback:
2 usage or configuration, 3 Redis unreachable, 4 output (WARC files, records in a folder or S3
sink) could not be written or read, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import msgspec
from redis.asyncio import Redis

from common.docsqueue import DocsQueue
from common.errors import (
    ConfigError,
    DistcrawlError,
    InvalidUrl,
    OutputError,
    StoreUnavailable,
)
from common.heartbeat import Heartbeats
from common.lifecycle import Shutdown, run
from common.logging import configure_logging
from common.settings import Settings, build_settings
from common.sinks import SINK_REDIS
from common.store import EMBEDDED, is_cluster, redis_memory
from common.urls import canonicalize
from crawler.admission import Admitter
from crawler.frontier import Frontier
from crawler.produce import SeedLine, build_spec, produce, read_seed_lines
from crawler.proxies import configured_proxies
from crawler.sources import source_seed_lines
from crawler.status import crawl_status, render_status
from distcrawl import __version__
from distcrawl.crawlprocs import default_processes
from distcrawl.embedded import STORE_DIR, RunRequest, run_all
from distcrawl.export import export_pages, export_summaries
from distcrawl.requeue import requeue_command
from distcrawl.runtime import (
    CrawlRuntime,
    SummarizeRuntime,
    crawl_runtime,
    store_session,
    summarize_runtime,
)
from distcrawl.top import run_top

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"distcrawl: error: {message} (see `{self.prog} --help`)\n")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``6h``, ``1d`` or ``500ms``."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 6h, 1d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _common(p: argparse.ArgumentParser, *, redis_required: bool) -> None:
    g = p.add_argument_group("store")
    g.add_argument(
        "--redis",
        metavar="URL",
        help="redis://[user:pass@]host:port/db or rediss://"
        + ("" if redis_required else " (default: the embedded store, a private server)"),
    )
    g.add_argument("--crawl", metavar="NAME", help="crawl name (default: 'default')")
    o = p.add_argument_group("logging")
    o.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    o.add_argument("--log-format", choices=["text", "json"])


def _sources(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("seed sources (fetched like pages: --allow-private for local ones)")
    g.add_argument(
        "--sitemap",
        action="append",
        default=[],
        metavar="URL",
        help="seed every page a sitemap (or sitemap index, .xml or .xml.gz) lists (repeatable)",
    )
    g.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="URL",
        help="seed every entry of an RSS or Atom feed (repeatable)",
    )
    g.add_argument(
        "--sitemaps-from-robots",
        action="store_true",
        help="also seed what the sitemaps listed in each seed site's robots.txt list",
    )


def _scope(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scope and politeness (written into a new crawl's spec)")
    g.add_argument("--max-pages", type=_positive_int, metavar="N")
    g.add_argument("--max-depth", type=int, metavar="N")
    g.add_argument("--max-domain-pages", type=_positive_int, metavar="N")
    g.add_argument(
        "--allow-domain",
        action="append",
        default=[],
        metavar="D",
        help="crawl D and its subdomains (repeatable; default: the seeds' hosts)",
    )
    g.add_argument("--include", action="append", default=[], metavar="REGEX")
    g.add_argument("--exclude", action="append", default=[], metavar="REGEX")
    g.add_argument("--rate", type=float, metavar="R", help="requests/s per domain (default 2)")
    g.add_argument("--burst", type=int, metavar="B", help="token bucket size (default 4)")
    g.add_argument("--per-domain-inflight", type=int, metavar="K", help="default 4")
    g.add_argument("--max-attempts", type=int, metavar="N", help="default 3")
    g.add_argument("--no-robots", action="store_true", help="ignore robots.txt")
    g.add_argument(
        "--follow-feeds",
        action="store_true",
        default=None,
        help="follow the RSS/Atom feeds pages advertise (<link rel=alternate>): their items "
        "become seeds, and the feeds are read again at every pass",
    )


def _revisits(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("revisits (written into a new crawl's spec; docs/revisits.md)")
    g.add_argument(
        "--revisit-after",
        type=_duration,
        metavar="DURATION",
        help="revisit each done page this long after its visit (30s, 15m, 6h, 1d; default: "
        "only when a new pass starts); the interval then halves when the page changed and "
        "doubles when it did not",
    )
    g.add_argument(
        "--revisit-min", type=_duration, metavar="DURATION", help="shortest interval (after/4)"
    )
    g.add_argument(
        "--revisit-max", type=_duration, metavar="DURATION", help="longest interval (after*16)"
    )
    g.add_argument(
        "--no-revisit",
        action="store_true",
        help="keep no revisit state (validators, text hash) for done pages: a one-off crawl "
        "saves ~150 bytes of Redis per page (the default with --seen bloom)",
    )


def _memory(p: argparse.ArgumentParser, *, llm_budget: bool) -> None:
    g = p.add_argument_group("summarizer stage and memory (written into a new crawl's spec)")
    g.add_argument(
        "--no-summarize", action="store_true", help="no summarizer stage: pages make no docs"
    )
    g.add_argument(
        "--max-docs-backlog",
        type=int,
        metavar="N",
        help="docs waiting for (or in) the summarizers before crawlers pause (default 5000)",
    )
    g.add_argument(
        "--seen", choices=["set", "bloom"], help="seen URLs: exact set (default) or Bloom filters"
    )
    g.add_argument(
        "--shards",
        type=int,
        metavar="S",
        help="split the frontier and docs queue in S parts, each in its own Redis Cluster slot"
        " (default: 1 on a single Redis, 16 on a cluster; fixed when the crawl is created)",
    )
    g.add_argument(
        "--sink",
        metavar="URL",
        help="where page and summary records go: redis (default: hashes in Redis), a folder "
        "(path or file:///path: JSONL segments per worker) or s3://bucket/prefix (credentials "
        "from the AWS environment/config chain); export reads from there",
    )
    g.add_argument("--seen-error", type=float, metavar="P", help="Bloom error rate (1e-6)")
    g.add_argument(
        "--seen-capacity", type=int, metavar="N", help="URLs in the first Bloom filter (1e6)"
    )
    if llm_budget:  # (run has them with the other summarizer flags)
        g.add_argument(
            "--llm-max-input-tokens",
            type=int,
            metavar="N",
            help="the summarizers' input budget: docs carry 6 characters per token of it",
        )
        _long_pages(g)


def _long_pages(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--llm-long-pages",
        choices=["map-reduce", "cut"],
        help="a page over the input budget: map-reduce (default: chunks, then a reduce) or cut "
        "(its beginning only)",
    )
    g.add_argument(
        "--llm-max-doc-tokens",
        type=int,
        metavar="N",
        help="what one doc may spend over all its calls (default 5 x the input budget); with "
        "map-reduce docs carry 6 characters per token of it",
    )


def _worker(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("worker")
    g.add_argument("--concurrency", type=int, metavar="C", help="pages in flight (default 64)")
    g.add_argument("--metrics-port", type=int, metavar="P", help="serve /metrics on this port")
    g.add_argument("--grace", type=float, metavar="S", help="drain time on SIGTERM (default 10)")
    g.add_argument("--max-body-bytes", type=int, metavar="N", help="default 5 MiB")
    g.add_argument("--user-agent", metavar="UA")
    g.add_argument(
        "--extractor",
        metavar="MODULE:FUNCTION",
        help="call FUNCTION(url, final_url, html, tree) on every page; its dict is the record's"
        " data (crawler/extractor.py)",
    )
    g.add_argument(
        "--allow-private",
        action="store_true",
        default=None,
        help="allow fetching loopback/private addresses (local sites)",
    )
    w = p.add_argument_group("WARC output (this worker's own files)")
    w.add_argument(
        "--warc",
        metavar="DIR",
        help="write every request and response to .warc.gz files in DIR",
    )
    w.add_argument(
        "--warc-max-bytes",
        type=int,
        metavar="N",
        help="start the next WARC file at this size (default 1 GiB)",
    )
    w.add_argument(
        "--warc-gzip-level",
        type=int,
        metavar="L",
        help="gzip level 1-9 of each WARC record (default 6; 4 or 2 take 0.7x or 0.6x the "
        "CPU of an archived page for files a tenth or a quarter bigger)",
    )


def _statuses(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give HTTP statuses like 403,429 (got {text!r})"
        ) from None


def _proxy(p: argparse.ArgumentParser, *, worker: bool) -> None:
    g = p.add_argument_group(
        "proxies (the crawl's pool is written into its spec, passwords redacted; a worker "
        "gives the passwords with --proxy-file or DISTCRAWL_PROXY__URLS)"
    )
    g.add_argument(
        "--proxy",
        action="append",
        default=[],
        metavar="URL",
        help="http://, https:// or socks5://[user@]host:port[#name] (repeatable; no password "
        "here: a command line is visible to every user of the host)",
    )
    g.add_argument("--proxy-file", metavar="F", help="proxy URLs, one a line (passwords allowed)")
    if worker:
        g.add_argument(
            "--proxy-rotate-on",
            type=_statuses,
            metavar="STATUSES",
            help="statuses that also count as the proxy failing, e.g. 403,429",
        )
        g.add_argument(
            "--allow-private-proxy",
            action="store_true",
            default=None,
            help="allow proxies on loopback/private addresses",
        )


def _llm(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "summarizer (the API key comes only from OPENAI_API_KEY, "
        "DISTCRAWL_LLM__API_KEY or DISTCRAWL_LLM__API_KEY_FILE)"
    )
    g.add_argument(
        "--summarizer",
        metavar="KIND",
        help="auto (default) | openai | extractive | module:function",
    )
    g.add_argument("--llm-base-url", metavar="URL", help="any OpenAI-compatible API")
    g.add_argument("--llm-model", metavar="NAME")
    g.add_argument("--llm-rpm", type=int, metavar="N", help="requests/minute, all processes")
    g.add_argument("--llm-tpm", type=int, metavar="N", help="tokens/minute, all processes")
    g.add_argument(
        "--llm-limit-window",
        type=float,
        metavar="S",
        help="the window the provider counts --llm-rpm/--llm-tpm in (default 60 s)",
    )
    g.add_argument("--llm-profiles", metavar="FILE", help="per-site model/prompt profiles (JSON)")
    g.add_argument(
        "--llm-mode",
        choices=("live", "batch"),
        help="live: a call per doc (default); batch: the provider's Batch API, at its price "
        "(DISTCRAWL_LLM__BATCH_* tune it)",
    )
    g.add_argument("--llm-max-input-tokens", type=int, metavar="N")
    _long_pages(g)
    g.add_argument(
        "--llm-schema",
        metavar="FILE",
        help="a JSON Schema: extract data validated against it instead of summarizing",
    )
    g.add_argument(
        "--llm-response-format",
        choices=["auto", "json_schema", "json_object"],
        help="how extraction asks for JSON (default auto: json_schema, json_object after a "
        "400 that names response_format)",
    )
    g.add_argument(
        "--llm-cache-ttl",
        metavar="DURATION",
        help="how long a summary stays in the summary cache (shared by the crawls on this "
        "Redis) after its last use: seconds or 30d, 12h, 90m (default 30d; 0: for ever)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="distcrawl", description="Distributed async web crawler on Redis.")
    parser.add_argument("--version", action="version", version=f"distcrawl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="produce, crawl (and summarize) on this machine")
    p.add_argument("seeds", nargs="*", metavar="SEED")
    p.add_argument("--file", action="append", default=[], metavar="F", help="seed file, - = stdin")
    p.add_argument("--out", type=Path, default=Path("out"), metavar="DIR")
    p.add_argument("--demo", action="store_true", help="serve and crawl a local demo site")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--llm-concurrency", type=int, metavar="C", help="LLM calls in flight")
    p.add_argument("--fresh", action="store_true", help="delete DIR/.store first: start over")
    p.add_argument(
        "--processes", type=int, metavar="N", help="crawl processes (default: the CPU count)"
    )
    _sources(p)
    _common(p, redis_required=False)
    _scope(p)
    _revisits(p)
    _memory(p, llm_budget=False)
    _worker(p)
    _proxy(p, worker=True)
    _llm(p)

    p = sub.add_parser("produce", help="add seeds (and the spec, for a new crawl) to Redis")
    p.add_argument("seeds", nargs="*", metavar="SEED")
    p.add_argument("--file", action="append", default=[], metavar="F", help="seed file, - = stdin")
    _sources(p)
    p.add_argument(
        "--allow-private",
        action="store_true",
        default=None,
        help="allow sitemaps and feeds on loopback/private addresses (local sites)",
    )
    p.add_argument(
        "--recrawl",
        action="store_true",
        help="start a new pass: every page the crawl knows is revisited now (conditional GETs;"
        " only new and changed pages reach the summarizers)",
    )
    _common(p, redis_required=True)
    _scope(p)
    _revisits(p)
    _memory(p, llm_budget=True)
    _proxy(p, worker=False)

    p = sub.add_parser("crawl", help="run a crawl worker")
    p.add_argument("--drain", action="store_true", help="exit 0 once nothing is pending")
    _common(p, redis_required=True)
    _worker(p)
    _proxy(p, worker=True)

    p = sub.add_parser("summarize", help="run a summarizer worker")
    p.add_argument(
        "--drain",
        action="store_true",
        help="exit 0 once no doc is pending and the crawl has nothing pending",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        metavar="C",
        dest="llm_concurrency",
        help="docs in flight (default 32)",
    )
    p.add_argument("--metrics-port", type=int, metavar="P")
    p.add_argument("--grace", type=float, metavar="S")
    _common(p, redis_required=True)
    _llm(p)

    p = sub.add_parser("status", help="show a crawl's state")
    p.add_argument("--json", action="store_true")
    _common(p, redis_required=True)

    p = sub.add_parser("top", help="a live terminal view of a crawl (for people without Grafana)")
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between refreshes (default 2)",
    )
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    _common(p, redis_required=True)

    p = sub.add_parser(
        "health",
        help="exit 0 if this host's worker answers /healthz with 200 "
        "(Redis reachable, heartbeat fresh): for container health checks",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="the worker's metrics port (default: DISTCRAWL_METRICS_PORT)",
    )
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="default 3")

    p = sub.add_parser(
        "export",
        help="write pages and summaries (one record per URL) from the crawl's sink to DIR",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--format",
        choices=["jsonl", "parquet"],
        default="jsonl",
        help="jsonl (default: pages.jsonl, summaries.jsonl) or parquet (pages.parquet ...)",
    )
    p.add_argument(
        "--since",
        type=_positive_int,
        metavar="PASS",
        help="also write changes.jsonl: the pages passes PASS and later found new, changed or gone",
    )
    _common(p, redis_required=True)
    _requeue_parser(sub)
    return parser


def _requeue_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "requeue",
        help="put dead letters (URLs, or with --docs docs) back in their queues with fresh "
        "attempts, after an outage",
    )
    p.add_argument("--docs", action="store_true", help="the dead docs instead of the dead URLs")
    p.add_argument("--reason", metavar="R", help="only those that failed with R (e.g. http_503)")
    p.add_argument("--domain", metavar="D", help="only those of D (host[:port], as status says)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="the crawl of `distcrawl run --out DIR` (its embedded store), instead of --redis",
    )
    _common(p, redis_required=True)


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Flags given on the command line override DISTCRAWL_* variables and defaults.

    OPENAI_API_KEY and OPENAI_BASE_URL are honoured too (read here, at the edge, only)."""

    def given(**pairs: Any) -> dict[str, Any]:
        return {k: v for k, v in pairs.items() if v is not None}

    a = vars(args)
    if a.get("llm_rpm") is not None and a["llm_rpm"] < 0:
        raise ConfigError(f"--llm-rpm must be >= 0 (got {a['llm_rpm']})")
    frontier = given(
        rate=a.get("rate"),
        burst=a.get("burst"),
        per_domain_inflight=a.get("per_domain_inflight"),
        max_attempts=a.get("max_attempts"),
        max_depth=a.get("max_depth"),
        max_pages=a.get("max_pages"),
        max_domain_pages=a.get("max_domain_pages"),
        obey_robots=False if a.get("no_robots") else None,
        summarize=False if a.get("no_summarize") else None,
        max_docs_backlog=a.get("max_docs_backlog"),
        seen=a.get("seen"),
        seen_error=a.get("seen_error"),
        seen_capacity=a.get("seen_capacity"),
        shards=a.get("shards"),
        sink=a.get("sink"),
        revisit=False if a.get("no_revisit") else None,
        follow_feeds=a.get("follow_feeds"),
        revisit_after_s=a.get("revisit_after"),
        revisit_min_s=a.get("revisit_min"),
        revisit_max_s=a.get("revisit_max"),
    )
    fetch = given(max_body_bytes=a.get("max_body_bytes"), user_agent=a.get("user_agent"))
    crawler = given(concurrency=a.get("concurrency"), extractor=a.get("extractor"))
    warc = given(
        dir=a.get("warc"), max_bytes=a.get("warc_max_bytes"), gzip_level=a.get("warc_gzip_level")
    )
    worker = given(grace_s=a.get("grace"))
    proxy = _proxy_settings(a, env)
    llm = given(
        summarizer=a.get("summarizer"),
        base_url=a.get("llm_base_url") or env.get("OPENAI_BASE_URL"),
        model=a.get("llm_model"),
        rpm=a.get("llm_rpm"),
        tpm=a.get("llm_tpm"),
        limit_window_s=a.get("llm_limit_window"),
        profiles_file=a.get("llm_profiles"),
        mode=a.get("llm_mode"),
        schema_file=a.get("llm_schema"),
        response_format=a.get("llm_response_format"),
        max_input_tokens=a.get("llm_max_input_tokens"),
        long_pages=a.get("llm_long_pages"),
        max_doc_tokens=a.get("llm_max_doc_tokens"),
        cache_ttl_s=a.get("llm_cache_ttl"),
        concurrency=a.get("llm_concurrency"),
    )
    if env.get("OPENAI_API_KEY") and not env.get("DISTCRAWL_LLM__API_KEY"):
        llm["api_key"] = env["OPENAI_API_KEY"]
    top = given(
        redis=a.get("redis"),
        crawl=a.get("crawl"),
        log_level=a.get("log_level"),
        log_format=a.get("log_format"),
        metrics_port=a.get("metrics_port"),
        allow_private=a.get("allow_private"),
    )
    sections = {
        k: v
        for k, v in (
            ("frontier", frontier),
            ("fetch", fetch),
            ("worker", worker),
            ("crawler", crawler),
            ("warc", warc),
            ("proxy", proxy),
            ("llm", llm),
        )
        if v
    }
    return build_settings(**top, **sections)


def _proxy_settings(a: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """--proxy URLs (refused with a password: argv is public) join DISTCRAWL_PROXY__URLS."""
    flags: list[str] = a.get("proxy") or []
    for i, url in enumerate(flags, 1):
        if urlsplit(url).password is not None if "://" in url else False:
            raise ConfigError(
                f"--proxy #{i} carries a password: put the URL in --proxy-file F or "
                "DISTCRAWL_PROXY__URLS (a command line is visible to every user of the host)"
            )
    proxy: dict[str, Any] = {}
    if flags:
        from_env = build_settings().proxy.urls if env.get("DISTCRAWL_PROXY__URLS") else ()
        proxy["urls"] = [u.get_secret_value() for u in from_env] + flags
    if a.get("proxy_file") is not None:
        proxy["file"] = a["proxy_file"]
    if a.get("proxy_rotate_on") is not None:
        proxy["rotate_on"] = a["proxy_rotate_on"]
    if a.get("allow_private_proxy") is not None:
        proxy["allow_private"] = a["allow_private_proxy"]
    return proxy


def _check_argv_seeds(seeds: list[str]) -> None:
    """A typo on the command line is a usage error: nothing is admitted. (Seed files and stdin
    are checked line by line instead, so one bad line does not stop the good ones.)"""
    for i, seed in enumerate(seeds, 1):
        try:
            canonicalize(seed)
        except InvalidUrl as exc:
            raise ConfigError(f"invalid seed #{i}: {exc}") from exc


def _need_server(settings: Settings, command: str) -> None:
    if settings.redis == EMBEDDED:
        raise ConfigError(
            f"`distcrawl {command}` needs --redis URL (or DISTCRAWL_REDIS): "
            "the embedded store is private to one `distcrawl run` process"
        )


async def _source_lines(
    settings: Settings, args: argparse.Namespace, seeds: list[SeedLine]
) -> list[SeedLine]:
    """--sitemap, --feed and, with --sitemaps-from-robots, the sitemaps the seeds' sites list."""
    if args.sitemaps_from_robots and not seeds:
        raise ConfigError(
            "--sitemaps-from-robots reads the robots.txt of each seed's site: "
            "give a SEED or --file F"
        )
    robots_of = seeds if args.sitemaps_from_robots else []
    return await source_seed_lines(settings, args.sitemap, args.feed, robots_of=robots_of)


async def _produce(settings: Settings, args: argparse.Namespace) -> int:
    lines = list(read_seed_lines(args.seeds, args.file))
    lines += await _source_lines(settings, args, lines)
    async with store_session(settings, existing=args.recrawl) as (redis, frontier):
        spec = build_spec(
            settings,
            [s.text for s in lines],
            allow_domains=args.allow_domain,
            include=args.include,
            exclude=args.exclude,
            cluster=is_cluster(redis),
        )
        current = await frontier.init(spec)
        pass_no = await frontier.next_pass() if args.recrawl else None
        report = await produce(Admitter(frontier, current), lines)
        if pass_no is not None:  # (after the seeds: a sitemap may have said what is unmodified)
            woken = await frontier.wake()
            print(f"pass {pass_no} of crawl {settings.crawl!r}: {woken} known pages to revisit")
    asked = msgspec.structs.replace(
        spec,
        seeds=current.seeds,
        allowed_domains=spec.allowed_domains if args.allow_domain else current.allowed_domains,
    )
    if current != asked:
        print(
            f"distcrawl: note: crawl {settings.crawl!r} already has a spec (rate "
            f"{current.rate}/s, allowed domains {', '.join(current.allowed_domains) or 'any'}):"
            " this producer's scope and politeness flags are ignored",
            file=sys.stderr,
        )
    for error in report.errors:
        print(f"distcrawl: skipped seed {error}", file=sys.stderr)
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(report.rejected.items())) or "none"
    print(f"admitted {report.admitted} seeds to crawl {settings.crawl!r} (rejected: {rejected})")
    return 0 if not report.errors else 1


R = TypeVar("R", CrawlRuntime, SummarizeRuntime)


async def _work(
    settings: Settings,
    drain: bool,
    runtime: Callable[[Redis, Frontier, Shutdown], contextlib.AbstractAsyncContextManager[R]],
) -> R:
    """One worker process: its runtime on one store session, run until drained or stopped;
    the error that stopped it, if one did, raised."""
    shutdown = Shutdown()
    shutdown.install()
    async with (
        store_session(settings) as (redis, frontier),
        runtime(redis, frontier, shutdown) as rt,
    ):
        await rt.worker.run(drain=drain)
    rt.check_output()
    return rt


def _finished(worker: str, counts: str, released: int) -> int:
    print(f"{worker} finished: {counts}, released {released}", file=sys.stderr)
    return 0


async def _crawl(settings: Settings, args: argparse.Namespace) -> int:
    rt = await _work(settings, args.drain, lambda r, f, stop: crawl_runtime(settings, r, f, stop))
    s = rt.worker.stats
    counts = f"done {s.done}, failed {s.failed}, skipped {s.skipped}"
    return _finished("crawl worker", counts, rt.worker.released)


async def _summarize(settings: Settings, args: argparse.Namespace) -> int:
    rt = await _work(
        settings, args.drain, lambda r, f, stop: summarize_runtime(settings, r, f.keys, stop)
    )
    s = rt.worker.stats
    counts = f"summarized {s.summarized} ({s.cached} from cache), failed {s.failed}"
    return _finished("summarizer", counts, rt.worker.released)


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    async with store_session(settings, existing=True) as (redis, frontier):
        status = await crawl_status(
            frontier,
            DocsQueue(redis, frontier.keys),
            Heartbeats(redis, frontier.keys),
            memory=await redis_memory(redis),
        )
    print(json.dumps(status.to_json(), indent=2) if args.json else render_status(status))
    return 0


async def _top(settings: Settings, args: argparse.Namespace) -> int:
    return await run_top(settings, interval_s=args.interval, once=args.once)


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    async with store_session(settings, existing=True) as (redis, frontier):
        spec = await frontier.spec()
        sink = spec.sink if spec is not None else SINK_REDIS
        changes = None if args.since is None else ("changes", args.since)
        pages = await export_pages(frontier, args.out, sink=sink, fmt=args.format, changes=changes)
        exported = await export_summaries(
            DocsQueue(redis, frontier.keys), args.out, sink=sink, fmt=args.format
        )
    print(f"wrote {pages.describe()} and {exported.describe()}")
    return 0


def _health(settings: Settings, args: argparse.Namespace) -> int:
    """Synchronous on purpose: a health probe needs no event loop and must start fast."""
    if settings.metrics_port is None:
        raise ConfigError("give --metrics-port P (or DISTCRAWL_METRICS_PORT)")
    url = f"http://{args.host}:{settings.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    print(f"{'healthy' if status == 200 else 'unhealthy'}: {url} answered {status}")
    return 0 if status == 200 else 1


async def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command in ("run", "produce"):
        _check_argv_seeds(args.seeds)
    if args.command in ("run", "produce", "crawl"):
        configured_proxies(settings.proxy)  # a bad proxy URL is one error line, before all
    if args.command == "run":
        resumable = settings.redis == EMBEDDED and (args.out / STORE_DIR).is_dir()
        given_seeds = args.seeds or args.file or args.sitemap or args.feed
        if not given_seeds and not args.demo and not resumable:
            raise ConfigError(
                "give at least one SEED, --file F, --sitemap URL, --feed URL or --demo"
            )
        processes = default_processes() if args.processes is None else args.processes
        if processes < 1:
            raise ConfigError(f"--processes must be >= 1 (got {processes})")
        seeds = list(read_seed_lines(args.seeds, args.file))
        seeds += await _source_lines(settings, args, seeds)
        request = RunRequest(
            seeds=seeds,
            out=args.out,
            allow_domains=args.allow_domain,
            include=args.include,
            exclude=args.exclude,
            demo=args.demo,
            progress=not args.no_progress,
            fresh=args.fresh,
            processes=processes,
        )
        if args.demo:  # our own local site: private address allowed, politeness raised
            frontier = settings.frontier.model_copy(
                update={
                    "rate": args.rate or 50.0,
                    "burst": args.burst or 20,
                }
            )
            settings = settings.model_copy(update={"allow_private": True, "frontier": frontier})
        return await run_all(settings, request)
    if args.command == "requeue":  # (--out DIR: the embedded store of a run, opened here)
        return await requeue_command(
            settings, out=args.out, docs=args.docs, reason=args.reason, domain=args.domain
        )
    _need_server(settings, args.command)
    handlers = {
        "produce": _produce,
        "crawl": _crawl,
        "summarize": _summarize,
        "status": _status,
        "top": _top,
        "export": _export,
    }
    return await handlers[args.command](settings, args)


def _secrets(settings: Settings | None) -> list[str]:
    if settings is None:
        return []
    found = [settings.llm.api_key.get_secret_value()] if settings.llm.api_key else []
    password = urlsplit(settings.redis).password if "://" in settings.redis else None
    for url in settings.proxy.urls:  # (the file's are redacted where errors are made)
        with contextlib.suppress(ValueError):
            found.append(urlsplit(url.get_secret_value()).password or "")
    return [s for s in [*found, password] if s and len(s) >= 4]


def _fail(exc: Exception, settings: Settings | None) -> None:
    text = str(exc)
    for secret in _secrets(settings):
        text = text.replace(secret, "***")
    print(f"distcrawl: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = _settings(args, os.environ)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "health":
            return _health(settings, args)
        return run(_dispatch(settings, args))
    except StoreUnavailable as exc:
        _fail(exc, settings)
        return 3
    except OutputError as exc:
        _fail(exc, settings)
        return 4
    except DistcrawlError as exc:
        _fail(exc, settings)
        return 2
    except KeyboardInterrupt:
        print("distcrawl: interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        return 130


if __name__ == "__main__":
    sys.exit(main())
