#!/usr/bin/env bash
# Builds the Python package's wheel from this repository and runs its tests (python/tests):
#   bash python/run-tests.sh [path/to/ampsim]      (default: ./target/release/ampsim)
#
# The wheel is built the way `pip install .` builds it (PEP 517, maturin from PyPI), as one
# abi3 wheel, and installed into a virtualenv in ${TMPDIR:-/tmp}/ampsim-wheel-env (reused
# while requirements-test.txt is unchanged). The tests need the ampsim binary (the single
# process and the server they compare with) and, for Spark, a Java 17+ runtime.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bin="${1:-$repo/target/release/ampsim}"
[[ "$bin" = /* ]] || bin="$PWD/$bin"
if [[ ! -x "$bin" ]]; then
  echo "run-tests.sh: no executable ampsim at $bin (cargo build --release, or pass its path)" >&2
  exit 2
fi
if ! java -version >/dev/null 2>&1; then
  echo "run-tests.sh: Spark needs a Java 17+ runtime and there is no working 'java'" \
       "(Debian: apt-get install -y openjdk-17-jre-headless)" >&2
  exit 2
fi

python="${PYTHON:-python3}"
venv="${TMPDIR:-/tmp}/ampsim-wheel-env"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements-test.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  timeout 120 "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  echo "== pip install -r python/requirements-test.txt (into $venv)"
  timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-test.txt"
  echo "$want" > "$stamp"
fi
py="$venv/bin/python"

wheels="$(mktemp -d "${TMPDIR:-/tmp}/ampsim-wheels.XXXXXX")"
trap 'rm -rf "$wheels"' EXIT
echo "== pip wheel . (maturin, release build of crates/ampsim-py)"
started=$SECONDS
timeout 1200 "$py" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  -w "$wheels" "$repo"
wheel="$(ls "$wheels"/ampsim-*.whl)"
echo "   built $(basename "$wheel") in $((SECONDS - started)) s"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"

echo "== pytest python/tests"
cd "$here/tests"
AMPSIM_BIN="$bin" AMPSIM_WHEEL="$wheel" timeout 1200 "$py" -m pytest -q -p no:cacheprovider -s .
