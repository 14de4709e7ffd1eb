"""The shape every worker shares: claim leased items into C slots, process, settle.

A dispatcher claims in batches for the free slots and sleeps until work is due (or a slot
frees, or the process is told to stop). Background duties renew the leases of long jobs, reap
the expired leases of dead workers and write a heartbeat. Shutdown: stop claiming, let
in-flight jobs finish within the grace period, cancel the rest and release their leases.
Subclasses say how to claim, handle, release, renew and reap; they never see the loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from common.errors import StoreFull, StoreUnavailable
from common.heartbeat import is_stale
from common.lifecycle import Shutdown
from common.logging import get_logger

__all__ = ["LeasedWorker", "WorkerTiming", "new_worker_id"]

log = get_logger(__name__)
L = TypeVar("L")
T = TypeVar("T")


def new_worker_id(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class WorkerTiming:
    """How often background duties run, and the drain grace period."""

    def __init__(
        self,
        *,
        grace_s: float,
        reap_interval_s: float,
        heartbeat_s: float,
        lease_s: float,
        claim_batch: int,
    ) -> None:
        self.grace_s = grace_s
        self.reap_interval_s = reap_interval_s
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.claim_batch = claim_batch


class LeasedWorker(abc.ABC, Generic[L]):
    role = "worker"

    def __init__(
        self,
        *,
        concurrency: int,
        timing: WorkerTiming,
        shutdown: Shutdown,
        worker_id: str | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.timing = timing
        self.shutdown = shutdown
        self.worker_id = worker_id or new_worker_id(self.role)
        self.released = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._duties_stop = asyncio.Event()
        self._started = time.time()
        self._started_monotonic = time.monotonic()
        self._last_beat: float | None = None
        # Why the worker is not claiming, if it is waiting on purpose: "docs_backlog" (the
        # summarizers are behind) or "store_full" (Redis refuses writes at maxmemory).
        self.paused: str | None = None

    # -- what a subclass provides ---------------------------------------------------------

    @abc.abstractmethod
    async def claim(self, n: int) -> tuple[Sequence[L], float | None]:
        """Up to ``n`` leased items, and when nothing came, the seconds until work is due."""

    @abc.abstractmethod
    def key(self, item: L) -> str:
        """The lease id (fingerprint) of an item."""

    @abc.abstractmethod
    async def handle(self, item: L) -> None:
        """Process one item to its settle; must not raise but for cancellation."""

    @abc.abstractmethod
    async def release(self, keys: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def renew(self, keys: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def reap(self) -> int:
        """Return expired leases of dead workers; how many moved."""

    @abc.abstractmethod
    async def finished(self) -> bool:
        """With ``--drain``: is there nothing left anywhere to wait for?"""

    @abc.abstractmethod
    async def beat(self, worker_id: str, beat: str) -> None: ...

    @abc.abstractmethod
    async def forget(self, worker_id: str) -> None: ...

    def extra_tasks(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:  # noqa: ARG002
        """More background loops; they must return once ``stop`` is set (none by default)."""
        return []

    def beat_fields(self) -> dict[str, Any]:
        return {}

    def on_in_flight(self, n: int) -> None:
        """Called whenever the number of jobs in flight changes (for a gauge)."""

    def on_paused(self, reason: str | None, previous: str | None) -> None:
        """Called when the worker starts or stops waiting on purpose (for a gauge)."""

    def pause(self, reason: str | None) -> None:
        """Record why the worker waits (None: it does not); logged once per change."""
        if reason == self.paused:
            return
        previous, self.paused = self.paused, reason
        if reason is None:
            log.info("worker_resumed", worker=self.worker_id, was=previous)
        else:
            level = log.warning if reason == "store_full" else log.info
            level("worker_paused", worker=self.worker_id, reason=reason)
        self.on_paused(reason, previous)

    # -- the loop -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, *, drain: bool = False) -> None:
        """Work until shutdown (or, with ``drain``, until ``finished()``)."""
        log.info("worker_started", worker=self.worker_id, concurrency=self.concurrency)
        t = self.timing
        background = [
            asyncio.create_task(self._every(t.reap_interval_s, self._reap)),
            asyncio.create_task(self._every(t.heartbeat_s, self._heartbeat)),
            asyncio.create_task(self._every(max(1.0, t.lease_s / 3), self._renew)),
            asyncio.create_task(self._wake_on_stop()),
            *(asyncio.create_task(c) for c in self.extra_tasks(self._duties_stop)),
        ]
        try:
            await self._dispatch(drain)
        finally:
            await self._finish_in_flight()
            await self._stop_background(background)
            with contextlib.suppress(StoreUnavailable):
                await asyncio.wait_for(asyncio.shield(self.forget(self.worker_id)), 5)

    async def _stop_background(self, tasks: list[asyncio.Task[None]]) -> None:
        # A flag first, cancellation second, and a bounded wait: on Python 3.11 a cancel that
        # lands as a Redis reply arrives can be swallowed (asyncio.wait_for inside redis-py),
        # and a loop that only stops on cancellation would then run forever.
        self._duties_stop.set()
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=5)
        for task in stuck:
            log.warning("duty_did_not_stop", worker=self.worker_id, task=task.get_name())

    def limit(self) -> int:
        """How many jobs may be in flight now (subclasses may adapt it)."""
        return self.concurrency

    async def _dispatch(self, drain: bool) -> None:
        failures = 0
        while not self.shutdown.stop.is_set():
            free = self.limit() - len(self._tasks)
            if free <= 0 or (self.paused == "store_full" and self._tasks):
                # (while Redis refuses writes, the jobs in flight probe it as they retry)
                await self._sleep(1.0)
                continue
            try:
                items, wait = await self.claim(min(free, self.timing.claim_batch))
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                self._store_failed(exc)
                await self._sleep(min(5.0, 0.5 * 2**failures))
                continue
            for item in items:
                self._start(item)
            if items:
                continue
            if drain and not self._tasks and await self._finished():
                log.info("drained", worker=self.worker_id)
                return
            await self._sleep(1.0 if wait is None else min(wait, 1.0))

    async def _finished(self) -> bool:
        try:
            return await self.finished()
        except StoreUnavailable:
            return False

    def _start(self, item: L) -> None:
        key = self.key(item)
        task = asyncio.create_task(self._guarded(item, key), name=f"{self.role}:{key}")
        self._tasks[key] = task
        self.on_in_flight(len(self._tasks))

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(key, None)
            self.on_in_flight(len(self._tasks))
            self._wakeup.set()

        task.add_done_callback(done)

    async def _guarded(self, item: L, key: str) -> None:
        try:
            await self.handle(item)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:  # the lease expires and is reaped: the job runs again
            log.warning("job_abandoned", worker=self.worker_id, key=key, error=str(exc))
        except Exception as exc:  # never lose the worker; the lease expires and is reaped
            log.exception("job_crashed", worker=self.worker_id, key=key, error=repr(exc))

    async def _sleep(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _wake_on_stop(self) -> None:
        await self.shutdown.stop.wait()
        self._wakeup.set()

    async def _finish_in_flight(self) -> None:
        if not self._tasks:
            return
        tasks = list(self._tasks.values())
        log.info(
            "draining", worker=self.worker_id, in_flight=len(tasks), grace_s=self.timing.grace_s
        )
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        stop_now = asyncio.ensure_future(self.shutdown.now.wait())
        await asyncio.wait(
            [all_done, stop_now], timeout=self.timing.grace_s, return_when=asyncio.FIRST_COMPLETED
        )
        stop_now.cancel()
        all_done.cancel()
        left = [key for key, task in self._tasks.items() if not task.done()]
        for key in left:
            self._tasks[key].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if left:
            try:
                await asyncio.shield(self.release(left))
                self.released += len(left)
                log.info("leases_released", worker=self.worker_id, count=len(left))
            except StoreUnavailable as exc:  # they expire and are reaped: nothing is lost
                log.warning("release_failed", worker=self.worker_id, error=str(exc))

    async def until_stored(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """Retry ``call`` while Redis is unreachable; None if told to stop meanwhile."""
        failures = 0
        while True:
            try:
                result = await call()
            except StoreUnavailable as exc:
                failures += 1
                if self.shutdown.now.is_set():
                    return None
                self._store_failed(exc)
                await asyncio.sleep(min(5.0, 0.5 * 2**failures))
                continue
            if self.paused == "store_full":
                self.pause(None)
            return result

    def _store_failed(self, exc: StoreUnavailable) -> None:
        log.warning("store_unavailable", worker=self.worker_id, error=str(exc))
        if isinstance(exc, StoreFull):
            self.pause("store_full")

    # -- background duties ----------------------------------------------------------------

    async def _every(self, seconds: float, duty: Callable[[], Awaitable[None]]) -> None:
        while not self._duties_stop.is_set():
            try:
                await duty()
            except StoreUnavailable as exc:
                log.warning("store_unavailable", worker=self.worker_id, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._duties_stop.wait(), seconds)

    async def _reap(self) -> None:
        if await self.reap():
            self._wakeup.set()

    async def _renew(self) -> None:
        keys = list(self._tasks)
        if keys:
            await self.renew(keys)

    async def _heartbeat(self) -> None:
        beat = {
            "role": self.role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": round(self._started, 3),
            "last": round(time.time(), 3),
            "in_flight": len(self._tasks),
            "paused": self.paused,
            # the process's CPU (user + sys) so far: work between two beats is measurable
            # from inside the process (bench/llm.py), start-up excluded
            "cpu_s": round(time.process_time(), 4),
            "every": self.timing.heartbeat_s,
            **self.beat_fields(),
        }
        await self.beat(self.worker_id, json.dumps(beat))
        self._last_beat = time.monotonic()

    def healthy(self) -> bool:
        """True while heartbeats reach Redis: the last one is under three periods old (a worker
        that has not beaten yet counts from its start)."""
        last = self._last_beat if self._last_beat is not None else self._started_monotonic
        return not is_stale(time.monotonic() - last, self.timing.heartbeat_s)
