#!/usr/bin/env bash
# The C examples and the Python scenario suites, unchanged, behind each metadata service:
# our mooncake_http_metadata_server (target/release), and, with MOONCAKE_METADATA_FEATURES=1,
# etcd and redis (Debian's servers; the C programs then load the library built with
# `--features etcd,redis` in $MOONCAKE_FEATURES_TARGET, default target/features, which
# ci/test.sh builds; the Python package of ci/test-python.sh has both features). Every server
# is started on a free loopback port and stopped by its PID. Needs: target/release, the C
# programs of ci/test-c.sh in target/c-tests/, and the venv of ci/test-python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/metadata-tests
mkdir -p "$WORK"
PY=$ROOT/target/python-tests/venv/bin/python
export MC_TCP_BIND_ADDRESS=127.0.0.1   # publish loopback, as Mooncake's own tests do
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1"; return 1
}

run_suite() { # $1: metadata string, $2: label, $3: pytest -k filter (optional)
  echo "--- C examples with $2"
  for prog in transfer_example_c transfer_example_cpp; do
    LD_LIBRARY_PATH=${LIB_OVERRIDE:-} MOONCAKE_METADATA=$1 timeout 300 "$ROOT/target/c-tests/$prog" >"$WORK/$prog-$2.log" 2>&1 ||
      { tail -20 "$WORK/$prog-$2.log"; echo "FAIL: $prog with $2"; exit 1; }
    tail -1 "$WORK/$prog-$2.log"
  done
  echo "--- Python scenario suites with $2"
  MOONCAKE_TEST_METADATA=$1 MOONCAKE_TEST_PYTHON_OURS=$PY MOONCAKE_REQUIRE_OURS=1 \
    timeout 900 "$PY" -m pytest -q -p no:cacheprovider ${3:+-k "$3"} \
    python/tests/test_transfers.py python/tests/test_errors.py python/tests/test_managed.py
}

port=$(free_port)
"$ROOT/target/release/mooncake_http_metadata_server" --host 127.0.0.1 --port "$port" >"$WORK/http.log" 2>&1 &
PIDS+=($!)
wait_port "$port"
run_suite "http://127.0.0.1:$port/metadata" http

if [ -n "${MOONCAKE_METADATA_FEATURES:-}" ]; then
  # The C programs find libmooncake.so.0 through their rpath; LD_LIBRARY_PATH comes first.
  features_lib=${MOONCAKE_FEATURES_TARGET:-$ROOT/target/features}/release/libmooncake.so
  [ -f "$features_lib" ] || { echo "FAIL: $features_lib missing (cargo build --release --features etcd,redis)"; exit 1; }
  mkdir -p "$WORK/features-lib"
  ln -sf "$features_lib" "$WORK/features-lib/libmooncake.so.0"
  export LIB_OVERRIDE=$WORK/features-lib
  need_server() { [ -z "${MOONCAKE_REQUIRE_SERVERS:-}" ] || { echo "FAIL: $1 is not installed"; exit 1; }; echo "SKIPPED: $1 not installed"; }
  if command -v etcd >/dev/null; then
    eport=$(free_port); epeer=$(free_port)
    rm -rf "$WORK/etcd"
    etcd --data-dir "$WORK/etcd" --name ci --listen-client-urls "http://127.0.0.1:$eport" \
      --advertise-client-urls "http://127.0.0.1:$eport" --listen-peer-urls "http://127.0.0.1:$epeer" \
      --initial-advertise-peer-urls "http://127.0.0.1:$epeer" --initial-cluster "ci=http://127.0.0.1:$epeer" \
      >"$WORK/etcd.log" 2>&1 &
    PIDS+=($!)
    wait_port "$eport"
    run_suite "etcd://127.0.0.1:$eport" etcd
  else
    need_server etcd
  fi
  if command -v redis-server >/dev/null; then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
    PIDS+=($!)
    wait_port "$rport"
    # Mooncake's wheel has no redis client: only our package runs the redis suites.
    run_suite "redis://127.0.0.1:$rport" redis "ours-to-ours or [ours]"
  else
    need_server redis-server
  fi
fi
echo "test-metadata.sh: all passed"
