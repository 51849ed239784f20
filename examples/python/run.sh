#!/usr/bin/env bash
# Runs the Python example clients against a fresh ampsim server:
#   bash examples/python/run.sh [path/to/ampsim]     (default: ./target/release/ampsim)
#
# Creates (or reuses) a virtualenv in ${TMPDIR:-/tmp}/ampsim-pyenv with requirements.txt, starts
# `ampsim serve` on a free loopback port with a temporary database and a random auth token
# (AMPSIM_AUTH_TOKEN if already set), runs client.py and reflection_check.py, and always stops
# the server. Exits non-zero if anything fails. Every step is bounded in time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

bin="${1:-$repo/target/release/ampsim}"
if [[ "$bin" != /* && -n "${1:-}" ]]; then
  bin="$PWD/$bin"
fi
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no executable ampsim at $bin (build it with cargo build --release, or pass its path)" >&2
  exit 2
fi

python="${PYTHON:-python3}"
venv="${TMPDIR:-/tmp}/ampsim-pyenv"
work="$(mktemp -d "${TMPDIR:-/tmp}/ampsim-py.XXXXXX")"
server_pid=""

cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    # SIGTERM drains and exits 0; do not wait forever for it.
    for _ in $(seq 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$work/server.log" ]]; then
    echo "run.sh: failed (status $rc); last lines of the server log:" >&2
    tail -n 20 "$work/server.log" >&2 || true
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- The virtualenv, reused while requirements.txt is unchanged.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  timeout 120 "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  echo "== pip install -r examples/python/requirements.txt (into $venv)"
  timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi
py="$venv/bin/python"

# --- A server on a free loopback port, with a temporary database and an auth token.
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
addr="127.0.0.1:$port"
export AMPSIM_AUTH_TOKEN="${AMPSIM_AUTH_TOKEN:-$("$py" -c 'import secrets; print(secrets.token_hex(16))')}"
echo "== ampsim serve --listen $addr (temporary database, auth token required)"
"$bin" serve --listen "$addr" --db "$work/ampsim.db" > "$work/server.log" 2>&1 &
server_pid=$!

# Health needs no token; wait until it answers SERVING (field 1 = 1), or give up after 30 s.
timeout 40 "$py" - "$addr" "$server_pid" <<'PY'
import os, sys, time
import grpc

addr, pid = sys.argv[1], int(sys.argv[2])
check = grpc.insecure_channel(addr).unary_unary("/grpc.health.v1.Health/Check")
deadline = time.monotonic() + 30
last = "no answer"
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("run.sh: the server exited before it was ready")
    try:
        if check(b"", timeout=1) == b"\x08\x01":
            sys.exit(0)
        last = "not SERVING"
    except grpc.RpcError as e:
        last = f"{e.code().name}"
    time.sleep(0.1)
sys.exit(f"run.sh: the server at {addr} was not ready after 30 s ({last})")
PY

echo "== client.py"
timeout 180 "$py" "$here/client.py" --server "$addr"
echo "== reflection_check.py"
timeout 120 "$py" "$here/reflection_check.py" --server "$addr"
echo "== Python clients: all checks passed"
