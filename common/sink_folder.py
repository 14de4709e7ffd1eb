"""The folder sink: one worker's records as JSONL segments in ``<folder>/<stream>/``.

A segment is written as ``.<name>.part`` (hidden: tools that read ``*.jsonl`` never see it),
closed at ``segment_bytes`` or ``segment_age_s``, fsynced, renamed to ``<name>.jsonl`` and the
folder fsynced: a reader never sees half a closed segment. Every ``write`` ends with
``fdatasync``, so a record is on disk before its page is settled (a SIGKILLed worker, or a host
that loses power, loses no settled page's record). A killed worker's ``.part`` stays behind:
export reads it too (whole lines only; a cut last line was never acknowledged).

A failed write (full disk, folder gone) cuts the segment back to its last whole record and
fails this and every later write with an OutputError.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import OutputError
from common.logging import get_logger
from common.sinks import record_line, segment_name, whole_lines

if TYPE_CHECKING:
    from common.settings import SinkSettings

__all__ = ["FolderWriter", "SegmentFiles", "read_folder"]

log = get_logger(__name__)


class SegmentFiles:
    """The synchronous side, used by one thread at a time."""

    def __init__(self, directory: Path, max_bytes: int, max_age_s: float) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._tag = os.urandom(3).hex()
        self._seq = -1
        self._fd: int | None = None
        self.name = ""
        self._opened = 0.0
        self.written = 0  # bytes of the open segment, all whole records
        self.closed: list[str] = []

    @property
    def _part(self) -> Path:
        return self.directory / f".{self.name}.part"

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        self.name = segment_name(self._seq, self._tag)
        self._fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._opened = time.monotonic()
        self.written = 0

    def append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) and fdatasync; rotate first when the segment is due."""
        if self._fd is not None and self.due():
            self.close()
        if self._fd is None:
            self.open()
        assert self._fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
            os.fdatasync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):  # (abandon() tries again)
                os.ftruncate(self._fd, self.written)
            raise
        self.written += len(view)

    def due(self) -> bool:
        """Whether the open segment has reached its size or age (and holds something)."""
        if self._fd is None or not self.written:
            return False
        return self.written >= self._max_bytes or time.monotonic() - self._opened >= self._max_age_s

    def close(self) -> None:
        """fsync, close and publish the open segment (an empty one is removed)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self.written:
            self._part.unlink(missing_ok=True)
            return
        final = self.directory / self.name
        os.rename(self._part, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)
        self.closed.append(self.name)

    def abandon(self) -> None:
        """After a failed write: keep the whole records, close, and leave the part as it is
        (export reads it; nothing in it is half a line)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.written)
        finally:
            os.close(fd)


class FolderWriter:
    """The async side: ``write`` runs the file work on a thread, one call at a time."""

    def __init__(self, directory: Path, settings: SinkSettings) -> None:
        self._files = SegmentFiles(directory, settings.segment_bytes, settings.segment_age_s)
        self._age_s = settings.segment_age_s
        self._lock = asyncio.Lock()
        self._rotator: asyncio.Task[None] | None = None
        self.failure: OutputError | None = None
        self.records = 0

    @property
    def directory(self) -> Path:
        return self._files.directory

    async def start(self) -> None:
        """Open the first segment: a folder that cannot take it fails here, before any page."""
        try:
            await asyncio.to_thread(self._files.open)
        except OSError as exc:
            raise self._fail(exc) from exc
        self._rotator = asyncio.create_task(self._rotate_when_due())

    async def write(self, records: Sequence[tuple[str, str]]) -> None:
        if self.failure is not None:
            raise self.failure
        if not records:
            return
        now = time.time()
        data = b"".join(record_line(fp, record, now) for fp, record in records)
        async with self._lock:
            if self.failure is not None:
                raise self.failure
            try:
                await asyncio.to_thread(self._files.append, data)
            except OSError as exc:
                await asyncio.to_thread(self._files.abandon)
                raise self._fail(exc) from exc
        self.records += len(records)

    async def aclose(self) -> None:
        if self._rotator is not None:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
            self._rotator = None
        async with self._lock:
            try:
                await asyncio.to_thread(self._files.close)
            except OSError as exc:
                await asyncio.to_thread(self._files.abandon)
                if self.failure is None:
                    raise self._fail(exc) from exc

    async def _rotate_when_due(self) -> None:
        """Close an idle segment at its age too (a quiet worker still publishes its records)."""
        while True:
            await asyncio.sleep(min(5.0, self._age_s))
            if self.failure is not None or not self._files.due():
                continue
            async with self._lock:
                try:
                    await asyncio.to_thread(self._files.close)
                except OSError as exc:
                    await asyncio.to_thread(self._files.abandon)
                    self._fail(exc)

    def _fail(self, exc: OSError) -> OutputError:
        if self.failure is None:
            self.failure = OutputError(
                f"cannot write records to {self._files.directory}: {exc.strerror or exc}"
            )
            log.error("sink_failed", error=str(self.failure))
        return self.failure


def _read_segments(directory: Path) -> list[bytes]:
    if not directory.is_dir():
        return []
    names = sorted(
        p.name
        for p in directory.iterdir()
        if p.name.endswith(".jsonl") or (p.name.startswith(".") and p.name.endswith(".part"))
    )
    return [(directory / name).read_bytes() for name in names]


async def read_folder(directory: Path) -> AsyncIterator[bytes]:
    """Every whole line of the closed segments and of parts left by killed workers."""
    try:
        segments = await asyncio.to_thread(_read_segments, directory)
    except OSError as exc:
        raise OutputError(f"cannot read records in {directory}: {exc.strerror or exc}") from exc
    for data in segments:
        for line in whole_lines(data):
            yield line
