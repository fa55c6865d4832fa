#!/usr/bin/env bash
# `make checkov`: checkov (the static policy checker the tests run over the rendered overlays
# and the Dockerfiles) in a venv of its own, from the hash-pinned requirements.txt next to
# this script. Once per requirements.txt: the venv's folder is named by its hash.
#
#   tools/checkov/install.sh          install unless there; print the checkov binary's path
#   tools/checkov/install.sh --print  print that path only (installs nothing)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
requirements="$here/requirements.txt"
key="$(sha256sum "$requirements" | cut -c1-16)"
dir="${DEX_CHECKOV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/checkov}/$key"
binary="$dir/venv/bin/checkov"

if [[ "${1:-}" == "--print" ]]; then
  echo "$binary"
  exit 0
fi
if [[ ! -f "$dir/.installed" ]]; then
  uv="$repo/.venv/bin/uv"
  [[ -x "$uv" ]] || { echo "checkov: $uv is missing: run 'make setup' first" >&2; exit 1; }
  echo "==> checkov: installing into $dir (uv pip install --require-hashes)" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  "$uv" venv --quiet --python "$repo/.venv/bin/python" "$dir/venv"
  "$uv" pip install --quiet --python "$dir/venv/bin/python" --require-hashes -r "$requirements"
  "$binary" --version >/dev/null
  touch "$dir/.installed"
fi
echo "$binary"
