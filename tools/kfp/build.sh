#!/usr/bin/env bash
# Builds (once per machine) the real Kubeflow Pipelines backend the tests run: the API server,
# persistence agent, ScheduledWorkflow controller and the v2 driver and launcher of KFP 2.17.0,
# next to the API server's config.json, KFP's CRDs and Argo Workflows' minimal CRDs.
#
#   tools/kfp/build.sh              build into the cache folder unless already there
#   tools/kfp/build.sh --print-dir  print the folder it is (or would be) in
#
# The folder (DEX_KFP_DIR overrides it) then holds:
#   bin/      apiserver, persistence_agent, controller (ScheduledWorkflow), driver, launcher-v2
#   config/   backend/src/apiserver/config/config.json of the source
#   crds/     KFP's ScheduledWorkflow, Pipeline and PipelineVersion CRDs + Argo's minimal CRDs
#
# The Go module proxy refuses github.com/kubeflow/pipelines (every module it depends on is
# served), so the source comes from a tree on disk: DEX_KFP_SOURCE names one; else the
# third_party copy next to this checkout (../shared/third_party/kubeflow-pipelines-2.17.0);
# else a shallow clone of the upstream 2.17.0 tag (machines with internet). A wrapper module
# replaces KFP's three modules with that tree and builds the five commands.
set -euo pipefail

kfp_version=2.17.0
argo_module=github.com/argoproj/argo-workflows/v4
argo_version=v4.0.5
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

# The recipe number names what this script makes of the source: a change to the build (not to
# KFP's version) bumps it, so machines rebuild instead of reusing an older build's binaries.
# r2: the driver and launcher are static (they run inside images: the launcher is copied into
# any component image, whatever its libc).
recipe=r2
dir="${DEX_KFP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/kfp/$kfp_version-$recipe}"
if ((print_dir)); then
  echo "$dir"
  exit 0
fi

commands=(apiserver persistence_agent controller driver launcher-v2)
have_all() {
  local c
  for c in "${commands[@]}"; do [[ -x "$1/bin/$c" ]] || return 1; done
  [[ -f "$1/config/config.json" && -d "$1/crds" ]]
}

if have_all "$dir"; then
  echo "kfp: $kfp_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.build.lock"
flock 9
if have_all "$dir"; then
  echo "kfp: $kfp_version built by a concurrent run in $dir"
  exit 0
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "kfp: Go is needed to build the KFP $kfp_version backend; install it" >&2
  exit 1
fi

scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT

source_ok() { [[ -f "$1/go.mod" && -d "$1/backend/src/apiserver" && -f "$1/api/go.mod" ]]; }
src=""
for candidate in "${DEX_KFP_SOURCE:-}" "$repo/../shared/third_party/kubeflow-pipelines-$kfp_version"; do
  if [[ -n "$candidate" ]] && source_ok "$candidate"; then
    src="$(cd "$candidate" && pwd)"
    break
  fi
done
if [[ -n "${DEX_KFP_SOURCE:-}" && "$src" != "$(cd "$DEX_KFP_SOURCE" 2>/dev/null && pwd)" ]]; then
  echo "kfp: DEX_KFP_SOURCE=$DEX_KFP_SOURCE is not a KFP source tree (no go.mod, api/go.mod, backend/src/apiserver)" >&2
  exit 1
fi
if [[ -z "$src" ]]; then
  echo "kfp: no KFP source tree on disk (DEX_KFP_SOURCE, ../shared/third_party): shallow-cloning the $kfp_version tag"
  if ! git clone --quiet --depth 1 --branch "$kfp_version" https://github.com/kubeflow/pipelines "$scratch/upstream"; then
    echo "kfp: cannot clone github.com/kubeflow/pipelines@$kfp_version; set DEX_KFP_SOURCE to a source tree of that tag" >&2
    exit 1
  fi
  src="$scratch/upstream"
fi
echo "kfp: source $src"

