#!/usr/bin/env bash
# Times `make test` runs for `make bench`: `start` notes the time and which of make test's
# caches are missing (a cold run builds them), `stop STATUS` appends the run to
# ~/.cache/dex/make-test-runs.jsonl. CI runs on the machine it times, so the figures are
# CI's own.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/dex"
mkdir -p "$cache"
start_file="$cache/make-test.start"
case "${1:-}" in
  start)
    cold=()
    [[ -x .venv/bin/python ]] || cold+=(venv)
    [[ -x "$(bash tools/envtest/build.sh --print-dir)/kube-apiserver" ]] || cold+=(envtest)
    [[ -d "$cache/images" ]] || cold+=(images)
    # The real KServe manager, Traefik and CoreDNS: each a long Go build the first time.
    [[ -x "$(bash tools/kserve/build.sh --print-dir)/manager" ]] || cold+=(kserve)
    [[ -x "$(bash tools/gateway/build.sh --print-dir)/traefik" ]] || cold+=(gateway)
    [[ -x "$(bash tools/coredns/build.sh --print-dir)/coredns" ]] || cold+=(coredns)
    # KFP's backend and Argo CD: Go builds too (Argo CD's fetches its Go toolchain first).
    [[ -x "$(bash tools/kfp/build.sh --print-dir)/bin/apiserver" ]] || cold+=(kfp)
    [[ -x "$(bash tools/argocd/build.sh --print-dir)/bin/argocd" ]] || cold+=(argocd)
    [[ -x "$(bash tools/argo-workflows/build.sh --print-dir)/bin/workflow-controller" ]] ||
      cold+=(argo-workflows)
    # The KFP UI: an npm install and a vite build of its React app.
    [[ -f "$(bash tools/kfp-ui/build.sh --print-dir)/.dex-built" ]] || cold+=(kfp-ui)
    # Go's own build cache decides most of the Kubernetes build time: a machine that built
    # Go before (another checkout, an earlier cache) is not as cold as a fresh one.
    gocache=$(go env GOCACHE 2>/dev/null || true)
    [[ -n "$gocache" && -n "$(ls -A "$gocache" 2>/dev/null)" ]] || cold+=(go-build)
    printf '%s %s\n' "$(date +%s)" "${cold[*]-}" >"$start_file"
    echo "==> test: clock started (cold caches: ${cold[*]:-none})"
    ;;
  stop)
    [[ -f "$start_file" ]] || exit 0
    read -r began cold <"$start_file" || true
    seconds=$(($(date +%s) - began))
    printf '{"finished": "%s", "seconds": %d, "status": %d, "cold": "%s", "ci": "%s"}\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$seconds" "${2:-0}" "${cold:-}" "${CI:-}" \
      >>"$cache/make-test-runs.jsonl"
    rm -f "$start_file"
    echo "==> test: make test took ${seconds} s (cold caches: ${cold:-none})"
    ;;
  *) echo "usage: $0 start|stop STATUS" >&2; exit 2 ;;
esac
