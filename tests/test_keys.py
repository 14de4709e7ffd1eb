"""Key names: one place, one cluster slot, and the Lua scripts agree with CrawlKeys."""

from __future__ import annotations

import enum
import json

import pytest
from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from common.docsqueue import DocOp
from common.errors import ConfigError
from common.keys import (
    FIXED_KEYS,
    PART_KEYS,
    SUMMARY_CACHE_MATCH,
    CrawlKeys,
    summary_cache_key,
    summary_lock_key,
)
from common.protocol import (
    ADMIT_FIELDS,
    DOC_OP_FIELDS,
    SETTLE_FIELDS,
    AdmitCode,
    CacheProbe,
    ClaimWait,
    DocKind,
    DocResult,
    Outcome,
    SettleKind,
    SettleResult,
)
from common.scripts import script_source
from common.spec import CrawlSpec
from crawler.frontier import Frontier, SettleOp
from summarizer.cache import content_key
from tests.helpers import FakeClock, make_frontier


def test_every_key_of_a_crawl_hashes_to_one_slot() -> None:
    keys = CrawlKeys("news-2026")
    names = [*keys.all_fixed(), keys.queue("example.com"), keys.domain("a.b.example.org:8080")]
    slots = {key_slot(name.encode()) for name in names}
    assert len(slots) == 1
    assert all(name.startswith("distcrawl:{news-2026}:") for name in names)


def test_two_crawls_use_disjoint_keys() -> None:
    a, b = CrawlKeys("a"), CrawlKeys("b")
    assert not set(a.all_fixed()) & set(b.all_fixed())


