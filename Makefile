# One command per habit. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run reset test test-faults test-browser lint typecheck bench bench-cluster clients clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,otel]'
	$(BIN)/python -m pip install -q -e clients/python
	@touch $(STAMP)

run: $(STAMP) ## start the service on 127.0.0.1:8000 with an embedded Redis (Ctrl-C stops it)
	$(BIN)/agentstream dev

reset: ## start over: delete the embedded Redis's data (.data: sessions, keys, the dev key); keeps .venv
	@if [ -S .data/redis.sock ] && $(BIN)/python -c "import sys; from shared.connect import is_running; sys.exit(0 if is_running('.data') else 1)" 2>/dev/null; then \
	  echo "an embedded Redis is still running on .data: stop \`make run\` first (Ctrl-C)"; exit 1; fi
	rm -rf .data

test: $(STAMP) ## run the whole test suite (starts its own Redis, gateways and workers)
	$(BIN)/python -m pytest

test-faults: $(STAMP) ## run only the fault-injection suite
	$(BIN)/python -m pytest -m faults

test-browser: $(STAMP) ## run only the tests that drive headless Chromium (console, browser resume)
	$(BIN)/python -m pytest -m browser

typecheck: $(STAMP) ## mypy over the packages
	$(BIN)/mypy

lint: $(STAMP) ## ruff, mypy and the import layers contract
	$(BIN)/ruff check cli shared gateway worker dataplane intent tests bench clients/python
	$(BIN)/mypy
	$(BIN)/mypy --disallow-untyped-defs clients/python/agentstream_client
	$(BIN)/lint-imports --no-cache

bench: $(STAMP) ## benchmark against the naive baseline, the ceiling and the peer, end to end too, and on 1 vs 3 Redis Cluster primaries (QUICK=1: ~2 min)
	$(BIN)/agentstream bench $(if $(QUICK),--quick,)

bench-cluster: $(STAMP) ## Redis Cluster hot path in-process (appender + sharded hub, no HTTP): Redis CPU per event on 1 vs 3 primaries, the queue's cost (QUICK=1)
	$(BIN)/python -m bench.cluster $(if $(QUICK),--quick,)

clients: $(STAMP) ## build the Python client's wheel into dist/ (the JavaScript client is clients/js/agentstream.js)
	$(BIN)/python -m pip wheel -q --no-deps -w dist clients/python

clean: ## remove the venv, data and caches
	rm -rf $(VENV) .data dist bench/results/latest.json .pytest_cache .mypy_cache .ruff_cache
