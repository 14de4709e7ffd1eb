"""The frontier's Lua scripts: loaded from ``common/lua/*.lua`` once per client, run by EVALSHA.

Each script is the shared prelude followed by its own file. redis-py's Script object sends
EVALSHA and reloads the source on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from common.store import translate_errors

__all__ = ["SCRIPT_NAMES", "ScriptRunner", "script_source"]

SCRIPT_NAMES = ("admit", "claim", "settle", "renew", "reap", "domain", "stats", "spec_init")


@cache
def script_source(name: str) -> str:
    """The full source of one script: the prelude, then the script's own file."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    lua = resources.files("common") / "lua"
    return (lua / "prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class ScriptRunner:
    """Runs the named scripts on one Redis client; callers never see EVALSHA, KEYS or ARGV."""

    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    async def run(self, name: str, keys: list[str], args: list[str | int | float]) -> Any:
        async with translate_errors():
            return await self._scripts[name](keys=keys, args=args)
