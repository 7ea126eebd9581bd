# Gateway Bench. `make bench` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TARGET_REQS := $(sort $(wildcard targets/*/requirements.txt))
SCENARIO ?= scenarios/default.toml
TARGETS ?=
RUN ?=

.PHONY: setup bench bench-quick test check lint report verify clean

$(STAMP): pyproject.toml constraints.txt $(TARGET_REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e '.[dev]' $(addprefix -r ,$(TARGET_REQS))
	@touch $(STAMP)

setup: $(STAMP)

## bench: benchmark every stack with the default suite and render the HTML report
bench: setup
	$(BIN)/gwbench run $(SCENARIO) $(if $(TARGETS),--targets $(TARGETS))

## bench-quick: the short variant (about 1.5 minutes), for smoke tests
bench-quick: setup
	$(BIN)/gwbench run scenarios/quick.toml $(if $(TARGETS),--targets $(TARGETS))

## test: run the test suite against real servers on 127.0.0.1
test: setup
	$(BIN)/pytest

## check: lint, type-check and test
check: lint test

lint: setup
	$(BIN)/ruff check harness tests targets
	$(BIN)/mypy

## report: re-render a stored run, e.g. make report RUN=results/20261124T020000Z-default
report: setup
	@test -n "$(RUN)" || { echo "usage: make report RUN=<run directory or id>"; exit 2; }
	$(BIN)/gwbench report $(RUN)

## verify: check every stack against targets/CONTRACT.md
verify: setup
	$(BIN)/gwbench verify $(if $(TARGETS),--targets $(TARGETS))

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
