# Set-up on a fresh machine: `make demo` (the embedded demo) or `make test` (the test suite).
# torch is pinned first: on these machines torch==2.13.0 is a local CPU wheel, while an
# unpinned torch would pull gigabytes of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/descplug demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
