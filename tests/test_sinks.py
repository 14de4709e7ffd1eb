"""Record sinks (issue 16, parts 2 and 3): Redis, a folder of JSONL segments, S3 (moto server).

The end-to-end tests run a distributed crawl (3 crawl processes and a summarizer) with a folder
or an S3 sink, SIGKILL a crawler that holds leases, and check that ``export`` gives every page
and summary exactly once, that nothing per page stays in Redis, and that the Parquet export
holds the JSONL export's rows. Bad URLs, an unwritable folder, a missing bucket and a full disk
end in one error line with nothing lost.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.errors import ConfigError, OutputError
from common.keys import CrawlKeys
from common.settings import SinkSettings
from common.sink_folder import FolderWriter
from common.sink_s3 import S3Writer, read_objects
from common.sinks import latest_records, normalize_sink_url, read_lines, record_line, whole_lines
from distcrawl.redis_server import RedisServer, free_port
from tests.chaos import Fleet, check_invariants, concurrency, wait_for
from tests.processes import (
    SiteProcess,
    cli,
    crawl_on_a_full_disk,
    error_line,
    produce,
    read_pages,
)
from tests.s3server import MotoServer, aws_env

HOSTS = "127.0.0.1,127.0.0.2,127.0.0.3"
PAGES_PER_HOST = 150  # + 3 roots
FAST = {
    "DISTCRAWL_FRONTIER__LEASE_S": "4",
    "DISTCRAWL_WORKER__REAP_INTERVAL_S": "1",
    "DISTCRAWL_WORKER__HEARTBEAT_S": "1",
    "DISTCRAWL_WORKER__GRACE_S": "3",
    "DISTCRAWL_LOG_FORMAT": "json",
    "DISTCRAWL_SINK__S3_LINGER_S": "0.2",
}


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def moto_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    return moto.env


# -- URLs and lines -------------------------------------------------------------------------


def test_sink_urls_are_normalized_or_refused(tmp_path: Path) -> None:
    assert normalize_sink_url("redis") == "redis"
    assert normalize_sink_url("") == "redis"
    assert normalize_sink_url(str(tmp_path / "recs")) == (tmp_path / "recs").resolve().as_uri()
    assert normalize_sink_url(f"file://{tmp_path}/a/../b") == (tmp_path / "b").resolve().as_uri()
    assert normalize_sink_url("s3://my-bucket/crawls/one/") == "s3://my-bucket/crawls/one"
    assert normalize_sink_url("s3://my-bucket") == "s3://my-bucket"
    for bad, says in [
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("s3://Bad_Bucket/x", "not an S3 bucket name"),
        ("s3://ab", "not an S3 bucket name"),
        ("file://otherhost/x", "local folder"),
        ("s3://bucket/x?versionId=1", "no query"),
    ]:
        with pytest.raises(ConfigError, match=says):
            normalize_sink_url(bad)


def test_the_latest_line_of_a_url_wins_and_a_torn_line_is_skipped() -> None:
    lines = [
        record_line("aa", '{"url":"http://a/","outcome":"failed"}', 10.0),
        record_line("bb", '{"url":"http://b/","outcome":"done"}', 11.0),
        record_line("aa", '{"url":"http://a/","outcome":"done"}', 12.0),
        record_line("aa", '{"url":"http://a/","outcome":"skipped"}', 9.0),  # older, read later
    ]
    data = b"".join(lines) + b'{"_fp":"cc","_at":13.0,"url":"http://c/"'  # no newline: torn
    latest = latest_records(whole_lines(data))
    assert sorted(latest) == ["aa", "bb"]
    assert json.loads(latest["aa"])["outcome"] == "done"
    assert json.loads(latest["aa"])["url"] == "http://a/"
    with pytest.raises(ValueError, match="non-empty JSON object"):
        record_line("aa", "{}", 1.0)


# -- the folder writer ----------------------------------------------------------------------


async def test_folder_segments_rotate_are_durable_when_written_and_published_whole(
    tmp_path: Path,
) -> None:
    writer = FolderWriter(tmp_path / "pages", SinkSettings(segment_bytes=1024))
    await writer.start()
    parts = list((tmp_path / "pages").glob(".*.part"))
    assert len(parts) == 1  # opened at start: an unwritable folder fails before any page
    record = '{"url":"http://a/%d","outcome":"done","title":"' + "t" * 300 + '"}'
    await writer.write([("f0", record % 0)])
    # written (and fdatasynced) before write() returns, though the segment is still open
    assert b"http://a/0" in parts[0].read_bytes()
    assert not list((tmp_path / "pages").glob("*.jsonl"))
    for i in range(1, 10):
        await writer.write([(f"f{i}", record % i)])
    closed = sorted((tmp_path / "pages").glob("*.jsonl"))
    assert len(closed) >= 3  # rotated at 1 KiB
    assert all(p.read_bytes().endswith(b"\n") for p in closed)
    await writer.aclose()
    assert not list((tmp_path / "pages").glob(".*.part"))
    url = (tmp_path).as_uri()
    lines = [line async for line in read_lines(url, "pages")]
    assert sorted(json.loads(line)["_fp"] for line in lines) == [f"f{i}" for i in range(10)]


async def test_an_unwritable_folder_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = FolderWriter(blocker / "pages", SinkSettings())
    with pytest.raises(OutputError, match=r"cannot write records to .*file/pages"):
        await writer.start()


async def test_an_empty_segment_is_not_published(tmp_path: Path) -> None:
    writer = FolderWriter(tmp_path / "pages", SinkSettings())
    await writer.start()
    await writer.aclose()
    assert list((tmp_path / "pages").iterdir()) == []


# -- the S3 writer --------------------------------------------------------------------------


@pytest.mark.usefixtures("moto_env")
async def test_s3_objects_are_written_and_read_back_and_a_dead_endpoint_fails_once(
    moto: MotoServer,
) -> None:
    moto.create_bucket("recs")
    writer = S3Writer("recs", "crawl/one", "pages", SinkSettings(s3_linger_s=0))
    await writer.start()
    await writer.write([("f1", '{"url":"http://a/1","outcome":"done"}')])
    await writer.write([("f2", '{"url":"http://a/2","outcome":"done"}'), ("f1", '{"url":"x"}')])
    assert len(writer.objects) == 2
    assert all(k.startswith("crawl/one/pages/") and k.endswith(".jsonl") for k in writer.objects)
    lines = [line async for line in read_objects("recs", "crawl/one", "pages")]
    assert len(lines) == 3
    assert json.loads(latest_records(lines)["f1"])["url"] == "x"
    moto.stop()
    with pytest.raises(OutputError, match=r"cannot write records to s3://recs/crawl/one/pages/"):
        await writer.write([("f3", '{"url":"http://a/3","outcome":"done"}')])
    with pytest.raises(OutputError):  # every later write fails at once
        await writer.write([("f4", '{"url":"http://a/4","outcome":"done"}')])
    assert writer.records == 3
    await writer.aclose()


@pytest.mark.usefixtures("moto_env")
async def test_a_missing_bucket_fails_at_start() -> None:
    writer = S3Writer("no-such-bucket", "", "pages", SinkSettings())
    with pytest.raises(OutputError, match="s3://no-such-bucket/pages/: no bucket named"):
        await writer.start()


# -- end to end -----------------------------------------------------------------------------


def _redis_per_page(server: RedisServer, crawl: str) -> dict[str, int]:
    keys = CrawlKeys(crawl)
    client = redis.Redis.from_url(server.url)
    try:
        return {
            "pages": int(client.hlen(keys.pages)),
            "summaries": int(client.hlen(keys.summaries)),
            "docs": int(client.llen(keys.docs)),
            "leases": int(client.hlen(keys.leases)),
            "dead": int(client.llen(keys.dead)),
        }
    finally:
        client.close()


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return list(pq.read_table(path).to_pylist())


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_distributed_crawl_with_a_sink_and_a_killed_crawler_exports_every_page_once(
    kind: str,
    site_factory: Callable[..., SiteProcess],
    tmp_path: Path,
    redis_server: RedisServer,
    request: pytest.FixtureRequest,
) -> None:
    env = dict(FAST)
    if kind == "s3":  # (in os.environ too: check_invariants runs status and export)
        moto: MotoServer = request.getfixturevalue("moto")
        request.getfixturevalue("moto_env")
        moto.create_bucket("crawl-records")
        sink = "s3://crawl-records/runs/one"
    else:
        sink = str(tmp_path / "records")
    # 15 pages/s per host, each answered after 0.4 s: about 18 pages in flight over the
    # crawlers at any moment, so the one killed holds leases (the crawl lasts about 10 s).
    site = site_factory("--addresses", HOSTS, "--pages", str(PAGES_PER_HOST), "--page-delay", "0.4")
    crawl = f"sink{kind}{tmp_path.name[-6:]}"
    store = ["--redis", redis_server.url, "--crawl", crawl]
    produce(
        store, site.roots, "--sink", sink, rate=15, burst=5, inflight=8, max_attempts=10, env=env
    )
    fleet = Fleet(tmp_path, store, env=env, args=concurrency(crawl=8))
    try:
        for role in ("crawl", "crawl", "crawl", "summarize"):
            fleet.start(role)
        wait_for("pages done", lambda: _done(store) >= 60, timeout=60)
        holding = fleet.holding("crawl")
        victim = next(w for w in fleet.alive() if w.role == "crawl" and w.proc.pid in holding)
        victim.proc.kill()
        victim.proc.wait(10)
        fleet.wait(timeout=200)
    finally:
        fleet.kill_all()
    assert sorted(fleet.exit_codes()) == [-signal.SIGKILL, 0, 0, 0], fleet.logs()[-3000:]
    expected = {f"http://{h}/" for h in site.hosts} | {
        f"http://{h}/p/{i}.html" for h in site.hosts for i in range(PAGES_PER_HOST)
    }
    out = tmp_path / "export"
    figures = check_invariants(
        f"sink {kind}, a crawler SIGKILLed",
        store,
        out,
        expected=expected,
        summaries=True,
        logs=fleet.logs(),
        faults=1,
    )
    assert figures.done == len(expected), figures
    assert figures.extra["reaped"] > 0, figures  # the kill took leases: they were redone
    # Nothing per page stayed in Redis: records are in the sink, docs and leases are settled.
    assert _redis_per_page(redis_server, crawl) == dict.fromkeys(
        ("pages", "summaries", "docs", "leases", "dead"), 0
    )
    if kind == "folder":  # the killed crawler's open segment is read too (whole lines)
        assert list((tmp_path / "records" / "pages").glob(".*.part"))
        assert list((tmp_path / "records" / "pages").glob("*.jsonl"))
    # Parquet: the same rows as the JSONL export.
    pq_out = tmp_path / "parquet"
    exported = cli("export", *store, "--out", str(pq_out), "--format", "parquet", env=env)
    assert exported.returncode == 0, exported.stderr
    assert "wrote 453 page records" in exported.stdout
    assert _parquet_rows(pq_out / "pages.parquet") == _jsonl_rows(out / "pages.jsonl")
    assert _parquet_rows(pq_out / "summaries.parquet") == _jsonl_rows(out / "summaries.jsonl")


def _done(store: list[str]) -> int:
    run = cli("status", *store, "--json")
    return int(json.loads(run.stdout)["done"]) if run.returncode == 0 else 0


def test_bad_sink_urls_are_one_error_line(redis_server: RedisServer, tmp_path: Path) -> None:
    store = ["--redis", redis_server.url, "--crawl", f"bad{tmp_path.name[-8:]}"]
    for url, says in [
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("s3://Bad_Bucket", "not an S3 bucket name"),
        ("file://elsewhere/x", "local folder"),
    ]:
        run = cli("produce", *store, "http://127.0.0.1:1/", "--sink", url)
        assert run.returncode == 2, run.stderr
        assert run.stderr.count("\n") == 1, run.stderr
        assert says in error_line(run.stderr)
    assert cli("status", *store).returncode == 2  # nothing was created


@pytest.mark.parametrize("kind", ["folder", "missing-bucket", "s3-down"])
def test_a_sink_that_cannot_be_written_stops_the_worker_before_any_page(
    kind: str, redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env: dict[str, str] = {}
    if kind == "folder":
        (tmp_path / "file").write_text("a file, not a folder")
        sink, says = str(tmp_path / "file" / "records"), "Not a directory"
    elif kind == "missing-bucket":
        env = request.getfixturevalue("moto").env
        sink, says = "s3://no-such-bucket/x", "no bucket named 'no-such-bucket'"
    else:
        env = aws_env(f"http://127.0.0.1:{free_port()}")  # nothing listens there
        sink, says = "s3://some-bucket/x", "Could not connect"
    store = ["--redis", redis_server.url, "--crawl", f"unw{kind[:4]}{tmp_path.name[-8:]}"]
    assert cli("produce", *store, "http://127.0.0.1:9/", "--sink", sink).returncode == 0
    run = cli("crawl", *store, "--drain", "--allow-private", env=env, timeout=120)
    assert run.returncode == 4, run.stderr
    error = error_line(run.stderr)
    assert "cannot write records to" in error
    assert says in error
    assert "testing" not in run.stderr  # (the test credentials are never printed)
    status = json.loads(cli("status", *store, "--json").stdout)
    assert (status["done"], status["failed"], status["pending"]) == (0, 0, 1)
    assert status["in_flight"] == 0


@pytest.mark.slow
def test_a_full_disk_stops_claiming_and_a_later_worker_loses_no_record(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, crawl_args: list[str]
) -> None:
    site = site_factory("--addresses", "127.0.0.1", "--pages", "300")
    folder = tmp_path / "records"
    produce(crawl_args, site.roots, "--sink", str(folder), rate=300)
    error = crawl_on_a_full_disk(crawl_args, max_bytes=20_000)
    assert "cannot write records to" in error
    assert "File too large" in error
    status = json.loads(cli("status", *crawl_args, "--json").stdout)
    assert status["in_flight"] == 0  # released, not leaked
    assert status["pending"] > 0
    assert status["done"] > 0
    stopped_at = status["done"]
    # Every page settled so far has its record in the segments (whole lines only).
    lines = [
        line for p in sorted((folder / "pages").iterdir()) for line in whole_lines(p.read_bytes())
    ]
    assert len(latest_records(lines)) == stopped_at
    # A worker with room finishes the crawl: every page exported once.
    rest = cli("crawl", *crawl_args, "--drain", "--allow-private", timeout=120)
    assert rest.returncode == 0, rest.stderr
    out = tmp_path / "export"
    assert cli("export", *crawl_args, "--out", str(out)).returncode == 0
    pages = read_pages(out)
    urls = [p["url"] for p in pages]
    assert len(urls) == len(set(urls)) == 301
    assert {p["outcome"] for p in pages} == {"done"}