start=$SECONDS
mkdir "$scratch/wrap"
go_version="$(sed -nE 's/^go ([0-9.]+)$/\1/p' "$src/go.mod")"
cat >"$scratch/wrap/go.mod" <<MOD
module dex.local/kfp-backend

go $go_version

require (
	github.com/kubeflow/pipelines v0.0.0
	github.com/kubeflow/pipelines/api v0.0.0
	github.com/kubeflow/pipelines/kubernetes_platform v0.0.0
)

replace (
	github.com/kubeflow/pipelines => $src
	github.com/kubeflow/pipelines/api => $src/api
	github.com/kubeflow/pipelines/kubernetes_platform => $src/kubernetes_platform
)
MOD
# KFP's own checksums first: tidy would otherwise look some up (and fail for argo v4.0.5).
cp "$src/go.sum" "$scratch/wrap/go.sum"
servers=(
  backend/src/apiserver
  backend/src/agent/persistence
  backend/src/crd/controller/scheduledworkflow
)
# The driver and launcher run in pods, as KFP's own images build them: CGO off, so static.
in_pods=(
  backend/src/v2/cmd/driver
  backend/src/v2/cmd/launcher-v2
)
packages=("${servers[@]}" "${in_pods[@]}")
{
  echo "//go:build tools"
  echo
  echo "// Package tools names the commands this module builds (never compiled itself)."
  echo "package tools"
  echo
  echo "import ("
  for p in "${packages[@]}"; do echo "	_ \"github.com/kubeflow/pipelines/$p\""; done
  echo ")"
} >"$scratch/wrap/tools.go"

echo "kfp: resolving modules (go mod tidy against the module proxy; the module cache keeps them)"
echo "kfp: building ${commands[*]} into $dir (first time only; ~11 min on 2 cores)"
echo "kfp: waiting for other Go builds on this machine (flock /tmp/dex-gobuild.lock)"
(
  cd "$scratch/wrap"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
  flock /tmp/dex-gobuild.lock go mod tidy
  mkdir -p "$scratch/bin"
  flock /tmp/dex-gobuild.lock go build -trimpath -ldflags '-s -w' -o "$scratch/bin/" \
    "${servers[@]/#/github.com/kubeflow/pipelines/}"
  CGO_ENABLED=0 flock /tmp/dex-gobuild.lock go build -trimpath -ldflags '-s -w' -o "$scratch/bin/" \
    "${in_pods[@]/#/github.com/kubeflow/pipelines/}"
)
# go build names each binary after its package folder: persistence, scheduledworkflow.
mv "$scratch/bin/persistence" "$scratch/bin/persistence_agent"
mv "$scratch/bin/scheduledworkflow" "$scratch/bin/controller"

echo "kfp: Argo Workflows' minimal CRDs ($argo_module@$argo_version, go mod download)"
json="$(cd "$scratch" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "$argo_module@$argo_version")"
argo="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$json")"
if [[ -z "$argo" || ! -d "$argo/manifests/base/crds/minimal" ]]; then
  echo "kfp: go mod download gave no Argo CRDs:" >&2
  echo "$json" >&2
  exit 1
fi
mkdir -p "$scratch/out/crds" "$scratch/out/config"
cp "$argo"/manifests/base/crds/minimal/*.yaml "$scratch/out/crds/"
cp "$src"/manifests/crds/*.yaml "$scratch/out/crds/" 2>/dev/null \
  || cp "$src"/backend/src/crd/*/*.yaml "$scratch/out/crds/"
rm -f "$scratch/out/crds/kustomization.yaml"
cp "$src/backend/src/apiserver/config/config.json" "$scratch/out/config/config.json"
chmod -R u+w "$scratch/out"
mv "$scratch/bin" "$scratch/out/bin"
for part in crds config bin; do
  rm -rf "${dir:?}/$part"
  mv "$scratch/out/$part" "$dir/$part"
done
echo "kfp: built in $((SECONDS - start)) s: $(du -sh "$dir/bin" | cut -f1) of binaries in $dir"
