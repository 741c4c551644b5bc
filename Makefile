# hubpulse: two commands on a fresh machine: `make up`, `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
UV := $(PYTHON) -m uv
BIN := $(VENV)/bin

.PHONY: help install up test test-fast lint format asyncapi openapi event-schemas config-docs compose-kafka deploy-resources clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/hubpulse: pyproject.toml uv.lock libs/common/pyproject.toml $(wildcard services/*/pyproject.toml) clients/python/pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	$(UV) sync --all-packages --compile-bytecode --python $(VENV)/bin/python
	@# bytecode now, once: where PYTHONDONTWRITEBYTECODE is set, every process of the suite compiled it anew
	@$(BIN)/python -m compileall -q -j 0 libs/common/src src services/*/src clients/python/src
	@touch $(BIN)/hubpulse

# Tools from the npm registry the suite runs (AsyncAPI parser, Strimzi CRD schemas), pinned by package-lock.
NODE_TOOLS := tools/node/node_modules/.package-lock.json
$(NODE_TOOLS): tools/node/package.json tools/node/package-lock.json
	npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
	@touch $(NODE_TOOLS)

install: $(BIN)/hubpulse $(NODE_TOOLS)  ## create .venv with the `hubpulse` command and every service

up: install  ## start the whole platform on embedded defaults (offline demo)
	$(BIN)/hubpulse up --demo

# Two workers, a test file each at a time: the suite mostly waits on its processes (docs/decisions.md, Tests).
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

test: install  ## the full test suite (what CI runs)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

test-fast: install  ## the suite without browser tests
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not browser"

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
	$(BIN)/python -m hubpulse_gateway.openapi_document > docs/openapi.json

event-schemas: install  ## release the schema of any new topic into docs/events/ and check the rest stay compatible
	$(BIN)/python -m hubpulse_common.schema_compat

config-docs: install  ## regenerate docs/configuration.md from the settings classes
	$(BIN)/python -m hubpulse.config_docs > docs/configuration.md

compose-kafka: install  ## regenerate compose's Kafka users and ACLs from the services' topologies
	$(BIN)/python -m hubpulse.compose_kafka

deploy-resources: install  ## regenerate the k8s overlays' requests/limits from deploy/resources.yaml
	$(BIN)/python -m hubpulse.deploy_resources

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tools/node/node_modules
