"""Producing seeds: command line, files with garbage lines, stdin, sitemaps."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from distcrawl.redis_server import RedisServer
from tests.processes import SiteProcess, assert_no_traceback, cli


def _status(store: list[str]) -> dict[str, object]:
    proc = cli("status", *store, "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_seed_file_with_garbage_lines(tmp_path: Path, redis_server: RedisServer) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "# news sites\n"
        "http://a.test/one\n"
        "not a url at all\n"
        "\n"
        "mailto:someone@a.test\n"
        "HTTP://A.TEST/one#dup\n"
        "http://b.test/two\n"
        "http://[broken/\n"
    )
    store = ["--redis", redis_server.url, "--crawl", f"seed{tmp_path.name[-8:]}"]
    proc = cli("produce", *store, "--file", str(seeds))
    assert proc.returncode == 1  # some lines were bad: the good ones still went in
    assert_no_traceback(proc.stderr)
    errors = proc.stderr.strip().splitlines()
    assert [e.split(": ")[1] for e in errors] == [f"skipped seed {seeds}:{n}" for n in (3, 5, 8)]
    assert "admitted 2 seeds" in proc.stdout
    status = _status(store)
    assert status["admitted"] == 2
    assert status["rejected"] == {"duplicate": 1, "invalid": 3}


def test_seeds_from_stdin(tmp_path: Path, redis_server: RedisServer) -> None:
    store = ["--redis", redis_server.url, "--crawl", f"stdin{tmp_path.name[-8:]}"]
    proc = cli("produce", *store, "--file", "-", input_text="http://a.test/1\nhttp://a.test/2\n")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 2 seeds" in proc.stdout


def test_sitemap_index_is_followed(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    site = site_factory("--pages", "25")
    store = ["--redis", redis_server.url, "--crawl", f"map{tmp_path.name[-8:]}"]
    proc = cli("produce", *store, "--sitemap", f"http://{site.hosts[0]}/sitemap.xml")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 25 seeds" in proc.stdout
    assert _status(store)["admitted"] == 25


def test_second_producer_keeps_the_spec(tmp_path: Path, redis_server: RedisServer) -> None:
    store = ["--redis", redis_server.url, "--crawl", f"two{tmp_path.name[-8:]}"]
    assert cli("produce", *store, "http://a.test/", "--rate", "3").returncode == 0
    same = cli("produce", *store, "http://a.test/again", "--rate", "3")
    assert "already has a spec" not in same.stderr
    proc = cli("produce", *store, "http://a.test/more", "--rate", "9")
    assert proc.returncode == 0, proc.stderr
    assert "admitted 1 seeds" in proc.stdout
    assert "already has a spec (rate 3.0/s" in proc.stderr
    spec = cli("status", *store, "--json")
    assert spec.returncode == 0
