#!/usr/bin/env bash
# `make mlmd`: ML Metadata's own store (PyPI ml-metadata: its C++ library as a Python
# extension) in a venv of its own, from the hash-pinned requirements.txt next to this script,
# plus mlmd_grpc_server.py, which serves that store over gRPC for the KFP driver. Its own venv
# because ml-metadata needs protobuf 4.25 and the project's venv has protobuf 6. Once per
# requirements.txt: the venv's folder is named by its hash.
#
#   tools/mlmd/install.sh              install unless there; print the venv's folder
#   tools/mlmd/install.sh --print-dir  print that folder only (installs nothing)
#
# The venv (DEX_MLMD_DIR overrides its parent folder) is complete when it holds the stamp
# `.dex-installed`, written last. Run the server with `<venv>/bin/python
# tools/mlmd/mlmd_grpc_server.py --port P --sqlite FILE`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
requirements="$here/requirements.txt"
key="$(sha256sum "$requirements" | cut -c1-16)"
dir="${DEX_MLMD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/mlmd}/$key"
stamp="$dir/.dex-installed"

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done
if ((print_dir)); then
  echo "$dir"
  exit 0
fi

if [[ -f "$stamp" ]]; then
  echo "mlmd: up to date in $dir" >&2
else
  uv="$repo/.venv/bin/uv"
  [[ -x "$uv" ]] || { echo "mlmd: $uv is missing: run 'make setup' first" >&2; exit 1; }
  echo "mlmd: installing ml-metadata into $dir (uv pip install --require-hashes)" >&2
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  # The pins are for CPython 3.11 (ml-metadata's wheels are per Python version), the
  # project's interpreter.
  "$uv" venv --quiet --python "$repo/.venv/bin/python" "$dir"
  "$uv" pip install --quiet --python "$dir/bin/python" --require-hashes -r "$requirements"
  echo "mlmd: checking that the store's extension loads" >&2
  "$dir/bin/python" -c \
    'from ml_metadata.metadata_store.pywrap.metadata_store_extension import metadata_store'
  touch "$stamp"
  echo "mlmd: installed" >&2
fi
echo "$dir"
