# Two commands for a new machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-slow test-all lint typecheck unit venv bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/posbatch demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# One pytest worker per core: the suite is a long tail of short tests. Tests marked
# `slow` (real worker processes, 50 simulated seeds, every hostile value for every
# command) run in `make test-slow`; CI runs both.
unit: $(STAMP)
	$(BIN)/pytest -q -n auto -m "not slow"

test: lint typecheck unit

test-slow: $(STAMP)
	$(BIN)/pytest -q -n auto -m slow

test-all: test test-slow

# Each script prints its figures and its ratio to a baseline measured in the same run.
bench: $(STAMP)
	-$(BIN)/python bench/codec.py
	-$(BIN)/python bench/scan.py
	-$(BIN)/python bench/sim.py --target
	-$(BIN)/python bench/host.py
	-$(BIN)/python bench/clearing.py
	-$(BIN)/python bench/sealing.py
	-$(BIN)/python bench/backoffice.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
