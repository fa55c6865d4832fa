# DEX developer entry points. `make demo` and `make test` each work alone on a fresh machine:
# they set up .venv from the committed uv.lock and install the system packages they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The interpreter .venv is made from; uv uses that interpreter and never downloads one.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
LOCK_ARGS ?=
# uv's version has one owner: its pin in pyproject.toml's dev dependency group.
UV_VERSION := $(shell sed -nE 's/^ *"uv==([^"]+)".*/\1/p' pyproject.toml)
UV_STAMP := $(VENV)/.dex-uv-$(UV_VERSION)
SYNC_STAMP := $(VENV)/.dex-synced
# Each image installs requirements/<extra>.txt, exported from uv.lock (see `make lock`).
IMAGE_EXTRAS := operator serving training
REQUIREMENTS_DIR ?= requirements

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export FEAST_USAGE := False
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(abspath $(BIN)/python)

.PHONY: help setup lock requirements system-deps demo test test-clock lint typecheck unit bench \
	envtest compile crds clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(UV_STAMP):
	@test -x $(BIN)/python || { \
	  echo "==> setup: creating $(VENV) with $(PYTHON)"; \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "setup: '$(PYTHON) -m venv' failed: install Python 3.11 and its venv module" \
	      "(Debian: apt-get install python3.11-venv), or pass PYTHON=/path/to/python3.11" >&2; \
	    exit 1; }; }
	@[[ "$$($(BIN)/uv --version 2>/dev/null)" == "uv $(UV_VERSION)"* ]] || { \
	  echo "==> setup: installing uv $(UV_VERSION) into $(VENV) (pip)"; \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; }
	@touch $@

# `uv sync` installs the default `dev` group: the dev tools, dataenginex with every extra and
# dataenginex-testing, all editable from this checkout, exactly as uv.lock pins them.
# The packaging tests install each image's requirement set offline, as its Dockerfile would:
# uv's cache must then hold the index pages too, which `uv sync` (lock URLs only) never reads,
# so a dry-run install into a scratch venv reads them once here.
$(SYNC_STAMP): $(UV_STAMP) uv.lock pyproject.toml testing/pyproject.toml \
		$(IMAGE_EXTRAS:%=$(REQUIREMENTS_DIR)/%.txt)
	@echo '==> setup: syncing $(VENV) with uv.lock (uv sync --frozen)'
	$(BIN)/uv sync --frozen
	@echo '==> setup: caching index pages for the images requirement sets (uv pip --dry-run)'
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	  $(BIN)/uv venv --quiet --python $(BIN)/python "$$scratch/venv"; \
	  for extra in $(IMAGE_EXTRAS); do \
	    $(BIN)/uv pip install --quiet --dry-run --python "$$scratch/venv/bin/python" \
	      -r $(REQUIREMENTS_DIR)/$$extra.txt; \
	  done
	@touch $@

setup: $(SYNC_STAMP) ## create .venv and install DEX + dev tools from uv.lock (a no-op when current)

lock: $(UV_STAMP) ## re-lock uv.lock after editing dependencies (LOCK_ARGS=--upgrade to upgrade), then requirements/
	@echo '==> lock: resolving uv.lock (uv lock $(LOCK_ARGS))'
	$(BIN)/uv lock $(LOCK_ARGS)
	@$(MAKE) --no-print-directory requirements

requirements: $(UV_STAMP) ## regenerate the images' requirements/{operator,serving,training}.txt from uv.lock
	@mkdir -p $(REQUIREMENTS_DIR)
	@set -e; for extra in $(IMAGE_EXTRAS); do \
	  echo "==> requirements: $(REQUIREMENTS_DIR)/$$extra.txt (uv export --extra $$extra)"; \
	  $(BIN)/uv export --frozen --no-dev --extra $$extra --no-emit-workspace \
	    --format requirements.txt >$(REQUIREMENTS_DIR)/$$extra.txt.tmp; \
	  mv $(REQUIREMENTS_DIR)/$$extra.txt.tmp $(REQUIREMENTS_DIR)/$$extra.txt; \
	done

system-deps: ## install the Debian packages the tests need (tools/system-deps.txt, group test)
	@echo '==> system-deps: checking the test group (tools/system-deps.txt)'
	bash tools/system-deps.sh test

envtest: ## build (or reuse) etcd + kube-apiserver for the test control plane
	@echo '==> envtest: etcd + kube-apiserver + kube-controller-manager for the tests (built once, cached)'
	bash tools/envtest/build.sh

.PHONY: node
node: ## containerd/runc/CNI (Debian) + kubelet, scheduler, kube-proxy, pause for a real dev node
	@echo '==> node: Debian packages (system-deps node), then the node binaries (envtest --node)'
	bash tools/system-deps.sh node
	bash tools/envtest/build.sh --node

