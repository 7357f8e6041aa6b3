# Set-up and everyday tasks. `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-server lint typecheck format clean

setup: $(STAMP)

# Pinned dependencies (pyproject.toml) into a local virtual environment, the package editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Ingest the shipped samples into an embedded store and run example searches (works offline).
demo: setup
	$(BIN)/retriever demo

# The test suite: offline, real FlagEmbedding on a tiny local model, real in-process Qdrant engines.
test: setup
	$(BIN)/python -m pytest

# The inner loop: everything but the long groups marked `slow` (crash tests, score parity, ...).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not server"

# The server tests (marked `server`) against a running Qdrant: `docker compose up -d qdrant`, or the cluster
# profile (`docker compose --profile cluster up -d qdrant-1 qdrant-2 qdrant-3`) for the cluster checks too.
# QDRANT_URL defaults to http://localhost:6333; QDRANT_API_KEY comes from the environment, as for compose.
test-server: setup
	QDRANT_URL=$${QDRANT_URL:-http://localhost:6333} $(BIN)/python -m pytest -m server

lint: setup typecheck
	$(BIN)/ruff check indexer retriever tests samples benchmarks
	$(BIN)/ruff format --check indexer retriever tests samples benchmarks

typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format indexer retriever tests samples benchmarks

clean:
	rm -rf .demo .qdrant .pytest_cache
