"""The bench site as static files served by nginx (far less CPU than any Python server).

Used by bench/crawl.py when nginx is installed (`apt-get install nginx-light`); the files are the
same pages bench/site.py renders.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.site import render

__all__ = ["NginxSite", "nginx_available"]


def nginx_available() -> bool:
    return shutil.which("nginx") is not None


class NginxSite:
    def __init__(self, workdir: Path, addresses: list[str], port: int, pages: int) -> None:
        self.workdir = workdir
        self.addresses = addresses
        self.port = port
        self.pages = pages
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_files(self) -> None:
        hosts = [f"{a}:{self.port}" for a in self.addresses]
        for addr, host in zip(self.addresses, hosts, strict=True):
            root = self.workdir / "www" / addr / "p"
            root.mkdir(parents=True, exist_ok=True)
            (root.parent / "index.html").write_text(
                '<title>bench</title><a href="/p/0.html">start</a>'
            )
            (root.parent / "robots.txt").write_text("User-agent: *\nAllow: /\n")
            for i in range(self.pages):
                (root / f"{i}.html").write_bytes(render(host, hosts, i, self.pages))

    def _config(self) -> Path:
        w = self.workdir
        servers = "\n".join(
            f"  server {{ listen {a}:{self.port} backlog=4096; root {w}/www/{a}; "
            "index index.html; }"
            for a in self.addresses
        )
        conf = f"""worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 60;
  types {{ text/html html; text/plain txt; }}
  default_type text/html;
  charset utf-8;
  client_body_temp_path {w}/tmp-body;
  proxy_temp_path {w}/tmp-proxy;
  fastcgi_temp_path {w}/tmp-fcgi;
  uwsgi_temp_path {w}/tmp-uwsgi;
  scgi_temp_path {w}/tmp-scgi;
{servers}
}}
"""
        path = w / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self) -> None:
        self._write_files()
        # nginx's workers drop to an unprivileged user: they must be able to read the files
        for folder in (self.workdir.parent, self.workdir):
            folder.chmod(0o755)
        conf = self._config()
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://{self.addresses[0]}:{self.port}/robots.txt"
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise SystemExit(f"nginx did not start: {err}") from None
                time.sleep(0.05)
        raise SystemExit("nginx did not answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