.PHONY: coredns
coredns: ## CoreDNS (trimmed plugin set) from its Go module: the dev node's cluster DNS
	@echo '==> coredns: CoreDNS from its Go module, the dev node cluster DNS (built once, cached)'
	bash tools/coredns/build.sh

.PHONY: gateway
gateway: ## Traefik (patched) from its Go module + the Gateway API CRDs: the dev node's Gateway
	@echo '==> gateway: Traefik from its Go module + Gateway API standard CRDs (built once, cached)'
	bash tools/gateway/build.sh

.PHONY: kserve
kserve: ## KServe v0.20's controller (manager + CRDs, ConfigMap, webhooks) from its Go module, for the tests
	@echo '==> kserve: the KServe v0.20 manager from its Go module (built once, cached)'
	bash tools/kserve/build.sh

.PHONY: kfp
kfp: ## KFP 2.17's backend (API server, agents, driver, launcher) from its source + MariaDB, for the tests
	@echo '==> kfp: Debian packages (system-deps kfp), then the KFP 2.17.0 backend from its source (built once, cached)'
	bash tools/system-deps.sh kfp
	bash tools/kfp/build.sh

.PHONY: kfp-ui
kfp-ui: ## KFP 2.17's UI (React app + its Node server) from its source + Chromium, to see runs as users do
	@echo '==> kfp-ui: Debian packages (system-deps kfpui), then the KFP 2.17.0 UI from its source (built once, cached)'
	bash tools/system-deps.sh kfpui
	bash tools/kfp-ui/build.sh

.PHONY: mlmd
mlmd: setup ## ML Metadata's store (PyPI ml-metadata, own venv) served over gRPC, for the KFP driver
	@echo '==> mlmd: ml-metadata (hash-pinned) in its own venv in ~/.cache/dex/mlmd (installed once per pin)'
	bash tools/mlmd/install.sh

.PHONY: argo-workflows
argo-workflows: ## Argo Workflows v4.0.5's workflow controller + argoexec from their Go module, for the KFP run tests
	@echo '==> argo-workflows: Argo Workflows v4.0.5 (workflow-controller, argoexec) from its Go module (built once, cached)'
	bash tools/argo-workflows/build.sh

.PHONY: argocd
argocd: ## Argo CD 3.6's application controller + repo server (+ kustomize) from their Go modules + Redis, for the tests
	@echo '==> argocd: Debian packages (system-deps argocd), then Argo CD 3.6.1 from its Go module (built once, cached)'
	bash tools/system-deps.sh argocd
	bash tools/argocd/build.sh

.PHONY: checkov
checkov: setup ## checkov (hash-pinned, its own venv) for the policy check of the overlays and Dockerfiles
	@echo '==> checkov: the static policy checker in ~/.cache/dex/checkov (installed once per pin)'
	@bash tools/checkov/install.sh >/dev/null

.PHONY: images
images: setup ## build dex-operator, dex-serving, dex-components (buildah, cached by content) as OCI archives
	@echo '==> images: Debian packages (system-deps images), then the images (~/.cache/dex/images)'
	bash tools/images/build.sh

demo: setup ## the local loop end to end: data -> features -> train -> drift -> retrain -> promote
	@echo '==> demo: dexctl demo'
	$(BIN)/dexctl demo

lint: setup ## ruff, and the import layers (lint-imports)
	@echo '==> lint: ruff check + format'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@echo '==> lint: import layers (lint-imports; contracts in pyproject.toml)'
	$(BIN)/lint-imports

typecheck: setup ## mypy --strict
	@echo '==> typecheck: mypy --strict'
	$(BIN)/mypy

test-clock:
	@bash tools/test-clock.sh start

# test-clock first: `make bench` prints how long whole runs take, cold and warm.
# The cluster tier needs the node binaries and DEX's images: both cached (seconds when current).
test: test-clock setup system-deps envtest node coredns gateway kserve kfp kfp-ui mlmd argo-workflows argocd checkov images lint typecheck ## system packages, node, images, lint, mypy --strict and the whole pytest suite
	@echo '==> test: pytest, 2 workers (unit, integration, e2e)'
	@status=0; $(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS) || status=$$?; \
	  bash tools/test-clock.sh stop $$status; exit $$status

unit: setup ## fast tests only
	@echo '==> unit: pytest tests/unit'
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: setup envtest node coredns gateway kserve kfp images ## benchmarks, printed as tables
	@echo '==> bench: python -m benchmarks'
	$(BIN)/python -m benchmarks

compile: setup ## recompile the pipelines' IR YAML
	@echo '==> compile: dexctl pipeline compile'
	$(BIN)/dexctl pipeline compile

crds: setup ## regenerate manifests/crd from the operator's CRD models
	@echo '==> crds: dexctl operator crds -> manifests/crd'
	$(BIN)/dexctl operator crds

clean: ## remove local state (.dex) and caches
	rm -rf .dex .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
