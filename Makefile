# Two commands set up a fresh machine: `make run` (the service, embedded default) and
# `make test` (lint, types, tests). Each makes its own virtualenv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint demo sandbox bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/amosync serve --host $${HOST:-127.0.0.1} --port $${PORT:-8080}

demo: $(STAMP)
	$(BIN)/amosync demo

sandbox: $(STAMP)
	$(BIN)/amosync sandbox --port $${PORT:-9000}

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/full_sync.py
	$(BIN)/python bench/webhooks.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
