# Everything a newcomer needs: `make demo` and `make test` on a machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo bench emulators acceptance acceptance-local clean

install: $(STAMP)

# Reinstall when the dependency list changes; a fresh clone builds the venv from scratch.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check provision runner tests scripts
	$(BIN)/ruff format --check provision runner tests scripts

typecheck: install
	$(BIN)/mypy

# Four pytest workers on these 2-CPU machines: much of the suite waits (emulated runs whose
# notebooks poll, subprocesses) rather than computes; measured 77-91 s against 123 s with one
# worker per CPU. Each worker takes whole test files, so make demo's session-wide walk runs once.
unit: install
	$(BIN)/pytest -q -n 4 --dist loadfile

test: lint typecheck unit

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python scripts/bench.py

emulators: install
	$(BIN)/python scripts/serve_emulators.py

# End to end against the real workspace and dbt Cloud account named by DATABRICKS_* and
# DBT_CLOUD_* (README: "Trying it on a sandbox workspace first"); without DBTWF_ACCEPTANCE=1
# it lists what to set and exits 0.
acceptance: install
	$(BIN)/python scripts/acceptance.py

# The same suite, unchanged, against the local emulators (`make test` runs it too, through
# tests/test_acceptance_local.py).
acceptance-local: install
	$(BIN)/python scripts/acceptance.py --local

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
