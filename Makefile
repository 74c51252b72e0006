# The two commands of the README:
#   make run    set up .venv (first time, or when pyproject.toml changes) and open GateScope
#   make test   the same set-up, then the whole test suite (what CI runs, through .ci/run)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow bench screenshot clean

run: $(STAMP)
	$(BIN)/gatescope

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/gatescope bench

screenshot: $(STAMP)
	$(BIN)/gatescope --screenshot docs/screenshot.png

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "GateScope needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .kernel-build
