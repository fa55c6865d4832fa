#!/usr/bin/env bash
# Builds (once per machine) the dev cluster's Gateway API data plane: Traefik from its Go
# module, with the small patch in this folder, next to the Gateway API standard-channel CRDs
# of the version Traefik is built against.
#
#   tools/gateway/build.sh              build into the cache folder unless already there
#   tools/gateway/build.sh --print-dir  print the folder it is (or would be) in
#
# The folder (DEX_GATEWAY_DIR overrides it) then holds:
#   traefik  the proxy (its kubernetesgateway provider is the Gateway API controller)
#   crd/     config/crd/standard/ of sigs.k8s.io/gateway-api
#
# Both modules come from the Go module proxy (`go mod download`); nothing of them is
# committed. Traefik does not build from its module as shipped; traefik.patch closes three
# gaps, applied to a scratch copy of the module (its `replace` lines only apply when it is
# the main module):
#   1. its go.mod replaces github.com/traefik/traefik/dynamic/ext with ./pkg/config/dynamic/ext,
#      a nested module the module zip cannot contain: the patch adds a stub module there
#      (the two empty extension structs the dynamic configuration embeds);
#   2. lego's DNS-provider SDKs (imported only through lego/v5/providers/dns, for ACME DNS-01
#      challenges) are not all served by the module proxy: the import is dropped and a DNS
#      challenge configuration is refused with an error;
#   3. the containous/go-http-auth fork (basic/digest auth middlewares) is not served: the
#      patch uses github.com/abbot/go-http-auth v0.4.0 instead, with a local checkSecret
#      (same htpasswd formats) and digest auth's stale re-challenge as a plain one.
# The web UI assets are a placeholder in the module: run with --api.dashboard=false.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
traefik_version=v3.7.13
traefik_module=github.com/traefik/traefik/v3
gateway_api_version=v1.6.1
gateway_api_module=sigs.k8s.io/gateway-api

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

dir="${DEX_GATEWAY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/gateway/traefik-$traefik_version-gateway-api-$gateway_api_version}"

if ((print_dir)); then
  echo "$dir"
  exit 0
fi

# The patch is part of what is built: a changed patch rebuilds.
patch_sum="$(sha256sum "$here/traefik.patch" | cut -c1-16)"
have_all() {
  [[ -x "$1/traefik" && -f "$1/crd/gateway.networking.k8s.io_httproutes.yaml" \
    && "$(cat "$1/traefik.patch.sha256" 2>/dev/null)" == "$patch_sum" ]]
}

if have_all "$dir"; then
  echo "gateway: traefik $traefik_version + gateway-api $gateway_api_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
# Concurrent `make test` runs must not both spend minutes building the same thing.
exec 9>"$dir/.build.lock"
flock 9
if have_all "$dir"; then
  echo "gateway: traefik $traefik_version built by a concurrent run in $dir"
  exit 0
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "gateway: Go is needed to build Traefik $traefik_version; install it" >&2
  exit 1
fi
if ! command -v patch >/dev/null && ! command -v git >/dev/null; then
  echo "gateway: patch(1) or git is needed to apply traefik.patch (Debian: apt-get install patch)" >&2
  exit 1
fi

# Build into a scratch folder and move into place, so an interrupted build never leaves
# a half-written folder that the "already built" check above would accept.
scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT

download() { # module@version -> its folder in the module cache
  local json src
  # Outside any module, so the download neither reads nor edits a go.mod.
  json="$(cd "$scratch" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "$1")"
  src="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$json")"
  if [[ -z "$src" || ! -f "$src/go.mod" ]]; then
    echo "gateway: go mod download gave no module folder for $1:" >&2
    echo "$json" >&2
    exit 1
  fi
  echo "$src"
}

start=$SECONDS
echo "gateway: downloading $traefik_module@$traefik_version and $gateway_api_module@$gateway_api_version (go mod download; the module cache keeps them)"
traefik_src="$(download "$traefik_module@$traefik_version")"
gateway_api_src="$(download "$gateway_api_module@$gateway_api_version")"

mkdir "$scratch/src"
cp -R "$traefik_src/go.mod" "$traefik_src/go.sum" "$traefik_src/cmd" "$traefik_src/pkg" \
  "$traefik_src/internal" "$traefik_src/webui" "$scratch/src/"
# The module cache is read-only; the patch and the build need writable copies.
chmod -R u+w "$scratch/src"
echo "gateway: applying traefik.patch (the three gaps above)"
if command -v patch >/dev/null; then
  patch --quiet --directory="$scratch/src" --strip=1 --forward <"$here/traefik.patch"
else
  (cd "$scratch/src" && git apply -p1 "$here/traefik.patch")
fi

echo "gateway: building traefik $traefik_version into $dir (first time only; ~10 min cold on 2 cores, 23 s warm)"
echo "gateway: waiting for other Go builds on this machine (flock /tmp/dex-gobuild.lock)"
(
  cd "$scratch/src"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
  flock /tmp/dex-gobuild.lock go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$traefik_version -X github.com/traefik/traefik/v3/pkg/version.Codename=dex" \
    -o "$scratch/traefik" ./cmd/traefik
)

mkdir "$scratch/out"
mv "$scratch/traefik" "$scratch/out/traefik"
cp -R "$gateway_api_src/config/crd/standard" "$scratch/out/crd"
chmod -R u+w "$scratch/out/crd"
# Each piece moves into place; traefik last, since the "already built" check looks at it.
for part in crd traefik; do
  rm -rf "${dir:?}/$part"
  mv "$scratch/out/$part" "$dir/$part"
done
echo "$patch_sum" >"$dir/traefik.patch.sha256"
echo "gateway: built in $((SECONDS - start)) s: traefik $(du -h "$dir/traefik" | cut -f1), $(ls "$dir/crd" | wc -l) CRD files in $dir"
