#!/usr/bin/env bash
# Runs Mooncake's own wheel tests (the core files of mooncake-wheel/tests) against this
# checkout's package, with the services and flags of Mooncake's scripts/run_tests.sh.
# A developer tool: CI does not run it (it needs a copy of Mooncake's repository).
#
#   tools/mooncake-suite/run.sh MOONCAKE_DIR [WORK_DIR]
#
# MOONCAKE_DIR holds mooncake-wheel/tests (and scripts/) of a Mooncake checkout. WORK_DIR
# (default target/mooncake-suite) gets the venv and one log per step. See README.md here.
set -uo pipefail

usage() { echo "usage: $0 MOONCAKE_DIR [WORK_DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
MC=$(cd "$1" && pwd) || usage
TESTS=$MC/mooncake-wheel/tests
[ -f "$TESTS/test_distributed_object_store.py" ] || { echo "no mooncake-wheel/tests under $MC" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${2:-$ROOT/target/mooncake-suite}
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd)
LOGS=$WORK/logs
STEP_TIMEOUT=${MOONCAKE_SUITE_TIMEOUT:-600}

# Every process this script starts, stopped by PID on exit.
STARTED=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() { local pid; for pid in "${STARTED[@]}"; do stop_pid "$pid"; done; STARTED=(); }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The fixed ports of run_tests.sh must be free: another run would answer in our place.
for port in 8080 50051 9003; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop what listens there first" >&2
    exit 2
  fi
done

wait_port() {  # port, pid of the process that should listen there
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "process $2 exited before listening on $1" >&2; return 1; }
    sleep 0.1
  done
  echo "nothing listens on $1 after 10 s" >&2
  return 1
}

echo "--- building libmooncake.so and installing the package into a fresh venv ($WORK/venv)"
(cd "$ROOT" && nice cargo build --release --lib) > "$LOGS/build.log" 2>&1 || { tail -20 "$LOGS/build.log"; exit 1; }
python3 -m venv --clear "$WORK/venv" || exit 1
VENV=$WORK/venv
# The package as ci/build-wheel.sh packages it (a prebuilt library, no cargo inside pip);
# --no-deps: the alias distributions that wheel requires exist only beside a built wheel.
{ "$VENV/bin/pip" install -q --upgrade pip \
  && MOONCAKE_PREBUILT_LIB=$ROOT/target/release/libmooncake.so "$VENV/bin/pip" install -q --no-deps "$ROOT/python" \
  && "$VENV/bin/pip" install -q pytest numpy; } > "$LOGS/install.log" 2>&1 || { tail -20 "$LOGS/install.log"; exit 1; }
export PATH=$VENV/bin:$PATH
PY=$VENV/bin/python
"$PY" -c "import mooncake.store, mooncake.engine; print('package:', mooncake.store.__file__)"

export MC_TCP_BIND_ADDRESS=${MC_TCP_BIND_ADDRESS:-127.0.0.1}
META=http://127.0.0.1:8080/metadata
RESULTS=()
# The totals count as issue 17's measurement does: skipped cases out, the two processes of
# test_multi_dummy_clients as one case, the rerun with the embedded metadata server apart.
TOTAL_PASS=0
TOTAL_CASES=0
COUNTED=1

# Records "name passed/total (failed, errors, skipped)" from a junit file.
record_junit() {  # name, junit xml, rc
  local line
  line=$("$PY" - "$2" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0 0 0 0"); raise SystemExit
# One testcase element per case (a suite's "tests" attribute also counts subtests).
cases = list(root.iter("testcase"))
def has(tc, tag):
    return tc.find(tag) is not None
f = sum(has(tc, "failure") for tc in cases)
e = sum(has(tc, "error") and not has(tc, "failure") for tc in cases)
k = sum(has(tc, "skipped") for tc in cases)
print(len(cases) - f - e - k, len(cases), f, e, k)
PYEOF
)
  set -- "$1" $line "$3"
  RESULTS+=("$(printf '%-50s %3s/%-3s passed  (failed %s, errors %s, skipped %s, rc %s)' "$1" "$2" "$3" "$4" "$5" "$6" "$7")")
  if [ "$COUNTED" = 1 ]; then TOTAL_PASS=$((TOTAL_PASS + $2)); TOTAL_CASES=$((TOTAL_CASES + $3 - $6)); fi
}

# Records the counts of a `python FILE` unittest run from its log.
record_unittest() {  # name, log, rc
  local ran fail err skip
  ran=$(grep -oE '^Ran [0-9]+ test' "$2" | tail -1 | grep -oE '[0-9]+' || true); ran=${ran:-0}
  fail=$(grep -oE 'failures=[0-9]+' "$2" | tail -1 | cut -d= -f2 || true); fail=${fail:-0}
  err=$(grep -oE 'errors=[0-9]+' "$2" | tail -1 | cut -d= -f2 || true); err=${err:-0}
  skip=$(grep -oE 'skipped=[0-9]+' "$2" | tail -1 | cut -d= -f2 || true); skip=${skip:-0}
  RESULTS+=("$(printf '%-50s %3s/%-3s passed  (failed %s, errors %s, skipped %s, rc %s)' "$1" \
    $((ran - fail - err - skip)) "$ran" "$fail" "$err" "$skip" "$3")")
}

