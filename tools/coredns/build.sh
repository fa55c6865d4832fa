#!/usr/bin/env bash
# Builds (once per machine) the dev cluster's DNS server: CoreDNS from its Go module, with
# the trimmed plugin set of plugin.cfg in this folder (no forward, no cloud backends), and
# dnsprobe (probe/: a static, standard-library-only DNS + HTTP check a test runs as a pod).
#
#   tools/coredns/build.sh              build into the cache folder unless already there
#   tools/coredns/build.sh --print-dir  print the folder the binaries are (or would be) in
#
# The folder (DEX_COREDNS_DIR overrides it) then holds `coredns` and `dnsprobe`. The module
# comes from the Go module proxy (`go mod download`); nothing of CoreDNS is committed: its
# go.mod, go.sum and Go packages are copied into a scratch folder, plugin.cfg replaced, the
# plugin tables regenerated (upstream's directives_generate.go) and built there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
coredns_version=v1.12.4
module=github.com/coredns/coredns
binaries=(coredns dnsprobe)

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

dir="${DEX_COREDNS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/coredns/$coredns_version}"

if ((print_dir)); then
  echo "$dir"
  exit 0
fi

missing_in() {
  local b
  for b in "${binaries[@]}"; do
    [[ -x "$1/$b" ]] || echo "$b"
  done
}

# The plugin set is part of what is built: a changed plugin.cfg rebuilds.
cfg_sum="$(sha256sum "$here/plugin.cfg" | cut -c1-16)"
have_all() {
  [[ -z "$(missing_in "$1")" && "$(cat "$1/plugin.cfg.sha256" 2>/dev/null)" == "$cfg_sum" ]]
}

if have_all "$dir"; then
  echo "coredns: $coredns_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
# Concurrent `make test` runs must not both spend minutes building the same thing.
exec 9>"$dir/.build.lock"
flock 9
if have_all "$dir"; then
  echo "coredns: $coredns_version built by a concurrent run in $dir"
  exit 0
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "coredns: Go is needed to build CoreDNS $coredns_version; install it" >&2
  exit 1
fi

# Build into a scratch folder and move into place, so an interrupted build never leaves
# a half-written binary that the "already built" check above would accept.
scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT

start=$SECONDS
echo "coredns: downloading $module@$coredns_version (go mod download; the module cache keeps it)"
# Outside any module, so the download neither reads nor edits a go.mod.
json="$(cd "$scratch" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "$module@$coredns_version")"
src="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$json")"
if [[ -z "$src" || ! -f "$src/go.mod" ]]; then
  echo "coredns: go mod download gave no module folder:" >&2
  echo "$json" >&2
  exit 1
fi

mkdir "$scratch/src"
cp -R "$src/go.mod" "$src/go.sum" "$src/coredns.go" "$src/directives_generate.go" \
  "$src/core" "$src/coremain" "$src/plugin" "$src/pb" "$src/request" "$scratch/src/"
# The module cache is read-only; the generator and the build need writable copies.
chmod -R u+w "$scratch/src"
cp "$here/plugin.cfg" "$scratch/src/plugin.cfg"

echo "coredns: building coredns $coredns_version ($(grep -cv '^#' "$here/plugin.cfg") plugins) and dnsprobe into $dir (first time only; minutes on 2 cores)"
echo "coredns: waiting for other Go builds on this machine (flock /tmp/dex-gobuild.lock)"
(
  cd "$scratch/src"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
  # Regenerates core/plugin/zplugin.go and core/dnsserver/zdirectives.go from plugin.cfg.
  flock /tmp/dex-gobuild.lock go run directives_generate.go
  flock /tmp/dex-gobuild.lock go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=dex-$cfg_sum" \
    -o "$scratch/coredns" .
)
(
  cd "$here/probe"
  export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
  flock /tmp/dex-gobuild.lock go build -trimpath -ldflags "-s -w" -o "$scratch/dnsprobe" .
)
"$scratch/coredns" -plugins >"$scratch/plugins.txt"
for b in "${binaries[@]}"; do
  mv -f "$scratch/$b" "$dir/$b"
done
echo "$cfg_sum" >"$dir/plugin.cfg.sha256"
echo "coredns: built in $((SECONDS - start)) s: coredns $(du -h "$dir/coredns" | cut -f1), plugins: $(xargs <"$scratch/plugins.txt")"
