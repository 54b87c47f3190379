# clipdex: `make run` serves the API on the embedded default, `make test` runs every check.
# Both create .venv and install what is missing first; the install is redone only when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# serve-production's worker count; empty: 1 on the embedded backends, 2 on the shared ones (README: Production).
WORKERS ?=
MIGRATE := $(BIN)/piccolo migrations forwards all
# The local Upstash-compatible servers (upstash_local/): a development token, never a real one.
UPSTASH_DEV_TOKEN ?= clipdex-local-dev-token
UPSTASH_REDIS_PORT ?= 8079
UPSTASH_VECTOR_PORT ?= 8080
UPSTASH_QSTASH_PORT ?= 8081
REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test chromium lint schema.graphql migrate seed reindex bench screenshot serve-production upstash-redis upstash-vector upstash-qstash clean

$(INSTALLED): pyproject.toml
	# A venv left half-made by an interrupted run has no pip: make it afresh.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

migrate: $(INSTALLED)
	$(MIGRATE)

seed: migrate
	$(BIN)/litestar --app app:create_app seed

reindex: migrate
	$(BIN)/litestar --app app:create_app reindex

# The start-up check first: a search index another clipdex holds is one line, before anything else runs.
# uvicorn's own reloader serves: its watching process imports no app code. `litestar run --reload`
# built the whole app, model included (~310 MB), in a process of its own just to find it, then ran
# this same command. Two malloc arenas instead of one per thread: the indexing threads' freed buffers
# otherwise stay in the worker, ~80 MB after indexing the demo catalogue (BENCHMARKS.md, section 7).
run: $(INSTALLED)
	$(BIN)/python -m core.startup --workers 1 >/dev/null
	$(MIGRATE)
	$(BIN)/litestar --app app:create_app seed --if-empty
	MALLOC_ARENA_MAX=2 exec $(BIN)/uvicorn --factory app:create_app --reload --host $(HOST) --port $(PORT)

# The GraphQL schema as the code builds it (tests/features/test_graphql_api.py checks the two agree).
schema.graphql: $(INSTALLED)
	$(BIN)/litestar --app app:create_app graphql-schema --output schema.graphql

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint chromium
	$(BIN)/python -m pytest

# The browser tests (tests/browser.py) drive Debian's Chromium, never a browser Playwright downloads.
# It is installed when missing and make runs as root (as CI does); otherwise those tests skip (outside CI).
chromium:
	@if [ -n "$$TEST_CHROMIUM" ] || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium); \
	else echo "No /usr/bin/chromium (sudo apt-get install chromium): the browser tests will skip."; fi

# Every benchmark (see BENCHMARKS.md); `make bench QUICK=1` for a few-minute run. The HTTP load
# generator is wrk, from Debian's packages.
bench: $(INSTALLED)
	# A fresh machine's package lists may be empty or old: refresh them once if the first try fails.
	command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk) \
		|| (sudo apt-get update -q && sudo apt-get install -y -q wrk)
	$(BIN)/python -m bench $(if $(QUICK),--quick)

# docs/search-page.png, the README's picture of the search page: a fresh copy of the demo catalogue
# served and searched in the browser the tests use (Debian's Chromium, nothing leaves loopback).
screenshot: $(INSTALLED) chromium
	$(BIN)/python -m tests.search_page_screenshot docs/search-page.png

# The start-up check refuses, in one line, what the settings cannot serve (WORKERS=4 on the embedded
# index, an Upstash Vector index of the wrong shape) before anything is migrated or forked; it prints
# how many workers to start.
serve-production: $(INSTALLED)
	workers=$$(APP_ENV=production $(BIN)/python -m core.startup --workers '$(WORKERS)') \
		&& APP_ENV=production $(MIGRATE) \
		&& APP_ENV=production exec $(BIN)/uvicorn --factory app:create_app --host $(HOST) --port $(PORT) \
			--workers $$workers --no-access-log --proxy-headers

# Upstash Redis's REST API on http://127.0.0.1:8079, in front of the Redis at REDIS_URL.
upstash-redis: $(INSTALLED)
	$(BIN)/python -m upstash_local.redis_server --port $(UPSTASH_REDIS_PORT) --token $(UPSTASH_DEV_TOKEN) \
		--redis-url $(REDIS_URL)

# Upstash Vector's REST API on http://127.0.0.1:8080: the index VECTOR_EMBEDDING=local needs (HYBRID,
# 384-d, COSINE, no hosted model), in memory (add --path DIR to keep it; `make reindex` refills it).
upstash-vector: $(INSTALLED)
	$(BIN)/python -m upstash_local.vector_server --port $(UPSTASH_VECTOR_PORT) --token $(UPSTASH_DEV_TOKEN) \
		--index-type HYBRID --similarity COSINE --dimension 384

# Upstash QStash's REST API on http://127.0.0.1:8081, delivering to loopback only, state in memory (add
# --path FILE to keep messages and schedules across restarts).
upstash-qstash: $(INSTALLED)
	$(BIN)/python -m upstash_local.qstash_server --port $(UPSTASH_QSTASH_PORT) --token $(UPSTASH_DEV_TOKEN)

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
