"""Structured extraction (--llm-schema) end to end: distcrawl processes, the mock LLM over
loopback HTTP, a real redis-server, and jsonschema checking what comes out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from distcrawl.sample_docs import make_docs
from tests.docscrawl import DocsCrawl
from tests.mock_llm import prompt_tokens
from tests.processes import (
    MockProcess,
    SiteProcess,
    assert_no_traceback,
    cli,
    error_line,
    read_pages,
)

API_KEY = "sk-test-0123456789abcdef"
FAST = ["--rate", "500", "--burst", "100", "--per-domain-inflight", "16", "--allow-private"]

PAGE: dict[str, Any] = {
    "title": "page",
    "type": "object",
    "properties": {
        "headline": {"type": "string", "minLength": 1},
        "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "words": {"type": "integer", "minimum": 0},
    },
    "required": ["headline", "topics", "words"],
    "additionalProperties": False,
}
OTHER: dict[str, Any] = {
    "title": "other",
    "type": "object",
    "properties": {"language": {"enum": ["en", "de"]}},
    "required": ["language"],
    "additionalProperties": False,
}


@pytest.fixture
def mock() -> Iterator[MockProcess]:
    server = MockProcess("--api-key", API_KEY)
    yield server
    server.stop()


def _write(path: Path, value: object) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.slow
def test_run_over_a_site_extracts_pages_whose_data_validates(
    site_factory: Callable[..., SiteProcess], tmp_path: Path, mock: MockProcess
) -> None:
    """Two hosts: one extracted with the schema, the other summarized (its profile says
    "schema": null); extractions.jsonl and summaries.jsonl each hold their host's pages."""
    site = site_factory("--addresses", "127.0.0.1,127.0.0.2", "--pages", "20")
    schema = _write(tmp_path / "page.schema.json", PAGE)
    profiles = _write(tmp_path / "profiles.json", [{"match": "127.0.0.2", "schema": None}])
    out = tmp_path / "out"
    proc = cli(
        "run",
        *(f"http://{h}/" for h in site.hosts),
        "--out",
        str(out),
        "--no-progress",
        *FAST,
        "--llm-schema",
        schema,
        "--llm-profiles",
        profiles,
        env=mock.worker_env(API_KEY),
    )
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stderr)
    done = {r["url"] for r in read_pages(out) if r["outcome"] == "done"}
    extracted = _jsonl(out / "extractions.jsonl")
    summaries = _jsonl(out / "summaries.jsonl")
    assert {r["url"] for r in extracted} == {u for u in done if "//127.0.0.1:" in u}
    assert {r["url"] for r in summaries} == {u for u in done if "//127.0.0.2:" in u}
    assert len(extracted) == 21
    for record in extracted:
        assert (record["outcome"], record["schema"]) == ("extracted", "page")
        jsonschema.validate(record["data"], PAGE)
    assert all("data" not in r and r["summary"].startswith("Summary:") for r in summaries)
    formats = [b.get("response_format", {}).get("type") for b in mock.requests()]
    assert formats.count("json_schema") == sum(not r["cached"] for r in extracted)
    spent = sum(r["prompt_tokens"] for r in extracted + summaries)
    assert spent == mock.stats()["prompt_tokens"]
    assert "and 21 extractions to" in proc.stderr


def _broken_docs(n: int, broken: int) -> list[Any]:
    docs = make_docs(n)
    return [
        msgspec.structs.replace(d, text=d.text + " BROKEN") if i < broken else d
        for i, d in enumerate(docs)
    ]


