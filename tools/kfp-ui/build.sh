#!/usr/bin/env bash
# Builds (once per machine) the real Kubeflow Pipelines 2.17.0 UI the tests open in a headless
# browser: the React app (vite) and its Node server (tsc), from KFP's frontend source.
#
#   tools/kfp-ui/build.sh              build into the cache folder unless already there
#   tools/kfp-ui/build.sh --print-dir  print the folder it is (or would be) in
#
# The folder (DEX_KFP_UI_DIR overrides it) then holds:
#   build/                the UI's static files (the server's <static dir> argument)
#   server/dist/          the compiled Node server (server.js, app.js, ...)
#   server/node_modules/  the server's runtime dependencies (dev ones pruned)
#   server/package.json   ("type": "module": the dist files are ES modules)
# The app's own node_modules (~0.9 GB) only serve the build and are deleted afterwards.
#
# Source: the same lookup as tools/kfp/build.sh (DEX_KFP_SOURCE, else the third_party copy next
# to this checkout, else a shallow clone of the 2.17.0 tag), restated here rather than shared:
# it is a dozen lines, and a shared helper would make the Go build's script harder to read.
# The build runs in a scratch copy under the cache folder; nothing upstream enters this repo.
set -euo pipefail

kfp_version=2.17.0
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

print_dir=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
  esac
done

dir="${DEX_KFP_UI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dex/kfp-ui/$kfp_version}"
if ((print_dir)); then
  echo "$dir"
  exit 0
fi

# The stamp is written last, after every part is in place: its presence means a whole build.
stamp="$dir/.dex-built"
if [[ -f "$stamp" ]]; then
  echo "kfp-ui: $kfp_version already built in $dir"
  exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.build.lock"
flock 9
if [[ -f "$stamp" ]]; then
  echo "kfp-ui: $kfp_version built by a concurrent run in $dir"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "kfp-ui: $tool is needed to build the KFP $kfp_version UI; install Node.js 20+" >&2
    exit 1
  fi
done

scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT

source_ok() { [[ -f "$1/frontend/package-lock.json" && -f "$1/frontend/server/package-lock.json" ]]; }
src=""
for candidate in "${DEX_KFP_SOURCE:-}" "$repo/../shared/third_party/kubeflow-pipelines-$kfp_version"; do
  if [[ -n "$candidate" ]] && source_ok "$candidate"; then
    src="$(cd "$candidate" && pwd)"
    break
  fi
done
if [[ -n "${DEX_KFP_SOURCE:-}" && "$src" != "$(cd "$DEX_KFP_SOURCE" 2>/dev/null && pwd)" ]]; then
  echo "kfp-ui: DEX_KFP_SOURCE=$DEX_KFP_SOURCE is not a KFP source tree (no frontend/ with its lock files)" >&2
  exit 1
fi
if [[ -z "$src" ]]; then
  echo "kfp-ui: no KFP source tree on disk (DEX_KFP_SOURCE, ../shared/third_party): shallow-cloning the $kfp_version tag"
  if ! git clone --quiet --depth 1 --branch "$kfp_version" https://github.com/kubeflow/pipelines "$scratch/upstream"; then
    echo "kfp-ui: cannot clone github.com/kubeflow/pipelines@$kfp_version; set DEX_KFP_SOURCE to a source tree of that tag" >&2
    exit 1
  fi
  src="$scratch/upstream"
fi
echo "kfp-ui: source $src/frontend"

start=$SECONDS
work="$scratch/frontend"
cp -r "$src/frontend" "$work"
chmod -R u+w "$work"
# The placeholder devDependency "fs" (npm's security stub) is not served by the registry these
# machines reach, and nothing imports it: drop it from the manifest and the lock file.
node -e '
  const fs = require("fs");
  for (const f of process.argv.slice(1)) {
    const j = JSON.parse(fs.readFileSync(f, "utf8"));
    if (j.devDependencies) delete j.devDependencies.fs;
    for (const p of Object.values(j.packages || {})) if (p.devDependencies) delete p.devDependencies.fs;
    if (j.packages) delete j.packages["node_modules/fs"];
    fs.writeFileSync(f, JSON.stringify(j, null, 2) + "\n");
  }' "$work/package.json" "$work/package-lock.json"

# --engine-strict=false: KFP's .npmrc demands the exact Node of its .nvmrc; the build needs
# no more than Node 20. --ignore-scripts: no install hook is needed for a vite build.
echo "kfp-ui: npm ci for the app and its server (first time only; ~3 min on 2 cores)"
echo "kfp-ui: waiting for other long builds on this machine (flock /tmp/dex-gobuild.lock)"
(
  cd "$work"
  export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
  export BROWSERSLIST_IGNORE_OLD_DATA=1  # its browser list is the pinned one, by design
  flock /tmp/dex-gobuild.lock npm ci --ignore-scripts --engine-strict=false --no-progress --loglevel=error
  flock /tmp/dex-gobuild.lock npm ci --prefix server --engine-strict=false --no-progress --loglevel=error
  echo "kfp-ui: building the app (tailwind, vite build)"
  flock /tmp/dex-gobuild.lock npm run --silent build:tailwind
  # Errors only: its warnings are about KFP's own bundle (eval in google-protobuf, chunk
  # sizes), pages of colour codes in a log, nothing this build could act on.
  flock /tmp/dex-gobuild.lock npx vite build --logLevel error
  echo "kfp-ui: building the server (tsc)"
  cd server
  flock /tmp/dex-gobuild.lock npm run --silent build
  # Only the server's runtime dependencies are kept.
  npm prune --omit=dev --no-progress --loglevel=error
)

mkdir -p "$scratch/out/server"
mv "$work/build" "$scratch/out/build"
mv "$work/server/dist" "$work/server/node_modules" "$work/server/package.json" "$scratch/out/server/"
for part in build server; do
  rm -rf "${dir:?}/$part"
  mv "$scratch/out/$part" "$dir/$part"
done
echo "$kfp_version $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$stamp"
echo "kfp-ui: built in $((SECONDS - start)) s: $(du -sh --exclude=".build.*" "$dir" | cut -f1) in $dir"
