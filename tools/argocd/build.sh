#!/usr/bin/env bash
# Builds (once per machine) the real Argo CD the GitOps tests run: the argocd binary of Argo CD
# 3.6.1 (one binary; the name it is started under picks the component), the kustomize its repo
# server shells out to, the git wrapper the repo server calls, and Argo CD's CRDs.
#
#   tools/argocd/build.sh              build into the cache folder unless already there
#   tools/argocd/build.sh --print-dir  print the folder it is (or would be) in
#
# The folder (DEX_ARGOCD_DIR overrides it) then holds:
#   bin/    argocd, with symlinks argocd-application-controller and argocd-repo-server;
#           kustomize (v5.8.3)
#   hack/   git-verify-wrapper.sh (the repo server runs it even with GPG off: put it on PATH)
#   crds/   Argo CD's CRDs (manifests/crds of the module: Application, AppProject, ...)
#
# Both come from the Go module proxy (probed facts: ../shared/ARGOCD.md). Argo CD's go.mod says
# go 1.27, newer than this machine's Go: the go command fetches go1.27.3 from the proxy. Its
# module replaces gitops-engine with ./gitops-engine, a nested module its zip lacks, so the
# nested module is downloaded next to it. kustomize pins a kube-openapi pseudo-version the
# proxy refuses: its scratch copy is pointed at the kube-openapi Argo CD itself uses.
# Nothing of Argo CD is copied into this repository: the sources live in a scratch folder under
# the cache folder, removed when done.
set -euo pipefail

argocd_version=3.6.1
argocd_module=github.com/argoproj/argo-cd/v3
engine_module=github.com/argoproj/argo-cd/gitops-engine/v3
kustomize_module=sigs.k8s.io/kustomize/kustomize/v5
kustomize_version=v5.8.3
export GOTOOLCHAIN=go1.27.3

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

dir="${DEX_ARGOCD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/argocd/$argocd_version}"
if ((print_dir)); then
  echo "$dir"
  exit 0
fi

# The stamp is written last: its presence says every part below is complete.
stamp="$dir/.built-$argocd_version-kustomize-$kustomize_version"
have_all() {
  [[ -f "$stamp" && -x "$dir/bin/argocd" && -x "$dir/bin/kustomize" ]] &&
    [[ -L "$dir/bin/argocd-application-controller" && -L "$dir/bin/argocd-repo-server" ]] &&
    [[ -x "$dir/hack/git-verify-wrapper.sh" && -d "$dir/crds" ]]
}

if have_all; then
  echo "==> argocd: $argocd_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.build.lock"
echo "==> argocd: waiting for another build of this folder, if any (flock $dir/.build.lock)"
flock 9
if have_all; then
  echo "==> argocd: $argocd_version built by a concurrent run in $dir"
  exit 0
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "argocd: Go is needed to build Argo CD $argocd_version; install it" >&2
  exit 1
fi

scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
start=$SECONDS

# go mod download -json prints the module's folder in the module cache (read-only there).
module_dir() {
  local json folder
  echo "==> argocd: downloading $1@$2 (go mod download)" >&2
  json="$(cd "$scratch" && GO111MODULE=on go mod download -json "$1@$2")"
  folder="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$json")"
  if [[ -z "$folder" || ! -f "$folder/go.mod" ]]; then
    echo "argocd: go mod download gave no module folder for $1@$2:" >&2
    echo "$json" >&2
    exit 1
  fi
  echo "$folder"
}

echo "==> argocd: Go toolchain $GOTOOLCHAIN (Argo CD's go.mod wants go 1.27; fetched from the module proxy once)"
argocd_src="$(module_dir "$argocd_module" "v$argocd_version")"
engine_src="$(module_dir "$engine_module" "v$argocd_version")"
kustomize_src="$(module_dir "$kustomize_module" "$kustomize_version")"

cp -r "$argocd_src" "$scratch/argo-cd"
chmod -R u+w "$scratch/argo-cd"
rm -rf "$scratch/argo-cd/gitops-engine"
cp -r "$engine_src" "$scratch/argo-cd/gitops-engine"
cp -r "$kustomize_src" "$scratch/kustomize"
chmod -R u+w "$scratch/argo-cd/gitops-engine" "$scratch/kustomize"

openapi="$(cd "$scratch/argo-cd" && go list -m -f '{{.Version}}' k8s.io/kube-openapi)"
if [[ -z "$openapi" ]]; then
  echo "argocd: cannot read the kube-openapi version Argo CD $argocd_version uses" >&2
  exit 1
fi

mkdir -p "$scratch/out/bin" "$scratch/out/hack" "$scratch/out/crds"
echo "==> argocd: waiting for other Go builds on this machine (flock /tmp/dex-gobuild.lock)"
echo "==> argocd: building kustomize $kustomize_version (kube-openapi $openapi; ~15 s)"
(
  cd "$scratch/kustomize"
  go mod edit -replace "k8s.io/kube-openapi=k8s.io/kube-openapi@$openapi"
  flock /tmp/dex-gobuild.lock go build -trimpath -ldflags '-s -w' -o "$scratch/out/bin/kustomize" .
)
echo "==> argocd: building argocd $argocd_version into $dir (first time only; ~5 min on 2 cores)"
(
  cd "$scratch/argo-cd"
  flock /tmp/dex-gobuild.lock go build -trimpath \
    -ldflags "-s -w -X $argocd_module/common.version=$argocd_version" \
    -o "$scratch/out/bin/argocd" ./cmd
)
ln -s argocd "$scratch/out/bin/argocd-application-controller"
ln -s argocd "$scratch/out/bin/argocd-repo-server"
cp "$scratch/argo-cd/hack/git-verify-wrapper.sh" "$scratch/out/hack/"
chmod +x "$scratch/out/hack/git-verify-wrapper.sh"
cp "$scratch"/argo-cd/manifests/crds/*.yaml "$scratch/out/crds/"

rm -f "$stamp"
for part in bin hack crds; do
  rm -rf "${dir:?}/$part"
  mv "$scratch/out/$part" "$dir/$part"
done
touch "$stamp"
echo "==> argocd: built in $((SECONDS - start)) s: $(du -sh "$dir/bin" | cut -f1) of binaries in $dir"
