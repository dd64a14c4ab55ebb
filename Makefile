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
UV_BIN := .venv-uv/bin
PIP_QUIET := --quiet --disable-pip-version-check
EVENT ?= events/chat.json
PORT ?= 8000
# The page tests drive Debian's Chromium: Playwright never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: help install dev test lint format invoke lint-template lint-workflows build build-ChatFunction \
	deploy smoke bench lock chromium screenshots

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

# $(call make-venv,DIR,REQUIREMENTS[,LOCK]): a python3.13 venv with those requirements, stamped
# when done; LOCK's first, hash-checked (pip's hash mode takes a whole file or nothing).
define make-venv
	@test -n "$(PYTHON)" || { echo "python3.13 not found: install it or pass PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -m venv $(1)
	$(if $(3),$(1)/bin/pip install $(PIP_QUIET) --require-hashes -r $(3))
	$(1)/bin/pip install $(PIP_QUIET) -r $(2)
	@touch $(1)/bin/.installed
endef

# The runtime set exactly as the artifact gets it (requirements.lock), then the dev tools.
$(BIN)/.installed: requirements.lock requirements.txt requirements-dev.txt
	$(call make-venv,$(VENV),requirements-dev.txt,requirements.lock)

install: $(BIN)/.installed  ## Create .venv with the runtime and dev dependencies

# Keyless local mode (ALLOW_KEYLESS_LOCALHOST): without CLIENT_API_KEYS, requests made on this
# machine to localhost need no key; the app says so at start-up. Set it to false to turn it off.
dev: install  ## Serve the API and its chat page on http://localhost:$(PORT) (default 8000) with reload
	@echo "make dev: keyless local mode is on (ALLOW_KEYLESS_LOCALHOST=$${ALLOW_KEYLESS_LOCALHOST:-true}) unless CLIENT_API_KEYS is set"
	ALLOW_KEYLESS_LOCALHOST=$${ALLOW_KEYLESS_LOCALHOST:-true} $(BIN)/uvicorn chat_api.main:create_app --factory --app-dir functions \
		--host 127.0.0.1 --port $(PORT) --reload --reload-dir functions \
		$(if $(wildcard .env),--env-file .env)

lint: install  ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install  ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint lint-template lint-workflows build chromium  ## Lint, build the artifact, then run the whole test suite (no network)
	$(BIN)/pytest -m "" --cov=chat_api --cov-branch --cov-report=term-missing:skip-covered \
		--cov-fail-under=97  # -m "": the artifact tests too (the build above made what they read)

# The browser the page tests drive (tests/browser.py finds it); CI runs as root on Debian.
chromium:
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell; }

invoke: install  ## Run EVENT (default events/chat.json) through the real Lambda handler in-process
	PYTHONPATH=functions:. $(BIN)/python scripts/invoke.py $(EVENT)

$(SAM_BIN)/.installed: requirements-sam.txt
	$(call make-venv,.venv-sam,requirements-sam.txt)

$(CHECKOV_BIN)/.installed: requirements-checkov.txt
	$(call make-venv,.venv-checkov,requirements-checkov.txt)

# Both modes: the template as it is (buffered), and a copy whose ResponseStreaming defaults to true.
STREAMING_TEMPLATE := .aws-sam/template-streaming.yaml
lint-template: $(SAM_BIN)/.installed $(CHECKOV_BIN)/.installed  ## sam validate --lint, cfn-lint and checkov on template.yaml in both modes (offline)
	@mkdir -p .aws-sam
	sed '/^  ResponseStreaming:/,/Default:/s/Default: "false"/Default: "true"/' template.yaml > $(STREAMING_TEMPLATE)
	@grep -A2 '^  ResponseStreaming:' $(STREAMING_TEMPLATE) | grep -q 'Default: "true"'
	for t in template.yaml $(STREAMING_TEMPLATE); do \
		SAM_CLI_TELEMETRY=0 $(SAM_BIN)/sam validate --lint --template-file $$t && \
		$(SAM_BIN)/cfn-lint $$t && \
		$(CHECKOV_BIN)/checkov --quiet --compact --skip-download --framework cloudformation -f $$t || exit 1; \
	done

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

$(UV_BIN)/.installed: requirements-uv.txt
	$(call make-venv,.venv-uv,requirements-uv.txt)

# Resolved for Lambda's platform; the lock lists every wheel's hash of each pinned version, so
# the x86_64 dev venv and the bench's x86_64 build install from it too.
lock: $(UV_BIN)/.installed  ## Regenerate requirements.lock (pins and hashes) after editing requirements.txt
	$(UV_BIN)/uv pip compile requirements.txt --quiet --generate-hashes --no-config \
		--python-version 3.13 --python-platform aarch64-manylinux2014 \
		--custom-compile-command "make lock" --output-file requirements.lock

lint-workflows: install  ## actionlint (with shellcheck) on .github/workflows
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint

screenshots: install chromium  ## The README's screenshots of the chat page (docs/page-*.png)
	PYTHONPATH=functions $(BIN)/python -m scripts.page_screenshots

bench: build install  ## Benchmarks (cold start, warm, memory, throughput, size, streaming mode): prints bench/README.md's table
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.streaming
