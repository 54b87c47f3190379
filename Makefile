# clipdex: `make run` serves the API on the embedded default, `make test` runs every check.
# Both create .venv and install what is missing first; the install is redone only when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: run test lint migrate seed reindex serve-production clean

$(INSTALLED): pyproject.toml
	# A venv left half-made by an interrupted run has no pip: make it afresh.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

migrate: $(INSTALLED)
	$(BIN)/piccolo migrations forwards all

seed: migrate
	$(BIN)/litestar --app app:create_app seed

reindex: migrate
	$(BIN)/litestar --app app:create_app reindex

run: migrate
	$(BIN)/litestar --app app:create_app seed --if-empty
	$(BIN)/litestar --app app:create_app run --reload --host $(HOST) --port $(PORT)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

serve-production: $(INSTALLED)
	APP_ENV=production $(BIN)/piccolo migrations forwards all
	APP_ENV=production $(BIN)/uvicorn --factory app:create_app --host $(HOST) --port $(PORT) \
		--workers $(WORKERS) --no-access-log --proxy-headers

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
