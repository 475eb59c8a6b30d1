# Developer entry points.  `make test` is what CI (.ci/run) runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv test demo lint

venv: $(VENV)/.installed

# Re-install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: venv
	scripts/ensure-postgres
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m repo demo

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
