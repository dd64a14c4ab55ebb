# The front door: `make dev` serves locally, `make test` proves everything. Both start from nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.13: develop, test and build with the same version (pyenv's if not on PATH).
PYTHON ?= $(shell for p in python3.13 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
	"$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
# SAM CLI and checkov cannot share a venv (their pins conflict): each gets its own.
SAM_BIN := .venv-sam/bin
CHECKOV_BIN := .venv-checkov/bin
PIP_QUIET := --quiet --disable-pip-version-check
EVENT ?= events/chat.json

.PHONY: help install dev test lint format invoke lint-template lint-workflows build build-ChatFunction \
	deploy smoke bench

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

# $(call make-venv,DIR,REQUIREMENTS): a python3.13 venv with those requirements, stamped when done.
define make-venv
	@test -n "$(PYTHON)" || { echo "python3.13 not found: install it or pass PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install $(PIP_QUIET) -r $(2)
	@touch $(1)/bin/.installed
endef

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(call make-venv,$(VENV),requirements-dev.txt)

install: $(BIN)/.installed  ## Create .venv with the runtime and dev dependencies

dev: install  ## Serve the API on http://localhost:8000 with reload (reads .env if present)
	$(BIN)/uvicorn chat_api.main:create_app --factory --app-dir functions \
		--host 127.0.0.1 --port 8000 --reload --reload-dir functions \
		$(if $(wildcard .env),--env-file .env)

lint: install  ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install  ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint lint-template lint-workflows build  ## Lint, build the artifact, then run the whole test suite (no network)
	$(BIN)/pytest -m "" --cov=chat_api --cov-branch --cov-report=term-missing:skip-covered \
		--cov-fail-under=97  # -m "": the artifact tests too (the build above made what they read)

invoke: install  ## Run EVENT (default events/chat.json) through the real Lambda handler in-process
	PYTHONPATH=functions $(BIN)/python scripts/invoke.py $(EVENT)

$(SAM_BIN)/.installed: requirements-sam.txt
	$(call make-venv,.venv-sam,requirements-sam.txt)

$(CHECKOV_BIN)/.installed: requirements-checkov.txt
	$(call make-venv,.venv-checkov,requirements-checkov.txt)

lint-template: $(SAM_BIN)/.installed $(CHECKOV_BIN)/.installed  ## sam validate --lint, cfn-lint and checkov on template.yaml (offline)
	SAM_CLI_TELEMETRY=0 $(SAM_BIN)/sam validate --lint --template-file template.yaml
	$(SAM_BIN)/cfn-lint template.yaml
	$(CHECKOV_BIN)/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

build: $(SAM_BIN)/.installed  ## sam build: the lean arm64 artifact into .aws-sam/build (no Docker)
	SAM_CLI_TELEMETRY=0 $(SAM_BIN)/sam build

# sam build calls this (template Metadata BuildMethod: makefile) with ARTIFACTS_DIR set.
# FUNCTION_PLATFORM picks the wheels: the bench builds one for this machine with it.
FUNCTION_PLATFORM ?= manylinux2014_aarch64
build-ChatFunction:
	@test -n "$(PYTHON)" || { echo "python3.13 not found: pass PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) scripts/build_function.py --platform $(FUNCTION_PLATFORM) "$(ARTIFACTS_DIR)"

# The checksum of the template and the parameters publishes a new version (served by the
# alias) when only they change: SAM alone publishes on code changes only.
CONFIG_ENV ?= default
PARAMS ?=
deploy: build  ## sam deploy to CONFIG_ENV (default|staging|production) with PARAMS="OpenAIKeySecretArn=arn:..."
	SAM_CLI_TELEMETRY=0 $(SAM_BIN)/sam deploy --config-env $(CONFIG_ENV) $(DEPLOY_FLAGS) \
		--parameter-overrides $(PARAMS) \
		ConfigRevision=$$(printf '%s\n' '$(PARAMS)' | cat - template.yaml | $(PYTHON) -c \
			'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')

# @: the recipe would print the key. SMOKE_FLAGS=--allow-keyless for a server without keys.
smoke:  ## Check a deployed API: make smoke URL=<ApiUrl> KEY=<API key value>
	@test -n "$(URL)" && test -n "$(KEY)" || { echo "usage: make smoke URL=<ApiUrl> KEY=<key>"; exit 1; }
	@SMOKE_API_KEY='$(KEY)' $(PYTHON) scripts/smoke.py '$(URL)' $(SMOKE_FLAGS)

lint-workflows: install  ## actionlint (with shellcheck) on .github/workflows
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint

bench: build install  ## Benchmarks (cold start, warm, memory, throughput, size): prints bench/README.md's table
	$(BIN)/python -m bench.run
