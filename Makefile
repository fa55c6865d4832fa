# DEX developer entry points. `make demo` and `make test` each work alone on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dex-installed
PYTEST_ARGS ?=

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export FEAST_USAGE := False

.PHONY: help setup demo test lint typecheck unit integration bench envtest compile clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install DEX in development mode

envtest: ## build (or reuse) etcd + kube-apiserver for the test control plane
	bash tools/envtest/build.sh

.PHONY: node
node: ## containerd/runc/CNI (Debian) + kubelet, scheduler, kube-proxy, pause for a real dev node
	bash tools/system-deps.sh node
	bash tools/envtest/build.sh --node

demo: setup ## the local loop end to end: data -> features -> train -> drift -> retrain -> promote
	$(BIN)/dexctl demo

lint: setup ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup ## mypy --strict
	$(BIN)/mypy

test: setup envtest lint typecheck ## ruff, mypy --strict and the whole pytest suite
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

unit: setup ## fast tests only
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: setup ## benchmarks, printed as tables
	$(BIN)/python -m benchmarks

compile: setup ## recompile the pipelines' IR YAML
	$(BIN)/dexctl pipeline compile

clean: ## remove local state (.dex) and caches
	rm -rf .dex .pytest_cache .mypy_cache .ruff_cache
