"""The Lua scripts (frontier, docs queue, LLM buckets): loaded once per client, run by EVALSHA.

Each script is the shared prelude, the function libraries it uses (``lib_*.lua``), then its own
file. redis-py's Script object sends
EVALSHA and reloads the source on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from common.keys import FIXED_KEYS, PART_KEYS, CrawlKeys
from common.protocol import lua_header
from common.spec import CrawlSpec
from common.store import translate_errors

__all__ = [
    "SCRIPT_NAMES",
    "CrawlScripts",
    "ScriptRunner",
    "keys_header",
    "script_source",
    "spec_defaults_header",
]

# Each crawl script is the prelude, the function libraries it uses, then its own file.
_LIBRARIES: dict[str, tuple[str, ...]] = {
    "admit": ("lib_seen", "lib_admit"),
    "settle": ("lib_settle",),
    "commit": ("lib_seen", "lib_admit", "lib_settle"),
    "docs_settle": ("lib_docs_dead",),
    "docs_reap": ("lib_docs_dead",),
    "requeue": ("lib_requeue",),
    "docs_requeue": ("lib_requeue",),
}
SCRIPT_NAMES = (
    "admit",
    "claim",
    "settle",
    "commit",
    "renew",
    "reap",
    "domain",
    "stats",
    "spec_init",
    "docs_claim",
    "docs_settle",
    "docs_renew",
    "docs_reap",
    "docs_stats",
    "summary_cache_probe",
    "llm_acquire",
    "proxy_health",
    "llm_batches",
    "revisit",
    "requeue",
    "docs_requeue",
)


# Scripts outside any crawl (the shared summary cache): they get their keys in KEYS (one slot)
# and only the protocol header, no crawl prefix and no prelude (which reads the crawl's spec).
_CRAWL_FREE = frozenset({"summary_cache_probe"})


def keys_header() -> str:
    """Lua source declaring the crawl's key names (common.keys.FIXED_KEYS as ``K_<NAME>``, and
    PART_KEYS as ``<name>_key(part)`` functions) from the prefix in ARGV[1]."""
    lines = ["local P = ARGV[1]"]
    lines += [
        f"local K_{name.upper()} = P .. {json.dumps(sfx)}" for name, sfx in FIXED_KEYS.items()
    ]
    lines += [
        f"local function {name}_key(part) return P .. {json.dumps(pre)} .. part end"
        for name, pre in PART_KEYS.items()
    ]
    return "\n".join(lines)


def spec_defaults_header() -> str:
    """Lua source declaring SPEC_DEFAULTS: the spec fields Lua reads, with CrawlSpec's
    defaults (generated, so that no default is written twice)."""
    fields = CrawlSpec().lua_fields()
    body = ", ".join(f"{name} = {json.dumps(value)}" for name, value in fields.items())
    return f"local SPEC_DEFAULTS = {{{body}}}"


@cache
def script_source(name: str) -> str:
    """The full source of one script, as sent to Redis: the generated header, the prelude, the
    function libraries it uses, then its own file (a script outside any crawl: the protocol
    header and its own file)."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    lua = resources.files("common") / "lua"
    if name in _CRAWL_FREE:
        return "\n".join([lua_header(), (lua / f"{name}.lua").read_text()])
    parts = ["prelude", *_LIBRARIES.get(name, ()), name]
    return "\n".join(
        [
            keys_header(),
            spec_defaults_header(),
            lua_header(),
            *((lua / f"{part}.lua").read_text() for part in parts),
        ]
    )


class ScriptRunner:
    """Runs the named scripts on one Redis client; callers never see EVALSHA, KEYS or ARGV."""

    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    async def run(self, name: str, keys: list[str], args: list[str | int | float]) -> Any:
        async with translate_errors():
            return await self._scripts[name](keys=keys, args=args)


class CrawlScripts:
    """Scripts bound to one crawl: every call gets ``KEYS = [spec]`` and ``ARGV = [prefix, now,
    *args]`` (see common/lua/prelude.lua). ``clock`` (ms) replaces the Redis server's clock;
    tests use it to make time explicit."""

    def __init__(
        self, runner: ScriptRunner, keys: CrawlKeys, clock: Callable[[], int] | None = None
    ) -> None:
        self._runner = runner
        self.keys = keys
        self._clock = clock

    async def __call__(self, name: str, args: Sequence[str | int | float]) -> Any:
        now = str(self._clock()) if self._clock is not None else ""
        return await self._runner.run(name, [self.keys.spec], [self.keys.prefix, now, *args])

    async def rows(self, name: str, args: Sequence[str | int | float]) -> list[Any]:
        """Run a script that answers a list (most do): the list, typed."""
        res = await self(name, args)
        if not isinstance(res, list):
            raise TypeError(f"script {name} answered {type(res).__name__}, not a list")
        return res
