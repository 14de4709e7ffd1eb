"""Process lifecycle: uvloop, and SIGTERM/SIGINT turned into an asyncio.Event.

Shutdown is a protocol: signal -> ``stop`` event -> stop claiming -> drain within a grace period
-> cancel -> release what is left (in ``finally``). A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from common.logging import get_logger

__all__ = ["Shutdown", "run"]

T = TypeVar("T")
log = get_logger(__name__)


class Shutdown:
    """Set by the first SIGTERM/SIGINT (``stop``); the second sets ``now`` as well."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("shutdown_forced", signal=sig.name)
            self.now.set()
        else:
            log.info("shutdown_requested", signal=sig.name)
        self.stop.set()

    def request(self) -> None:
        self.stop.set()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on the default loop."""
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
            return asyncio.run(main)
        return uvloop.run(main)
    finally:
        # The loop (and its handlers) is gone and the work is over: a SIGTERM that arrives while
        # the interpreter winds down must not turn a clean exit into "killed by SIGTERM".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
