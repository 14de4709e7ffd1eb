"""Real proxies on loopback ports for tests, each with its own log: proxy.py (HTTP) and pproxy
(SOCKS5, through tests/socksproxy.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from distcrawl.redis_server import free_port
from tests.processes import ROOT

__all__ = ["HttpProxy", "SocksProxy"]

# tests/proxylog.py's line, one per request carried: "carried GET 127.0.0.1:8765/p/1.html"
_HTTP_LINE = re.compile(r"carried GET (\d+\.\d+\.\d+\.\d+):(\d+)(/\S*)$", re.M)
# pproxy -v: "socks5 127.0.0.1:38010 -> 127.0.0.2:8766"
_SOCKS_LINE = re.compile(r"^socks5 \S+ -> (\d+\.\d+\.\d+\.\d+):(\d+)", re.M)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"proxy on {port} did not start")


class _Proxy:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def _start(self, argv: list[str]) -> None:
        with self.log.open("ab") as out:
            # its own process group: proxy.py forks workers that share the listening socket,
            # and a kill must take them all
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_listening(self.port, self.proc, self.log)

    def kill(self) -> None:
        """SIGKILL, the whole group: the port refuses connections from now on."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class HttpProxy(_Proxy):
    """proxy.py on a loopback port; ``auth`` "user:password" makes it demand Basic auth."""

    def __init__(self, log: Path, *, auth: str | None = None, port: int | None = None) -> None:
        self.log = log
        self.port = port or free_port()
        argv = [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num-workers",
            "1",
            "--num-acceptors",
            "1",
            "--log-file",
            str(log),
            "--plugins",
            "tests.proxylog.RequestLog",
        ]
        self._start(argv + (["--basic-auth", auth] if auth else []))

    def requests(self) -> Counter[str]:
        """The requests it carried to the sites: http://host:port/path -> how many times."""
        return Counter(f"http://{m[1]}:{m[2]}{m[3]}" for m in _HTTP_LINE.finditer(self.text()))

    def hosts(self) -> set[str]:
        return {url.split("/")[2].split(":")[0] for url in self.requests()}


class SocksProxy(_Proxy):
    """pproxy's SOCKS5 server on a loopback port; ``auth`` "user:password" demands it."""

    def __init__(self, log: Path, *, auth: str | None = None) -> None:
        self.log = log
        self.port = free_port()
        listen = f"socks5://127.0.0.1:{self.port}" + (f"#{auth}" if auth else "")
        self._start([sys.executable, "-u", "-m", "tests.socksproxy", "-l", listen, "-v"])

    def connections(self) -> Counter[str]:
        """The connections it carried: site host -> how many."""
        return Counter(m[1] for m in _SOCKS_LINE.finditer(self.text()))

    def hosts(self) -> set[str]:
        return set(self.connections())
