# The README's commands run through these targets. Everything installs into .venv and
# ~/.cache/linker; nothing needs to be installed by hand beyond Python 3.11, Java 17 and Maven.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_ACCOUNTS ?= 20000
DEMO_DIR ?= demo

.PHONY: venv lint test test-all demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,embed]'
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check linker tests bench
	$(BIN)/ruff format --check linker tests bench
	$(BIN)/mypy

# The whole test suite, as CI runs it.
test: lint
	$(BIN)/pytest -q

# The main job end to end on a generated demo world (no server needed).
demo: venv
	$(BIN)/linker synth --accounts $(DEMO_ACCOUNTS) --seed 7 --out $(DEMO_DIR)/world
	$(BIN)/linker validate $(DEMO_DIR)/world --out $(DEMO_DIR)/validated

bench: venv
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,embed,bench]'
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache
