# hubpulse: two commands on a fresh machine: `make up`, `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
UV := $(PYTHON) -m uv
BIN := $(VENV)/bin

.PHONY: help install up test test-fast lint format asyncapi openapi event-schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/hubpulse: pyproject.toml uv.lock libs/common/pyproject.toml $(wildcard services/*/pyproject.toml) clients/python/pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	$(UV) sync --all-packages --python $(VENV)/bin/python
	@touch $(BIN)/hubpulse

# The AsyncAPI project's own parser validates docs/asyncapi.yaml in the suite (npm registry, pinned lock).
ASYNCAPI_TOOL := tools/asyncapi/node_modules/.package-lock.json
$(ASYNCAPI_TOOL): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	npm ci --prefix tools/asyncapi --no-audit --no-fund --loglevel=error
	@touch $(ASYNCAPI_TOOL)

install: $(BIN)/hubpulse $(ASYNCAPI_TOOL)  ## create .venv with the `hubpulse` command and every service

up: install  ## start the whole platform on embedded defaults (offline demo)
	$(BIN)/hubpulse up --demo

test: install  ## the full test suite (what CI runs)
	$(BIN)/pytest -q

test-fast: install  ## the suite without browser tests
	$(BIN)/pytest -q -m "not browser"

lint: install  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

asyncapi: install  ## regenerate docs/asyncapi.yaml from the event models
	$(BIN)/python -m hubpulse_common.asyncapi > docs/asyncapi.yaml

openapi: install  ## regenerate docs/openapi.json from the gateway's routes
	$(BIN)/python -m hubpulse_gateway.openapi > docs/openapi.json

event-schemas: install  ## release the schema of any new topic into docs/events/ and check the rest stay compatible
	$(BIN)/python -m hubpulse_common.schema_compat

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tools/asyncapi/node_modules
