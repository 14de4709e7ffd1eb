"""WARC output end to end: real crawls (the CLI as processes) read back by warcio and fastwarc."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastwarc.warc import ArchiveIterator as FastIterator
from fastwarc.warc import WarcRecordType
from warcio.archiveiterator import ArchiveIterator

from distcrawl.demosite import DemoSite
from tests.processes import (
    SiteProcess,
    assert_no_traceback,
    cli,
    crawl_on_a_full_disk,
    error_line,
    produce,
    read_pages,
    spawn_cli,
)
from tests.site import GZIPPED, GZIPPED_HTML, HUGE_CHUNK, bomb

MB = 1024 * 1024
FAST = ["--rate", "100", "--burst", "20", "--allow-private", "--no-progress"]
WARCIO = str(Path(sys.executable).parent / "warcio")


def digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


@dataclass
class Response:
    url: str
    status: int
    headers: dict[str, str]  # HTTP headers, lower-cased names
    warc: dict[str, str]
    payload: bytes


def warc_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.warc.gz"))


def warcio_check(files: list[Path]) -> None:
    proc = subprocess.run(
        [WARCIO, "check", "-v", *map(str, files)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "digest pass" in proc.stdout
    assert "digest failed" not in proc.stdout


def warcio_index(files: list[Path]) -> list[dict[str, str]]:
    proc = subprocess.run(
        [WARCIO, "index", "-f", "warc-type,warc-target-uri,http:status", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def fastwarc_read(files: list[Path]) -> tuple[int, list[Response]]:
    """Every record through fastwarc, block and payload digests verified; the responses."""
    count, responses = 0, []
    for path in files:
        with path.open("rb") as f:
            kinds = [
                r.record_type for r in FastIterator(f, parse_http=False) if r.verify_block_digest()
            ]
        with path.open("rb") as f:
            records = list(FastIterator(f, parse_http=True))
        assert kinds[0] == WarcRecordType.warcinfo, path
        assert len(kinds) == len(records), f"{path}: a block digest failed in fastwarc"
        count += len(records)
    for path in files:
        with path.open("rb") as f:
            for r in FastIterator(f, parse_http=True, record_types=WarcRecordType.response):
                assert r.verify_payload_digest(consume=False), r.headers["WARC-Target-URI"]
                responses.append(
                    Response(
                        url=r.headers["WARC-Target-URI"],
                        status=int(r.http_headers.status_code or 0),
                        headers={k.lower(): v for k, v in r.http_headers},
                        warc=dict(r.headers),
                        payload=r.reader.read(),
                    )
                )
    return count, responses


def record_at(folder: Path, name: str, offset: int) -> tuple[str, str, int, bytes]:
    """The record at ``offset`` of ``name``, read without scanning: type, URI, status, payload."""
    with (folder / name).open("rb") as f:
        f.seek(offset)
        record = next(iter(ArchiveIterator(f)))
        return (
            record.rec_type,
            record.rec_headers.get_header("WARC-Target-URI"),
            int(record.http_headers.get_statuscode()),
            record.content_stream().read(),
        )


def check_page_offsets(folder: Path, pages: list[dict[str, Any]]) -> int:
    done = [p for p in pages if p["outcome"] == "done"]
    for page in done:
        kind, uri, status, _ = record_at(folder, page["warc_file"], page["warc_offset"])
        assert (kind, uri, status) == ("response", page["final_url"], page["status"]), page
    return len(done)


@pytest.mark.slow
def test_warc_of_a_crawl_with_trouble(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--addresses", "127.0.0.5", "--pages", "5", "--trouble")
    host = site.hosts[0]
    out, folder = tmp_path / "out", tmp_path / "warc"
    proc = cli(
        "run",
        f"http://{host}/",
        f"http://{host}/gzipped",
        "--out",
        str(out),
        "--warc",
        str(folder),
        "--max-attempts",
        "2",
        "--processes",  # one writer, so one file (each crawl process writes its own)
        "1",
        *FAST,
        env={"DISTCRAWL_FETCH__READ_TIMEOUT_S": "1"},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    files = warc_files(folder)
    assert len(files) == 1
    warcio_check(files)

    # warcio index: one response per request the server answered, with its status
    index = warcio_index(files)
    listed = Counter(
        (r["warc-target-uri"].split("?")[0], int(r["http:status"]))
        for r in index
        if r["warc-type"] == "response"
    )
    served = Counter(
        # (/t/huge's handler ends in a reset after its 200 went out: the log says 0)
        (f"http://{r['host']}{r['path']}", r["status"] or 200)
        for r in site.requests()
        if r["path"] != "/t/slow"  # (logged only when its 30 s handler ends)
    )
    slow = f"http://{host}/t/slow"
    assert listed - Counter({(slow, 200): 2}) == served
    assert sum(1 for r in index if r["warc-type"] == "request") == sum(listed.values())

    # fastwarc reads every record warcio listed, digests verified
    count, responses = fastwarc_read(files)
    assert count == len(index)
    by_url = {r.url.split("?")[0]: r for r in responses}

    def check(path: str, expected: bytes, truncated: str | None = None) -> Response:
        r = by_url[f"http://{host}{path}"]
        assert r.warc["WARC-Payload-Digest"] == digest(r.payload)
        assert r.payload == expected, path
        assert r.warc.get("WARC-Truncated") == truncated, path
        assert "transfer-encoding" not in r.headers  # (aiohttp removed the chunking)
        return r

    site_model = DemoSite(pages_per_host=5)
    for i in range(5):
        check(f"/p/{i}.html", site_model.page_html(host, [host], i).encode())
    root = site_model.root_html(host).replace("</ul>", '</ul><a href="/t/">trouble</a>')
    check("/", root.encode())
    check("/robots.txt", b"User-agent: *\nDisallow: /private/\n")
    check("/t/404", b"status 404")
    # stored as sent: the gzip bytes the server sent, Content-Encoding and -Length as sent
    gz = check("/gzipped", GZIPPED)
    assert gz.headers["content-encoding"] == "gzip"
    assert int(gz.headers["content-length"]) == len(GZIPPED)
    name, offset = _location(out, f"http://{host}/gzipped")
    assert record_at(folder, name, offset)[3] == GZIPPED_HTML  # warcio decodes it on read
    # the 50 MB body, cut by the 5 MiB cap
    huge = (HUGE_CHUNK * (5 * MB // len(HUGE_CHUNK) + 1))[: 5 * MB]
    check("/t/huge", huge, truncated="length")
    assert by_url[f"http://{host}/t/huge"].warc["WARC-Payload-Digest"] == digest(huge)
    # a deflate bomb: the compressed bytes read until the inflated body reached the cap
    sent = bomb()
    r = by_url[f"http://{host}/t/gzipbomb"]
    assert r.warc["WARC-Truncated"] == "length"
    assert 0 < len(r.payload) < len(sent)
    assert sent.startswith(r.payload)
    # bodies the crawler does not parse: their first 64 KiB; a chunked one is marked so
    pdf = by_url[f"http://{host}/t/doc.pdf"]
    assert pdf.warc["WARC-Truncated"] == "length"
    assert len(pdf.payload) == 64 * 1024
    assert pdf.headers["x-crawler-transfer-encoding"] == "chunked"
    assert pdf.payload.startswith(b"%PDF")
    check("/t/slow", b"<title>slow</title><p>", truncated="time")

    pages = read_pages(out)
    assert check_page_offsets(folder, pages) >= 12
    assert next(p for p in pages if p["url"].endswith("/t/huge"))["truncated"] is True


def _location(out: Path, url: str) -> tuple[str, int]:
    page = next(p for p in read_pages(out) if p["url"] == url)
    return page["warc_file"], page["warc_offset"]


@pytest.mark.slow
def test_two_workers_rotate_files_that_all_check(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, crawl_args: list[str]
) -> None:
    site = site_factory("--addresses", "127.0.0.1,127.0.0.2", "--pages", "40")
    produce(crawl_args, site.roots, rate=200, burst=50)
    folder = tmp_path / "warc"
    args = ["crawl", *crawl_args, "--drain", "--allow-private", "--concurrency", "8"]
    args += ["--warc", str(folder), "--warc-max-bytes", "16000"]
    # (one worker at the cheapest gzip level: its files check as well)
    workers = [spawn_cli(*args), spawn_cli(*args, "--warc-gzip-level", "1")]
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
        assert_no_traceback(err)
    files = warc_files(folder)
    pids = {int(f.name.split("-")[-2]) for f in files}
    assert pids == {w.pid for w in workers}
    assert len(files) >= 6  # rotated, and no two names alike
    for f in files:
        assert f.stat().st_size < 16000 + 8000  # (a file ends at most one exchange past it)
    warcio_check(files)
    index = warcio_index(files)
    responses = Counter(r["warc-target-uri"] for r in index if r["warc-type"] == "response")
    assert responses == site.hits()  # one response per fetched URL, robots.txt included
    count, _ = fastwarc_read(files)
    assert count == len(index)
    out = tmp_path / "export"
    assert cli("export", *crawl_args, "--out", str(out)).returncode == 0
    assert check_page_offsets(folder, read_pages(out)) == 82


def test_unwritable_warc_folder_is_one_error_line(
    site_factory: Callable[..., SiteProcess], tmp_path: Path
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", "3")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli(
        "run", f"http://{site.hosts[0]}/", "--out", str(tmp_path / "out"), *FAST,
        "--warc", str(blocker / "warc"),
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert error_line(proc.stderr) == (
        f"distcrawl: error: cannot write WARC files in {blocker / 'warc'}: "
        f"[Errno 20] Not a directory: '{blocker / 'warc'}'"
    )
    assert site.requests() == []  # stopped before fetching anything


@pytest.mark.slow
def test_full_disk_stops_claiming_and_loses_no_record(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, crawl_args: list[str]
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", "150")
    produce(crawl_args, site.roots, rate=200)
    folder = tmp_path / "warc"
    assert "File too large" in crawl_on_a_full_disk(
        crawl_args, "--warc", str(folder), max_bytes=60_000
    )
    files = warc_files(folder)
    warcio_check(files)
    count, _ = fastwarc_read(files)  # cut back to its last whole record (warcio check skips
    assert count == len(warcio_index(files))  # a torn tail; fastwarc's digests do not)
    assert count % 2 == 1  # warcinfo + whole exchanges
    status = json.loads(cli("status", *crawl_args, "--json").stdout)
    assert status["in_flight"] == 0
    assert status["pending"] > 0
    assert status["done"] > 0
    out = tmp_path / "export"
    assert cli("export", *crawl_args, "--out", str(out)).returncode == 0
    pages = read_pages(out)
    assert check_page_offsets(folder, pages) == status["done"]  # every settled page's record
    assert {urlsplit(p["url"]).path for p in pages} <= {"/", *(f"/p/{i}.html" for i in range(150))}


def _page(name: str, text: str, links: tuple[str, ...] = ()) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return f"<html><head><title>{name}</title></head><body><p>{text}</p>{anchors}</body></html>"


def _records_of(files: list[Path]) -> list[tuple[str, dict[str, str]]]:
    """(WARC-Type, WARC headers) of every record."""
    out = []
    for path in files:
        with path.open("rb") as f:
            for record in ArchiveIterator(f):
                out.append((record.rec_type, dict(record.rec_headers.headers)))
    return out


@pytest.mark.slow
def test_a_second_pass_archives_what_it_saw_before_as_revisit_records(tmp_path: Path) -> None:
    """Pass 2 of a crawl over a folder site: a 304 is a revisit record (server-not-modified),
    the same payload from a server without validators one too (identical-payload-digest),
    each referring to the pass-1 response that holds the payload; a changed page is a full
    response again."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(_page("home", "Home.", ("a.html", "c.html", "/plain/b.html")))
    (root / "a.html").write_text(_page("a", "Served with validators, never edited."))
    (root / "b.html").write_text(_page("b", "Served without validators, never edited."))
    (root / "c.html").write_text(_page("c", "The first version."))
    site = SiteProcess(tmp_path / "site.log", "--root", str(root), module="distcrawl.foldersite")
    warc = tmp_path / "warc"
    try:
        base = f"http://127.0.0.1:{site.port}"
        args = ["run", f"{base}/", "--out", str(tmp_path / "out"), "--warc", str(warc)]
        args += ["--no-summarize", "--processes", "1", *FAST]
        first = cli(*args)
        assert first.returncode == 0, first.stderr
        pass1 = warc_files(warc)
        (root / "c.html").write_text(_page("c", "The second version, edited."))
        second = cli(*args)
        assert second.returncode == 0, second.stderr
        assert_no_traceback(second.stderr)
        pass2 = [f for f in warc_files(warc) if f not in pass1]
        third = cli(*args)  # nothing changed since pass 2
        assert third.returncode == 0, third.stderr
    finally:
        site.stop()
    everything = warc_files(warc)
    pass3 = [f for f in everything if f not in pass1 and f not in pass2]
    assert pass2
    assert pass3
    warcio_check(everything)
    fastwarc_read(everything)  # block digests, revisit records' too

    captures = {
        (h["WARC-Target-URI"], h["WARC-Date"]): h["WARC-Payload-Digest"]
        for kind, h in _records_of(pass1)
        if kind == "response"
    }
    second_pass = {
        h["WARC-Target-URI"]: (kind, h)
        for kind, h in _records_of(pass2)
        if kind in ("response", "revisit")
    }
    profiles = {
        uri.removeprefix(base): h["WARC-Profile"].rsplit("/", 1)[1]
        for uri, (kind, h) in second_pass.items()
        if kind == "revisit"
    }
    assert profiles == {
        "/": "server-not-modified",
        "/a.html": "server-not-modified",
        "/plain/b.html": "identical-payload-digest",
    }
    assert second_pass[f"{base}/c.html"][0] == "response"
    for uri, (kind, h) in second_pass.items():
        if kind == "revisit":
            refers = (h["WARC-Refers-To-Target-URI"], h["WARC-Refers-To-Date"])
            assert refers == (uri, refers[1])
            assert captures[refers] == h["WARC-Payload-Digest"], uri

    # Pass 3: all of it is revisits; c.html's refers to its pass-2 response, the others still
    # to pass 1's (a revisit record is never what a later one refers to).
    c_response = second_pass[f"{base}/c.html"][1]
    captures[(c_response["WARC-Target-URI"], c_response["WARC-Date"])] = c_response[
        "WARC-Payload-Digest"
    ]
    third_pass = [(k, h) for k, h in _records_of(pass3) if k in ("response", "revisit")]
    pages = [h for k, h in third_pass if not h["WARC-Target-URI"].endswith("/robots.txt")]
    assert len(pages) == 4
    for h in pages:
        refers = (h["WARC-Refers-To-Target-URI"], h["WARC-Refers-To-Date"])
        assert captures[refers] == h["WARC-Payload-Digest"], h["WARC-Target-URI"]
    c_refers = next(h for h in pages if h["WARC-Target-URI"].endswith("/c.html"))
    assert c_refers["WARC-Refers-To-Date"] == c_response["WARC-Date"]
