#!/usr/bin/env bash
# `make images`: DEX's three images (dex-operator, dex-serving, dex-components) and the dev
# cluster's Redis, built on this machine from their Dockerfiles with buildah, cached by
# content, exported as OCI archives.
#
#   tools/images/build.sh [-v] [NAME...]   NAME: dex-operator, dex-serving, dex-components, redis
#
# The logic is testing/dex_testing/images.py, run with the project's venv (DEX_IMAGES_PYTHON
# overrides it).
# State: ${DEX_IMAGES_DIR:-~/.cache/dex/images}: <name>.oci.tar (for `ctr -n k8s.io images
# import`), images.json (references, sizes, cold and cached timings), storage/ (buildah's
# --root/--runroot). Remove that folder to start over.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/tools/system-deps.sh" images
exec "${DEX_IMAGES_PYTHON:-$root/.venv/bin/python}" -m dex_testing.images "$@"
