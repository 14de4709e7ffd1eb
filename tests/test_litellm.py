"""The summarizer against the LiteLLM proxy: an OpenAI-compatible server nobody on this project
wrote (.ci/tools-litellm.sh installs it into .tools/litellm). Its models answer with
``mock_response`` (no provider behind them), one of them under the proxy's own rpm limit; it
starts with ``LITELLM_LOCAL_MODEL_COST_MAP=True``, so it never downloads its price table."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from common.settings import build_settings
from distcrawl.redis_server import free_port
from distcrawl.sample_docs import make_docs
from summarizer.client import OpenAIEngine
from summarizer.engines import Request
from summarizer.profiles import Profiles
from tests.docscrawl import DocsCrawl
from tests.processes import ROOT, stop_process

pytestmark = [pytest.mark.tools, pytest.mark.slow]

LITELLM = Path(os.environ.get("DISTCRAWL_LITELLM", ROOT / ".tools" / "litellm" / "bin" / "litellm"))
MASTER_KEY = "sk-litellm-test-0123456789"
ANSWER = "LiteLLM mock summary of the page."
RPM = 10
CONFIG = f"""
model_list:
  - model_name: free-model
    litellm_params:
      model: openai/free-model
      api_key: sk-none
      mock_response: "{ANSWER}"
  - model_name: limited-model
    litellm_params:
      model: openai/limited-model
      api_key: sk-none
      mock_response: "{ANSWER}"
      rpm: {RPM}
router_settings:
  routing_strategy: usage-based-routing-v2  # enforces each deployment's rpm: over it, a 429
  num_retries: 0  # (else the proxy itself waits the minute out before it answers)
general_settings:
  master_key: {MASTER_KEY}
"""


@pytest.fixture(scope="module")
def litellm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The proxy's base URL (``.../v1``)."""
    assert LITELLM.exists(), f"{LITELLM} is missing: run .ci/tools-litellm.sh (make test does)"
    folder = tmp_path_factory.mktemp("litellm")
    config = folder / "config.yaml"
    config.write_text(CONFIG)
    port = free_port()
    log = (folder / "litellm.log").open("w")
    proc = subprocess.Popen(
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_DOCS": "True"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError("litellm did not start:\n" + (folder / "litellm.log").read_text())
        time.sleep(0.5)
    try:
        yield url + "/v1"
    finally:
        stop_process(proc)
        log.close()


def _env(base_url: str, model: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": MASTER_KEY,
        "DISTCRAWL_LLM__BASE_URL": base_url,
        "DISTCRAWL_LLM__MODEL": model,
    }


async def test_summaries_and_token_accounting_through_litellm(
    litellm: str, docs_crawl: DocsCrawl
) -> None:
    docs = make_docs(40)
    await docs_crawl.feed(docs)
    await docs_crawl.drain(_env(litellm, "free-model"))
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (40, 0, 0)
    records = await docs_crawl.records()
    assert {r["summary"] for r in records.values()} == {ANSWER}
    # what LiteLLM reports for the very request the summarizer sent is what the record holds
    settings = build_settings(llm={"model": "free-model", "base_url": litellm})
    engine = OpenAIEngine(None, settings.llm, None, None, lambda *_: None)  # type: ignore[arg-type]
    profile = Profiles.from_settings(settings.llm).for_host("docs.test")
    body, _ = engine.batch_body(Request(docs[7].url, docs[7].title, docs[7].text, profile))
    async with openai.AsyncOpenAI(base_url=litellm, api_key=MASTER_KEY, max_retries=0) as c:
        reply = await c.chat.completions.create(**body)
    assert reply.usage is not None
    record = records[docs[7].fp]
    assert record["prompt_tokens"] == reply.usage.prompt_tokens > 0
    assert record["completion_tokens"] == reply.usage.completion_tokens > 0
    model = str(record["summarizer"])
    ptok = sum(r["prompt_tokens"] for r in records.values())
    assert stats.per_model("prompt_tokens") == {model: ptok}
    ctok = sum(r["completion_tokens"] for r in records.values())
    assert stats.per_model("completion_tokens") == {model: ctok}


@pytest.mark.timeout(300)
async def test_litellms_rate_limit_is_a_429_we_wait_out(
    litellm: str, docs_crawl: DocsCrawl
) -> None:
    n = RPM + 5  # more than the proxy lets through in one minute
    await docs_crawl.feed(make_docs(n))
    env = _env(litellm, "limited-model")
    err = await docs_crawl.drain(env, "--concurrency", "4", timeout_s=240)
    assert "llm_retry" in err
    assert "http_429" in err  # LiteLLM's own limit answered...
    stats = await docs_crawl.stats()
    assert (stats.summarized, stats.failed, stats.pending) == (n, 0, 0)  # ...and was waited out
    records = await docs_crawl.records()
    assert {r["summary"] for r in records.values()} == {ANSWER}