# pytest runs each file so that every case counts (several files stop at their first failure
# when run as scripts); the environment is run_tests.sh's.
run_pytest() {  # label, file
  local log=$LOGS/$1.log rc
  echo "--- $1"
  (cd "$TESTS" && MC_METADATA_SERVER=$META DEFAULT_KV_LEASE_TTL=500 timeout "$STEP_TIMEOUT" \
    "$PY" -m pytest -v -p no:cacheprovider --junitxml="$LOGS/$1.xml" "$2") > "$log" 2>&1
  rc=$?
  grep -E '(PASSED|FAILED|ERROR|SKIPPED)' "$log" | grep '::' | sed 's/^/    /' | head -60
  record_junit "$1" "$LOGS/$1.xml" "$rc"
}

start() {  # log name, command...
  local log=$LOGS/$1.log; shift
  "$@" > "$log" 2>&1 &
  STARTED+=($!)
  LAST_PID=$!
}

stop_last_started() {  # stops and forgets the last N started processes
  local n=$1 i pid
  for i in $(seq "$n"); do
    pid=${STARTED[-1]}
    unset 'STARTED[-1]'
    stop_pid "$pid"
  done
}

echo "--- standalone HTTP metadata server on 8080"
start metadata-server mooncake_http_metadata_server --port 8080
wait_port 8080 "$LAST_PID" || exit 1

echo "--- transfer engine: target, then the initiator's tests"
(cd "$TESTS" && MC_METADATA_SERVER=$META MC_FORCE_TCP=true exec "$PY" transfer_engine_target.py) > "$LOGS/te-target.log" 2>&1 &
STARTED+=($!)
sleep 2
run_pytest transfer_engine_initiator_test transfer_engine_initiator_test.py
stop_last_started 1

echo "--- mooncake_master --default_kv_lease_ttl=500"
start master mooncake_master --default_kv_lease_ttl=500
wait_port 50051 "$LAST_PID" || exit 1
sleep 1
run_pytest test_distributed_object_store test_distributed_object_store.py
run_pytest test_replicated_distributed_object_store test_replicated_distributed_object_store.py
echo "    (test_put_get_tensor.py and test_safetensor_functions.py: tensor methods, not run here)"

echo "--- mooncake_client (for the dummy clients)"
start mooncake-client mooncake_client
sleep 2
run_pytest test_dummy_client test_dummy_client.py
echo "--- test_multi_dummy_clients.py, client1 and client2 at once (as scripts, as run_tests.sh runs them)"
(cd "$TESTS" && MC_METADATA_SERVER=$META DEFAULT_KV_LEASE_TTL=500 exec timeout "$STEP_TIMEOUT" \
  "$PY" test_multi_dummy_clients.py --client-id client1) > "$LOGS/multi-client1.log" 2>&1 &
P1=$!
(cd "$TESTS" && MC_METADATA_SERVER=$META DEFAULT_KV_LEASE_TTL=500 exec timeout "$STEP_TIMEOUT" \
  "$PY" test_multi_dummy_clients.py --client-id client2) > "$LOGS/multi-client2.log" 2>&1 &
P2=$!
wait $P1; RC1=$?
wait $P2; RC2=$?
record_unittest "test_multi_dummy_clients (client1)" "$LOGS/multi-client1.log" $RC1
record_unittest "test_multi_dummy_clients (client2)" "$LOGS/multi-client2.log" $RC2
TOTAL_CASES=$((TOTAL_CASES + 1))
if [ "$RC1" = 0 ] && [ "$RC2" = 0 ] && grep -q '^OK' "$LOGS/multi-client1.log" && grep -q '^OK' "$LOGS/multi-client2.log"; then
  TOTAL_PASS=$((TOTAL_PASS + 1))
fi
stop_last_started 2   # mooncake_client, mooncake_master

run_pytest test_cli test_cli.py

echo "--- metadata server stopped; mooncake_master --enable_http_metadata_server=true"
stop_last_started 1
start master-embedded mooncake_master --default_kv_lease_ttl=500 --enable_http_metadata_server=true
wait_port 8080 "$LAST_PID" || exit 1
sleep 1
COUNTED=0
run_pytest test_distributed_object_store_embedded_metadata test_distributed_object_store.py
COUNTED=1
stop_last_started 1

echo "--- files run_tests.sh leaves to pytest (no services)"
run_pytest test_http_metadata_server test_http_metadata_server.py
run_pytest test_import_structure test_import_structure.py

echo
echo "=== results (logs: $LOGS)"
printf '%s\n' "${RESULTS[@]}"
echo "=== core cases: $TOTAL_PASS of $TOTAL_CASES passed (skipped cases out, the multi-client pair as one" \
  "case, the embedded-metadata rerun apart)"
[ "$TOTAL_PASS" -eq "$TOTAL_CASES" ] && ! printf '%s\n' "${RESULTS[@]}" | grep -qv ', rc 0)$'

