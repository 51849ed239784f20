#!/usr/bin/env bash
# Amplitude's official Node SDK against `ampsim amplitude-double` (issue 18, item 2):
#   bash tests/node/run.sh [path/to/ampsim]      (default: ./target/release/ampsim)
#
# Installs the pinned packages of package-lock.json into tests/node/node_modules with `npm ci`
# (the same tree on every run), then runs sdk-double.mjs: a generated day sent through
# @amplitude/analytics-node to the double, which must ingest every event exactly once.
# Needs node 20+ and npm; the packages come from the npm registry.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:-$repo/target/release/ampsim}"
[[ "$bin" = /* ]] || bin="$PWD/$bin"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no executable ampsim at $bin (cargo build --release, or pass its path)" >&2
  exit 2
fi
if ! node --version >/dev/null 2>&1 || ! npm --version >/dev/null 2>&1; then
  echo "run.sh: the Node SDK test needs node 20+ and npm (Debian: apt-get install -y nodejs npm)" >&2
  exit 2
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if (( major < 20 )); then
  echo "run.sh: node $(node --version) is too old, the test needs node 20+" >&2
  exit 2
fi

cd "$here"
echo "== npm ci (tests/node, node $(node --version), npm $(npm --version))"
timeout 300 npm ci --no-audit --no-fund --loglevel=error
echo "== node sdk-double.mjs"
timeout 600 node sdk-double.mjs "$bin"
