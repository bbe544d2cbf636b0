# The README's commands run through these targets. Everything installs into .venv and
# ~/.cache/linker; nothing needs to be installed by hand beyond Python 3.11, Java 17 and Maven
# (Java 17 also runs Spark in local mode for the Spark engine's tests: the jars ship in pyspark).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_ACCOUNTS ?= 20000
DEMO_DIR ?= demo

.PHONY: venv lint test neo4j-jars demo bench clean browser-deps docs

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,embed,spark]'
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check linker tests bench tools
	$(BIN)/ruff format --check linker tests bench tools
	$(BIN)/mypy

# The whole test suite, as CI runs it.
test: lint browser-deps neo4j-jars
	$(BIN)/pytest -q

# The main job end to end on a generated demo world (no server needed).
demo: venv
	$(BIN)/linker synth --accounts $(DEMO_ACCOUNTS) --seed 7 --out $(DEMO_DIR)/world
	$(BIN)/linker run $(DEMO_DIR)/world --out $(DEMO_DIR)/takedown.csv
	$(BIN)/linker evaluate --labels $(DEMO_DIR)/world/labels.csv --takedown $(DEMO_DIR)/takedown.csv

bench: venv
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,embed,spark,bench]'
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache

# Debian's chromium and playwright-core drive Neo4j Browser in the browser test.
BROWSER_STAMP := tests/browser/node_modules/.installed-stamp
$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	  else echo "the browser test needs Debian's chromium: run 'sudo apt-get install chromium'" >&2; exit 1; fi; }
	cd tests/browser && npm ci --no-audit --no-fund --silent
	touch $@

browser-deps: $(BROWSER_STAMP)

docs: venv
	$(BIN)/python tools/gen_cli_docs.py

# Neo4j Community jars from Maven Central (linker/neo4j/pom.xml) into ~/.cache/linker, once.
neo4j-jars: venv
	$(BIN)/linker neo4j jars