@pytest.mark.parametrize(
    ("fault", "error"), [("malformed", "is not JSON"), ("violating", "does not validate")]
)
async def test_invalid_answers_are_repaired_once_then_fail_with_invalid_output(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
    fault: str,
    error: str,
) -> None:
    docs = _broken_docs(10, broken=3)
    await docs_crawl.feed(docs)
    mock.configure(json_fault=fault, json_fault_match="BROKEN")
    schema = _write(tmp_path / "page.json", PAGE)
    await docs_crawl.drain(mock.worker_env(API_KEY), "--llm-schema", schema)

    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (7, 3, 0)
    assert stats.balanced
    assert stats.counts["docs_failed:invalid_output"] == 3
    records = await docs_crawl.records()
    failed = {fp: r for fp, r in records.items() if r["outcome"] == "failed"}
    assert set(failed) == {d.fp for d in docs[:3]}
    assert {(r["reason"], r["schema"], r["data"]) for r in failed.values()} == {
        ("invalid_output", "page", None)
    }
    for r in records.values():
        if r["outcome"] == "extracted":
            jsonschema.validate(r["data"], PAGE)

    bodies = mock.requests()
    assert len(bodies) == 7 + 2 * 3  # one repair call per broken doc, no more
    repairs = [b for b in bodies if any(m["role"] == "assistant" for m in b["messages"])]
    assert len(repairs) == 3
    for body in repairs:
        assert "BROKEN" in body["messages"][0]["content"]
        assert error in body["messages"][-1]["content"]  # the validation error, for the model
    # both calls of a failed doc are accounted to it, and every token to some doc
    for r in failed.values():
        calls = [b for b in bodies if r["url"] in b["messages"][0]["content"]]
        assert len(calls) == 2
        assert r["prompt_tokens"] == sum(prompt_tokens(b["messages"]) for b in calls)
    await docs_crawl.assert_accounted(mock.stats())


async def test_an_answer_fixed_by_the_repair_call_is_extracted_with_both_calls_tokens(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
) -> None:
    docs = _broken_docs(4, broken=2)
    await docs_crawl.feed(docs)
    mock.configure(json_fault="violating", json_fault_match="BROKEN", json_fault_once=True)
    await docs_crawl.drain(
        mock.worker_env(API_KEY), "--llm-schema", _write(tmp_path / "p.json", PAGE)
    )
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (4, 0, 0)
    records = await docs_crawl.records()
    bodies = mock.requests()
    assert len(bodies) == 4 + 2
    for doc in docs:
        record = records[doc.fp]
        jsonschema.validate(record["data"], PAGE)
        calls = [b for b in bodies if doc.url in b["messages"][0]["content"]]
        assert len(calls) == (2 if "BROKEN" in doc.text else 1)
        assert record["prompt_tokens"] == sum(prompt_tokens(b["messages"]) for b in calls)


LOOSE = {**PAGE, "additionalProperties": True}  # valid, but not for OpenAI's strict mode


@pytest.mark.parametrize(
    ("formats", "schema"),
    [(["text", "json_object"], PAGE), (["text", "json_object", "json_schema"], LOOSE)],
    ids=["json_schema_unsupported", "schema_refused_by_strict_mode"],
)
async def test_json_object_after_a_400_naming_response_format(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
    formats: list[str],
    schema: dict[str, Any],
) -> None:
    """auto falls back to json_object with the schema in a system message, for good in this
    process; the answers still validate."""
    mock.configure(response_formats=formats)
    await docs_crawl.feed(make_docs(5))
    await docs_crawl.drain(
        mock.worker_env(API_KEY), "--llm-schema", _write(tmp_path / "p.json", schema)
    )
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed) == (5, 0)
    for record in (await docs_crawl.records()).values():
        jsonschema.validate(record["data"], schema)
    bodies = mock.requests()
    refused = [b for b in bodies if b["response_format"]["type"] == "json_schema"]
    answered = [b for b in bodies if b["response_format"]["type"] == "json_object"]
    assert 1 <= len(refused) <= 5  # the calls in flight before the first 400 came back
    assert len(answered) == 5
    assert all(b["messages"][0]["role"] == "system" for b in answered)
    assert mock.stats()["by_status"] == {"400": len(refused), "200": 5}


async def test_a_fixed_response_format_does_not_fall_back(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
) -> None:
    mock.configure(response_formats=["text", "json_object"])
    await docs_crawl.feed(make_docs(2))
    schema = _write(tmp_path / "p.json", PAGE)
    args = ["--llm-schema", schema, "--llm-response-format", "json_schema"]
    await docs_crawl.drain(mock.worker_env(API_KEY), *args)
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed) == (0, 2)
    assert stats.counts["docs_failed:http_400"] == 2
    assert mock.stats()["by_status"] == {"400": 2}


async def test_the_cache_keys_on_the_schema(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
) -> None:
    """Identical text: one call per schema, and one for the summary; never another's answer."""
    text = "The same article text, syndicated on several sites. " * 20
    page = _write(tmp_path / "page.json", PAGE)
    other = _write(tmp_path / "other.json", OTHER)

    async def run(host: str, *args: str) -> list[dict[str, Any]]:
        docs = make_docs(2, text=text, host=host)
        await docs_crawl.feed(docs)
        await docs_crawl.drain(mock.worker_env(API_KEY), *args)
        records = await docs_crawl.records()
        return [records[d.fp] for d in docs]

    first = await run("a.test", "--llm-schema", page)
    assert mock.stats()["requests"] == 1
    assert sorted(r["cached"] for r in first) == [False, True]
    second = await run("b.test", "--llm-schema", other)
    assert mock.stats()["requests"] == 2
    assert [r["data"] for r in second] == [{"language": "en"}] * 2
    summary = await run("c.test")
    assert mock.stats()["requests"] == 3
    assert all(r["summary"].startswith("Summary:") and "data" not in r for r in summary)
    again = await run("d.test", "--llm-schema", page)
    assert mock.stats()["requests"] == 3  # the first schema's answer, from the cache
    assert all(r["cached"] for r in again)
    assert [r["data"] for r in again] == [first[0]["data"]] * 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the schema file"),
        ("{not json", "is not JSON"),
        (json.dumps({"type": "objct"}), "not a valid JSON Schema at $.type"),
        (json.dumps({"type": "array"}), "must describe a JSON object"),
        (json.dumps([1]), "expected a JSON object"),
    ],
)
async def test_a_bad_schema_file_is_one_error_line(
    docs_crawl: DocsCrawl,
    mock: MockProcess,
    tmp_path: Path,
    content: str | None,
    message: str,
) -> None:
    await docs_crawl.feed(make_docs(3))
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    for args in (
        ["--llm-schema", str(path)],
        [
            "--llm-profiles",
            _write(tmp_path / "profiles.json", [{"match": "*", "schema": "bad.json"}]),
        ],
    ):
        proc = await docs_crawl.summarize(mock.worker_env(API_KEY), *args, timeout_s=60)
        assert proc.returncode == 2
        error = error_line(proc.stderr)
        assert message in error
        assert str(path) in error
    stats = await docs_crawl.stats()
    assert (stats.waiting, stats.summarized, stats.failed) == (3, 0, 0)
    assert mock.stats()["requests"] == 0


def test_run_refuses_a_schema_before_crawling(tmp_path: Path) -> None:
    """A bad schema stops run before anything starts; a good one without an API is refused
    too (the extractive summarizer cannot fill a schema)."""
    bad = _write(tmp_path / "bad.json", {"type": 5})
    out = tmp_path / "out"
    proc = cli("run", "http://127.0.0.1:9/", "--out", str(out), "--llm-schema", bad, timeout=60)
    assert proc.returncode == 2
    assert "not a valid JSON Schema" in proc.stderr
    assert not (out / ".store").exists()
    good = _write(tmp_path / "page.json", PAGE)
    env = {
        "OPENAI_API_KEY": "",
        "DISTCRAWL_LLM__BASE_URL": "",
        "DISTCRAWL_LLM__SUMMARIZER": "extractive",
    }
    proc = cli(
        "run",
        "http://127.0.0.1:9/",
        "--out",
        str(out),
        "--llm-schema",
        good,
        "--fresh",
        "--no-progress",
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "needs an LLM API" in proc.stderr
    assert_no_traceback(proc.stderr)
