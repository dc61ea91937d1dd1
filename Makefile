# Two commands for a newcomer: `make up` runs the product, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
# Compiled catalogs are build output (not committed): one per .po, rebuilt when the .po changes.
MO_FILES := $(patsubst %.po,%.mo,$(wildcard locales/*/LC_MESSAGES/messages.po))

.PHONY: install browser locales up test test-fast test-sqlite test-pg lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

locales/%/LC_MESSAGES/messages.mo: locales/%/LC_MESSAGES/messages.po | $(INSTALLED)
	$(BIN)/pybabel compile -d locales -D messages -l $*

install: $(INSTALLED) $(MO_FILES) ## create the venv, install the project with its dev tools, compile the catalogs

browser: ## Debian's chromium for the browser tests (Playwright drives it; no browser download)
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "install Debian's chromium (apt-get install chromium) for the browser tests"; exit 1; }

locales: install ## extract the bot's messages, merge them into the catalogs (python locales/translate.py ru FILE.json fills translations)
	$(BIN)/python locales/translate.py ru

up: install ## migrate and start API, workers and scheduler on 127.0.0.1:8000 (SQLite, in-process queue)
	$(BIN)/crm up

lint: install ## ruff, mypy and the import contracts of pyproject.toml (DESIGN.md section 3)
	$(BIN)/ruff check crm bot channels telegram_transport agents miniapp sandbox tests bench
	$(BIN)/ruff format --check crm bot channels telegram_transport agents miniapp sandbox tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

test-fast: install ## the edit loop: SQLite, no end-to-end tests (marked e2e), one worker per core
	CRM_TEST_DATABASE_URL= $(BIN)/python -m pytest -m "not e2e" -n auto

# The whole suite runs on TEST_WORKERS pytest-xdist workers (each has its own SQLite file or
# PostgreSQL database); tests marked exclusive (a PostgreSQL restart) run alone afterwards.
TEST_WORKERS ?= 2

test-sqlite: install browser ## the suite on the embedded defaults (SQLite, in-process queue)
	CRM_TEST_DATABASE_URL= $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not exclusive"

test-pg: install browser ## the suite on PostgreSQL and Redis (both must run on 127.0.0.1)
	CRM_TEST_DATABASE_URL=$(PG_TEST_URL) CRM_TEST_REDIS_URL=$(REDIS_TEST_URL) \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not exclusive"
	CRM_TEST_DATABASE_URL=$(PG_TEST_URL) CRM_TEST_REDIS_URL=$(REDIS_TEST_URL) \
		$(BIN)/python -m pytest -m exclusive

test: lint test-sqlite ## lint, type-check and run the whole suite (also on PostgreSQL when it answers)
	@if $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		$(MAKE) --no-print-directory test-pg; \
	else echo "PostgreSQL is not running on 127.0.0.1:5432: skipped the PostgreSQL run"; fi

bench: install ## benchmarks on PostgreSQL and Redis, with baselines measured in the same run
	$(BIN)/python -m bench.bench_search
	$(BIN)/python -m bench.bench_import
	$(BIN)/python -m bench.bench_webhooks
	$(BIN)/python -m bench.bench_notify
	$(BIN)/python -m bench.bench_memory
	$(BIN)/python -m bench.eval_intents
	$(BIN)/python -m bench.eval_drafts
	$(BIN)/python -m bench.bench_startup
	$(BIN)/python -m bench.bench_drafts
	$(BIN)/python -m bench.eval_retrieval

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
