"""Processes tests start and read: the test site, the distcrawl CLI, the mock LLM, peak RSS."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def stop_process(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s; always reaped, pipes closed."""
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


class SiteProcess:
    """A tests.site server (or another ``module`` taking --log) in its own process, with its
    request log."""

    def __init__(self, log: Path, *args: str, module: str = "tests.site") -> None:
        self.log = log
        self.proc, ready = spawn_ready(module, "--log", str(log), *args)
        self.port = int(ready)
        addresses = args[args.index("--addresses") + 1] if "--addresses" in args else "127.0.0.1"
        self.hosts = [f"{a}:{self.port}" for a in addresses.split(",")]

    @property
    def roots(self) -> list[str]:
        """Each host's root page, the usual seeds."""
        return [f"http://{h}/" for h in self.hosts]

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def hits(self) -> Counter[str]:
        return Counter(f"http://{r['host']}{r['path']}" for r in self.requests())

    def stop(self) -> None:
        stop_process(self.proc)


def run_text(
    args: Sequence[str | Path],
    *,
    cwd: Path = ROOT,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to its end, text in and out; its exit code is the caller's to check."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=input_text,
        check=False,
    )


def cli(
    *args: str,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``distcrawl ARGS`` as a separate process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    command = [sys.executable, "-m", "distcrawl.cli", *args]
    return run_text(command, timeout=timeout, env=full_env, input_text=input_text)


def produce(
    store: Sequence[str],
    seeds: Iterable[str],
    *flags: str,
    rate: float | None = None,
    burst: int | None = None,
    inflight: int | None = None,
    max_attempts: int | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """``distcrawl produce`` of ``seeds`` into the crawl ``store`` names, with the politeness
    given (``inflight``: ``--per-domain-inflight``) and ``flags``; it must succeed. Its stdout."""
    limits = {
        "--rate": rate,
        "--burst": burst,
        "--per-domain-inflight": inflight,
        "--max-attempts": max_attempts,
    }
    given = [arg for flag, v in limits.items() if v is not None for arg in (flag, f"{v:g}")]
    proc = cli("produce", *store, *seeds, *given, *flags, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def spawn_module(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m MODULE ARGS`` from the repo root, left running, its output piped (text);
    ``env`` is added to this process's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env} if env else None,
    )


def spawn_ready(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`spawn_module`, once it has printed its ``ready WHERE`` line: the process and WHERE."""
    proc = spawn_module(module, *args)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"{module} did not start: {line!r} {err}")
    return proc, line.split()[1]


def spawn_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return spawn_module("distcrawl.cli", *args, env=env)


def scrape_metrics(port: int, timeout: float = 5) -> str:
    """The /metrics page of the worker on this host's ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        return str(resp.read().decode())


def metric_value(port: int, name: str) -> float | None:
    """Sample ``name`` (without labels) on the /metrics page of the worker on ``port``; None
    while the page does not answer or does not have it."""
    try:
        text = scrape_metrics(port, timeout=3)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def read_pages(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / "pages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def log_events(logs: str, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines (--log-format json) in ``logs``; with ``name``, of that event only."""
    found = []
    for line in logs.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if name is None or doc.get("event") == name:
                found.append(doc)
    return found


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def error_line(stderr: str) -> str:
    """The one ``distcrawl: error: ...`` line among a process's log lines; no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("distcrawl: error: ")]
    assert len(errors) == 1, stderr
    assert_no_traceback(stderr)
    return errors[0]


class MockProcess:
    """tests.mock_llm in its own process."""

    def __init__(self, *args: str) -> None:
        self.proc, self.base_url = spawn_ready("tests.mock_llm", "--port", "0", *args)
        self.server_url = self.base_url.removesuffix("/v1")

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.server_url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/stats"))

    def requests(self) -> list[dict[str, Any]]:
        return list(self._get("/_requests"))

    def replies(self) -> list[dict[str, Any]]:
        return list(self._get("/_replies"))

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change the mock's config (``POST /_config``); returns the whole config."""
        req = urllib.request.Request(
            self.server_url + "/_config",
            data=json.dumps(changes).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def worker_env(self, key: str) -> dict[str, str]:
        """The variables that point a summarizer at this mock with ``key``."""
        return {
            "OPENAI_API_KEY": key,
            "DISTCRAWL_LLM__BASE_URL": self.base_url,
            "DISTCRAWL_LLM__MODEL": "mock-model",
        }

    def stop(self) -> None:
        stop_process(self.proc)


class PeakRss:
    """A process's own peak RSS, from /proc/<pid>/status VmHWM, polled while it runs.

    Not wait4's ru_maxrss: Linux folds the parent's peak (at fork, before exec) into the
    child's, so a child of a 300 MB pytest would report 300 MB however small it stays.
    """

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        import threading

        self._path = Path(f"/proc/{pid}/status")
        self._interval = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for line in self._path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                return  # the process is gone
            self._stop.wait(self._interval)

    def stop(self) -> float:
        """Stop polling; the peak in MB."""
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


def run_quick_bench(module: str, timeout: float, *headers: str) -> tuple[str, str]:
    """``python -m MODULE --quick`` from the repo root, checked: exit 0, each header printed, no
    FAILED line and no traceback. Returns (stdout, stdout + stderr)."""
    proc = run_text([sys.executable, "-m", module, "--quick"], timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for header in headers:
        assert header in proc.stdout, output
    assert not [line for line in output.splitlines() if line.startswith("FAILED")], output
    assert "Traceback" not in output, output
    return proc.stdout, output


def crawl_on_a_full_disk(store: Sequence[str], *args: str, max_bytes: int) -> str:
    """``distcrawl crawl --drain --allow-private ARGS`` on a disk that fills up (files may not
    grow past ``max_bytes``): it must stop with exit code 4 and one error line, returned."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "distcrawl.cli",
            "crawl",
            *store,
            "--drain",
            "--allow-private",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=file_size_limit(max_bytes),
        check=False,
    )
    assert proc.returncode == 4, proc.stderr
    return error_line(proc.stderr)


def file_size_limit(max_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, files may not grow past ``max_bytes`` (EFBIG instead of
    SIGXFSZ), as on a disk that fills up mid-crawl."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit
