# The two commands of the README:
#   make run    set up .venv with what the app needs (first time, or when pyproject.toml
#               changes) and open GateScope
#   make test   the same, plus what the tests need, then the whole test suite and a check of
#               the installed form (what CI runs, through .ci/run)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APP    := $(VENV)/.installed-app
TESTS  := $(VENV)/.installed-test

.PHONY: run test test-slow check-install bench screenshot clean

run: $(APP)
	$(BIN)/gatescope

test: $(TESTS)
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory check-install

test-slow: $(TESTS)
	$(BIN)/python -m pytest -q -m slow

# Builds the wheel, installs it into a fresh environment outside the clone and runs it there
# (--help, a short train of a bundled example, a screenshot): an editable install hides
# missing package data.
check-install: $(APP)
	$(BIN)/python tools/check_install.py

bench: $(APP)
	$(BIN)/gatescope bench

screenshot: $(APP)
	$(BIN)/python tools/screenshots.py

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "GateScope needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(APP): pyproject.toml setup.py $(VENV)/.created
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TESTS): pyproject.toml setup.py $(APP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info .kernel-build