def test_the_summary_cache_belongs_to_no_crawl_and_spreads_over_the_slots() -> None:
    """An entry and its lock share one slot (the probe script touches both); the names hold no
    crawl, and their tags spread entries evenly over the slot space (so over a cluster's
    masters, which own contiguous thirds of it in the test cluster)."""
    keys = [content_key(("model", "prompt"), f"text {i}") for i in range(3000)]
    for key in keys[:100]:
        entry, lock = summary_cache_key(key), summary_lock_key(key)
        assert key_slot(entry.encode()) == key_slot(lock.encode())
        assert entry.startswith("distcrawl:summary-cache:{")
        assert key in entry
    crawl = CrawlKeys("summary-cache")  # even a crawl of that name has other keys
    assert not any(name.startswith(SUMMARY_CACHE_MATCH[:-1]) for name in crawl.all_fixed())
    slots = [key_slot(summary_cache_key(k).encode()) for k in keys]
    assert len(set(slots)) > 2500
    thirds = [sum(1 for s in slots if s * 3 // REDIS_CLUSTER_HASH_SLOTS == t) for t in range(3)]
    assert min(thirds) > 800, thirds


@pytest.mark.parametrize("bad", ["", "has space", "brace{", "x" * 65, "-lead"])
def test_invalid_crawl_names_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid crawl name"):
        CrawlKeys(bad)


async def test_scripts_only_write_keys_that_crawlkeys_names(
    store: Redis, crawl_keys: CrawlKeys
) -> None:
    clock = FakeClock()
    frontier, admitter = await make_frontier(
        store, crawl_keys, CrawlSpec(max_attempts=2, lease_s=1), clock
    )
    await admitter.admit(["http://a.test/1", "http://b.test:8080/2"], depth=0)
    claim = await frontier.claim("w", 2)
    await frontier.ack("w", claim.leases[0].fp, Outcome.DONE, record="{}")
    await frontier.retry("w", claim.leases[1].fp, "http_500", delay_s=5)
    clock.advance(6000)
    claim = await frontier.claim("w", 1)
    clock.advance(2000)
    await frontier.reap()
    assert (await frontier.requeue()).count == 1
    expected = set(crawl_keys.all_fixed())
    for d in ("a.test", "b.test:8080"):
        expected |= {crawl_keys.queue(d), crawl_keys.domain(d)}
    present = {k async for k in store.scan_iter(match=crawl_keys.prefix + "*")}
    assert present, "the scripts wrote nothing"
    assert present <= expected, present - expected


async def test_lua_sees_the_python_spec_defaults(store: Redis, crawl_keys: CrawlKeys) -> None:
    """With no spec written, the SPEC table every script builds equals CrawlSpec()'s fields;
    with one written, it equals that spec's."""
    prelude = script_source("stats").split("-- One atomic snapshot")[0]
    probe = prelude + "\nreturn cjson.encode(SPEC)"

    async def seen_by_lua() -> dict[str, object]:
        raw = await store.eval(probe, 1, crawl_keys.spec, crawl_keys.prefix, "")
        return dict(json.loads(str(raw)))

    def expected(spec: CrawlSpec) -> dict[str, object]:
        fields = spec.lua_fields()
        out: dict[str, object] = {k: float(v) for k, v in fields.items() if k != "seen"}
        out["summarize"] = spec.summarize
        out["seen"] = spec.seen
        return out

    assert await seen_by_lua() == expected(CrawlSpec())
    custom = CrawlSpec(rate=0.5, lease_s=7, max_attempts=9, summarize=False, seen="bloom")
    await Frontier(store, crawl_keys).init(custom)
    assert await seen_by_lua() == expected(custom)


async def test_lua_key_names_are_the_python_ones(store: Redis, crawl_keys: CrawlKeys) -> None:
    """Every script's key names come from common.keys (generated header): each K_<NAME> and
    <name>_key(part) Lua builds equals CrawlKeys' name for it."""
    header = script_source("stats").split("-- One atomic snapshot")[0]
    fixed = ", ".join(f"{name} = K_{name.upper()}" for name in FIXED_KEYS)
    parts = ", ".join(f"{name} = {name}_key('x.test')" for name in PART_KEYS)
    probe = f"{header}\nreturn cjson.encode({{{fixed}, {parts}}})"
    raw = await store.eval(probe, 1, crawl_keys.spec, crawl_keys.prefix, "")
    seen_by_lua = json.loads(str(raw))
    expected = {name: getattr(crawl_keys, name) for name in FIXED_KEYS}
    expected |= {name: getattr(crawl_keys, name)("x.test") for name in PART_KEYS}
    assert seen_by_lua == expected
    assert set(FIXED_KEYS.values()).isdisjoint(p.rstrip(":") for p in PART_KEYS.values())


async def test_lua_sees_the_python_protocol(store: Redis, crawl_keys: CrawlKeys) -> None:
    """Field offsets, group widths, kinds and result codes: the tables every script sees are
    common.protocol's declarations, and the ARGV groups Python builds follow them."""
    header = script_source("stats").split("-- One atomic snapshot")[0]
    tables: dict[str, tuple[str, ...] | type[enum.Enum]] = {
        "ADMIT": ADMIT_FIELDS, "SETTLE": SETTLE_FIELDS, "DOC_OP": DOC_OP_FIELDS,
        "ADMIT_CODE": AdmitCode, "SETTLE_KIND": SettleKind, "SETTLE_RESULT": SettleResult,
        "DOC_KIND": DocKind, "DOC_RESULT": DocResult, "CACHE_PROBE": CacheProbe,
        "CLAIM_WAIT": ClaimWait, "OUTCOME": Outcome,
    }  # fmt: skip
    probe = f"{header}\nreturn cjson.encode({{{', '.join(f'{t} = {t}' for t in tables)}}})"
    raw = await store.eval(probe, 1, crawl_keys.spec, crawl_keys.prefix, "")
    seen = json.loads(str(raw))
    for name, declared in tables.items():
        if isinstance(declared, tuple):
            expected = {field: i for i, field in enumerate(declared)} | {"width": len(declared)}
        else:
            expected = {member.name: member.value for member in declared}
        assert seen[name] == expected, name
    op = SettleOp.retry("f" * 16, "timeout", delay_s=1.5, retry_after_s=2, record="{}", attempt=3)
    assert dict(zip(SETTLE_FIELDS, op.args(), strict=True)) == {
        "kind": "retry", "fp": "f" * 16, "outcome": "", "reason": "timeout", "delay_ms": "1500",
        "retry_after_ms": "2000", "record": "{}", "doc": "", "attempt": "3", "revisit_ms": "",
        "revisit": "",
    }  # fmt: skip
    doc = DocOp(DocKind.FAILED, "d" * 16, reason="http_400", model="m", prompt_tokens=5)
    assert len(doc.args()) == len(DOC_OP_FIELDS)
    assert dict(zip(DOC_OP_FIELDS, doc.args(), strict=True))["prompt_tokens"] == "5"
