#!/usr/bin/env bash
# Builds (once per machine) the real KServe controller the integration tests run: the
# manager binary of github.com/kserve/kserve, next to the CRDs, the inferenceservice-config
# ConfigMap and the webhook manifests of the same module version.
#
#   tools/kserve/build.sh              build into the cache folder unless already there
#   tools/kserve/build.sh --print-dir  print the folder it is (or would be) in
#
# The folder (DEX_KSERVE_DIR overrides it) then holds:
#   manager     the controller (CRD reconcilers + the webhook server)
#   crd/        config/crd/full/ of the module
#   configmap/  config/configmap/ of the module (inferenceservice-config)
#   webhook/    config/webhook/ of the module (Mutating/ValidatingWebhookConfigurations)
#
# The module comes from the Go module proxy (`go mod download`); nothing of KServe is
# committed. KServe's `replace` directives only apply when it is the main module, so its
# go.mod, go.sum, cmd/, pkg/ and config/ are copied into a scratch folder and built there.
set -euo pipefail

kserve_version=v0.20.0
module=github.com/kserve/kserve

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

dir="${DEX_KSERVE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/kserve/$kserve_version}"

if ((print_dir)); then
  echo "$dir"
  exit 0
fi

have_all() {
  [[ -x "$1/manager" && -d "$1/crd" && -d "$1/configmap" && -f "$1/webhook/manifests.yaml" ]]
}

if have_all "$dir"; then
  echo "kserve: $kserve_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
# Concurrent `make test` runs must not both spend minutes building the same thing.
exec 9>"$dir/.build.lock"
flock 9
if have_all "$dir"; then
  echo "kserve: $kserve_version built by a concurrent run in $dir"
  exit 0
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "kserve: Go is needed to build the KServe $kserve_version manager; install it" >&2
  exit 1
fi

# Build into a scratch folder and move into place, so an interrupted build never leaves
# a half-written folder that the "already built" check above would accept.
scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT

start=$SECONDS
echo "kserve: downloading $module@$kserve_version (go mod download; the module cache keeps it)"
# Outside any module, so the download neither reads nor edits a go.mod.
json="$(cd "$scratch" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "$module@$kserve_version")"
src="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$json")"
if [[ -z "$src" || ! -f "$src/go.mod" ]]; then
  echo "kserve: go mod download gave no module folder:" >&2
  echo "$json" >&2
  exit 1
fi

mkdir "$scratch/src"
cp -R "$src/go.mod" "$src/go.sum" "$src/cmd" "$src/pkg" "$src/config" "$scratch/src/"
# The module cache is read-only; the build and the final move need writable copies.
chmod -R u+w "$scratch/src"

echo "kserve: building the manager $kserve_version into $dir (first time only; ~8 min and 1.3 GB on 2 cores)"
echo "kserve: waiting for other Go builds on this machine (flock /tmp/dex-gobuild.lock)"
(
  cd "$scratch/src"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
  flock /tmp/dex-gobuild.lock go build -trimpath -ldflags '-s -w' -o "$scratch/manager" ./cmd/manager
)

mkdir "$scratch/out"
mv "$scratch/manager" "$scratch/out/manager"
cp -R "$scratch/src/config/crd/full" "$scratch/out/crd"
cp -R "$scratch/src/config/configmap" "$scratch/out/configmap"
cp -R "$scratch/src/config/webhook" "$scratch/out/webhook"
# Each piece moves into place; manager last, since the "already built" check looks at it.
for part in crd configmap webhook manager; do
  rm -rf "${dir:?}/$part"
  mv "$scratch/out/$part" "$dir/$part"
done
echo "kserve: built in $((SECONDS - start)) s: manager $(du -h "$dir/manager" | cut -f1) in $dir"
