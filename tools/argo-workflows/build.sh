#!/usr/bin/env bash
# Builds (once per machine) the real Argo Workflows the KFP run tests execute with: the
# workflow controller and argoexec (the executor in every Workflow pod) of Argo Workflows
# v4.0.5, the version KFP 2.17.0's backend is built against (tools/kfp/build.sh).
#
#   tools/argo-workflows/build.sh              build into the cache folder unless already there
#   tools/argo-workflows/build.sh --print-dir  print the folder it is (or would be) in
#
# The folder (DEX_ARGO_WORKFLOWS_DIR overrides it) then holds:
#   bin/   workflow-controller, argoexec
#   crds/  manifests/base/crds/minimal/ of the module (the CRDs the controller watches)
#
# The module comes from the Go module proxy (`go mod download`); nothing of Argo is
# committed. It is copied into a scratch folder (the module cache is read-only) and built
# there as the main module, so its own go.mod and go.sum decide every dependency.
set -euo pipefail

argo_version=v4.0.5
module=github.com/argoproj/argo-workflows/v4

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

dir="${DEX_ARGO_WORKFLOWS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/argo-workflows/$argo_version}"
if ((print_dir)); then
  echo "$dir"
  exit 0
fi

commands=(workflow-controller argoexec)
have_all() {
  local c
  for c in "${commands[@]}"; do [[ -x "$1/bin/$c" ]] || return 1; done
  [[ -d "$1/crds" ]]
}

if have_all "$dir"; then
  echo "argo-workflows: $argo_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
# Concurrent `make test` runs must not both spend minutes building the same thing.
exec 9>"$dir/.build.lock"
flock 9
if have_all "$dir"; then
  echo "argo-workflows: $argo_version built by a concurrent run in $dir"
  exit 0
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "argo-workflows: Go is needed to build Argo Workflows $argo_version; install it" >&2
  exit 1
fi

# Build into a scratch folder and move into place, so an interrupted build never leaves
# a half-written folder that the "already built" check above would accept.
scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT

start=$SECONDS
echo "argo-workflows: downloading $module@$argo_version (go mod download; the module cache keeps it)"
# Outside any module, so the download neither reads nor edits a go.mod.
json="$(cd "$scratch" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "$module@$argo_version")"
src="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$json")"
if [[ -z "$src" || ! -f "$src/go.mod" || ! -d "$src/cmd/workflow-controller" ]]; then
  echo "argo-workflows: go mod download gave no module folder:" >&2
  echo "$json" >&2
  exit 1
fi

cp -R "$src" "$scratch/src"
# The module cache is read-only; the build and the final move need writable copies.
chmod -R u+w "$scratch/src"
# The served v4.0.5 module has no workflow/executor/osspecific/signal_linux.go (only _darwin
# and _windows), so argoexec fails on Linux with "undefined: Setpgid". The darwin file is
# plain POSIX (Getpgid, Kill, Wait4, SysProcAttr.Setpgid), so it is the Linux one too.
osspecific="$scratch/src/workflow/executor/osspecific"
if [[ ! -f "$osspecific/signal_linux.go" && -f "$osspecific/signal_darwin.go" ]]; then
  cp "$osspecific/signal_darwin.go" "$osspecific/signal_linux.go"
fi

echo "argo-workflows: building ${commands[*]} $argo_version into $dir (first time only; several minutes on 2 cores)"
echo "argo-workflows: waiting for other Go builds on this machine (flock /tmp/dex-gobuild.lock)"
(
  cd "$scratch/src"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
  mkdir -p "$scratch/out/bin"
  # Static binaries: argoexec runs inside images over any base, without the host's libc.
  # version= as Argo's Makefile sets it; without it both report v0.0.0+unknown.
  flock /tmp/dex-gobuild.lock go build -trimpath \
    -ldflags "-s -w -X github.com/argoproj/argo-workflows/v4.version=$argo_version" -o "$scratch/out/bin/" \
    ./cmd/workflow-controller ./cmd/argoexec
)

cp -R "$scratch/src/manifests/base/crds/minimal" "$scratch/out/crds"
rm -f "$scratch/out/crds/kustomization.yaml"
# Each piece moves into place; bin last, since the "already built" check looks at it.
for part in crds bin; do
  rm -rf "${dir:?}/$part"
  mv "$scratch/out/$part" "$dir/$part"
done
echo "argo-workflows: built in $((SECONDS - start)) s: $(du -sh "$dir/bin" | cut -f1) of binaries in $dir"
