# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLES := $(sort $(dir $(wildcard examples/*/refs.py)))
# Generated refs of the test and benchmark packages must be fresh too.
GENERATED := tests/conformance tests/events_pkg tests/poison tests/simulation tests/test_postgres_workload benchmarks/workload benchmarks/echo tests/rolling_v1 tests/rolling_v2 tests/bulk_workers

.PHONY: setup demo test lint typecheck check pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/pachytype generate examples/bank --check || $(BIN)/pachytype generate examples/bank
	$(BIN)/python -m examples.bank

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

check: setup
	$(BIN)/python scripts/check_packages.py --check $(EXAMPLES) --generated $(GENERATED)

pytest: setup
	$(BIN)/pytest

test: lint typecheck check pytest

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
