"""A site served from a folder that tests and benchmarks change between passes, with real
validators.

    python -m distcrawl.foldersite --root DIR --log FILE

Every file under DIR is a page (``.xml`` files are feeds); a test edits, adds and deletes
files between two crawls. Responses carry an ``ETag`` (a hash of the file) and a
``Last-Modified`` (its mtime) and honour ``If-None-Match`` / ``If-Modified-Since`` with a 304,
as nginx and Apache do for static files, except under ``/plain/``: the same files served
without validators and never a 304, as many dynamic pages are. ``/live/<name>`` pages change
every second (their text carries the time), for revisit schedules. Prints ``ready <port>``;
appends one JSON line per request to FILE: time, path, status, body bytes sent, and the
validators the request sent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

from distcrawl.demosite import serve_until_stopped


class FolderSite:
    def __init__(self, root: Path, log: Path) -> None:
        self.root = root.resolve()
        self._log = log.open("a", buffering=1)
        self.app = web.Application()
        self.app.router.add_get("/live/{name}", self._live)
        self.app.router.add_get("/plain/{path:.*}", self._plain)
        self.app.router.add_get("/{path:.*}", self._file)

    def _write_log(self, request: web.Request, status: int, sent: int = 0) -> None:
        entry = {
            "t": round(time.time(), 3),
            "path": request.path,
            "status": status,
            "bytes": sent,
            "if_none_match": request.headers.get("If-None-Match"),
            "if_modified_since": request.headers.get("If-Modified-Since"),
        }
        self._log.write(json.dumps(entry) + "\n")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, request.match_info["path"] or "index.html", validators=True)

    async def _plain(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, request.match_info["path"], validators=False)

    def _serve(self, request: web.Request, rel: str, *, validators: bool) -> web.StreamResponse:
        path = (self.root / rel).resolve()
        if self.root not in path.parents or not path.is_file():
            self._write_log(request, 404)
            return web.Response(status=404, text="not found")
        body = path.read_bytes()
        headers: dict[str, str] = {}
        if validators:
            etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
            mtime = int(path.stat().st_mtime)
            headers = {"ETag": etag, "Last-Modified": formatdate(mtime, usegmt=True)}
            if _not_modified(request, etag, mtime):
                self._write_log(request, 304)
                return web.Response(status=304, headers=headers)
        kind = "application/rss+xml" if path.suffix == ".xml" else "text/html"
        self._write_log(request, 200, len(body))
        return web.Response(body=body, headers=headers, content_type=kind, charset="utf-8")

    async def _live(self, request: web.Request) -> web.StreamResponse:
        now = int(time.time())
        name = request.match_info["name"]
        self._write_log(request, 200)
        html = (
            f"<html><head><title>{name}</title></head><body><p>{name} at second {now}: "
            "the news of this very second.</p></body></html>"
        )
        return web.Response(text=html, content_type="text/html")


def _not_modified(request: web.Request, etag: str, mtime: int) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:  # (RFC 9110: If-None-Match wins over If-Modified-Since)
        return etag in [tag.strip().removeprefix("W/") for tag in inm.split(",")]
    ims = request.headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        return mtime <= parsedate_to_datetime(ims).timestamp()
    except (TypeError, ValueError):
        return False


async def _main(args: argparse.Namespace) -> None:
    site = FolderSite(args.root, args.log)
    runner = web.AppRunner(site.app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await serve_until_stopped(runner, port)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
