#!/usr/bin/env bash
# Builds (once per machine) the real control plane used by the integration tests:
# etcd, kube-apiserver and kube-controller-manager, from the Go module in this folder.
#
#   tools/envtest/build.sh              build into the cache folder unless already there
#   tools/envtest/build.sh --node       also the node: kubelet, kube-scheduler, kube-proxy, pause
#                                       (the pod sandbox) and hello (a tiny HTTP workload), for
#                                       `dexctl dev cluster up --node`
#   tools/envtest/build.sh --print-dir  print the folder the binaries are (or would be) in
#
# Only missing binaries are built, so --node after a plain build compiles just the node.
# The folder is laid out as KUBEBUILDER_ASSETS expects. If KUBEBUILDER_ASSETS is set its
# binaries are used and nothing is built. DEX_ENVTEST_DIR overrides the cache folder.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binaries=(etcd kube-apiserver kube-controller-manager)
node_binaries=(kubelet kube-scheduler kube-proxy pause hello)
static_binaries=" pause hello " # standard library only, CGO off: each is a whole image

print_dir=0
node=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    --node) node=1 ;;
    *) echo "usage: $0 [--node] [--print-dir]" >&2; exit 2 ;;
  esac
done
if ((node)); then
  binaries+=("${node_binaries[@]}")
fi

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
if [[ -z "$k8s_version" ]]; then
  echo "envtest: cannot read the k8s.io/kubernetes version from $here/go.mod" >&2
  exit 1
fi

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  dir="$KUBEBUILDER_ASSETS"
else
  dir="${DEX_ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/envtest/$k8s_version}"
fi

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

have_all() {
  [[ -z "$(missing_in "$1")" ]]
}

system_kubectl="$(command -v kubectl || true)"

link_kubectl() {
  # A kubectl on PATH is enough for `kubectl get/apply`; linking it keeps the folder
  # self-contained for tools that expect KUBEBUILDER_ASSETS/kubectl.
  if [[ -n "$system_kubectl" && ! -e "$1/kubectl" ]]; then
    ln -s "$system_kubectl" "$1/kubectl"
  fi
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && ((node)); then
  if ! have_all "$dir"; then
    echo "envtest: KUBEBUILDER_ASSETS=$dir lacks $(missing_in "$dir" | xargs); unset it to build the node" >&2
    exit 1
  fi
  echo "envtest: using KUBEBUILDER_ASSETS=$dir"
  exit 0
fi

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  # setup-envtest's folders hold etcd + kube-apiserver (+ kubectl) but no controller-manager.
  for b in etcd kube-apiserver; do
    if [[ ! -x "$dir/$b" ]]; then
      echo "envtest: KUBEBUILDER_ASSETS=$dir has no executable $b" >&2
      exit 1
    fi
  done
  if [[ ! -x "$dir/kube-controller-manager" ]]; then
    echo "envtest: warning: no kube-controller-manager in $dir; garbage-collection tests will fail" >&2
  fi
  echo "envtest: using KUBEBUILDER_ASSETS=$dir"
  exit 0
fi

if have_all "$dir"; then
  echo "envtest: $k8s_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
# Concurrent `make test` runs must not both spend minutes building the same thing.
exec 9>"$dir/.build.lock"
flock 9
if have_all "$dir"; then
  echo "envtest: $k8s_version built by a concurrent run in $dir"
  exit 0
fi

# Build into a scratch folder and move into place, so an interrupted build never leaves
# a half-written binary that the "already built" check above would accept.
scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
build_date="$(date -u +'%Y-%m-%dT%H:%M:%SZ')"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X '$pkg.gitVersion=$k8s_version'"
  ldflags+=" -X '$pkg.gitMajor=1'"
  ldflags+=" -X '$pkg.gitMinor=$minor'"
  ldflags+=" -X '$pkg.gitTreeState=clean'"
  ldflags+=" -X '$pkg.buildDate=$build_date'"
done

mapfile -t targets < <(missing_in "$dir")
if [[ -z "$system_kubectl" && ! -x "$dir/kubectl" ]]; then
  targets+=(kubectl)
fi
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "envtest: Go is needed to build the control plane (go.mod says $(awk '$1 == "go" {print $2}' "$here/go.mod")+); install it or set KUBEBUILDER_ASSETS" >&2
  exit 1
fi
echo "envtest: building ${targets[*]} $k8s_version into $dir (first time only; long on 2 cores)"
start=$SECONDS
(
  cd "$here"
  export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
  go_targets=()
  static_targets=()
  for b in "${targets[@]}"; do
    if [[ "$static_binaries" == *" $b "* ]]; then
      static_targets+=("./cmd/$b")
    else
      go_targets+=("./cmd/$b")
    fi
  done
  if ((${#go_targets[@]})); then
    go build -trimpath -ldflags "$ldflags" -o "$scratch/" "${go_targets[@]}"
  fi
  if ((${#static_targets[@]})); then
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$scratch/" "${static_targets[@]}"
  fi
)
for b in "${targets[@]}"; do
  mv -f "$scratch/$b" "$dir/$b"
done
link_kubectl "$dir"
echo "envtest: built in $((SECONDS - start)) s: $(du -sh "$dir" | cut -f1) in $dir"
