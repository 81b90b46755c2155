# Two commands set up a fresh machine: `make run` (the service, embedded default) and
# `make test` (lint, types, tests). They share one virtualenv: `make run` installs what the
# service needs to run, `make test` adds the development tools (linters, pytest, Playwright).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: run test lint demo sandbox bench clean

$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(RUNTIME) $(STAMP)

run: $(RUNTIME)
	$(BIN)/amosync serve --host $${HOST:-127.0.0.1} --port $${PORT:-8080}

demo: $(RUNTIME)
	$(BIN)/amosync demo

sandbox: $(RUNTIME)
	$(BIN)/amosync sandbox --port $${PORT:-9000}

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/full_sync.py
	$(BIN)/python bench/webhooks.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
