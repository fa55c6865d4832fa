#!/usr/bin/env bash
# The one owner of DEX's system (Debian) packages: `tools/system-deps.sh GROUP...` checks the
# commands listed for those groups in tools/system-deps.txt and installs the missing packages
# with apt-get when run as root; otherwise it names them and fails, so nothing half-works.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="$here/system-deps.txt"
(($#)) || { echo "usage: $0 GROUP..." >&2; exit 2; }

missing=()
for group in "$@"; do
  found=0
  while read -r g cmd pkg; do
    [[ -z "$g" || "$g" == \#* || "$g" != "$group" ]] && continue
    found=1
    command -v "$cmd" >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  done <"$list"
  ((found)) || { echo "system-deps: no group '$group' in $list" >&2; exit 2; }
done
((${#missing[@]})) || exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "system-deps: missing Debian packages: ${missing[*]}" >&2
  echo "  install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# Another install on this machine (a second `make`) holds dpkg's lock for a while: wait for it.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system-deps: installed ${missing[*]}"
