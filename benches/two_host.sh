#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Two "hosts" on one machine: two network namespaces joined by a veth pair (198.51.100.0/24,
# TEST-NET-2, MTU 1500), and in the same run, over that pair:
#   - iperf3 with as many parallel streams as our engine opens TCP lanes per peer
#     (MC_TCP_LANES_PER_PEER, its default read from src/config.rs): forward (client -> server,
#     the direction of a write) and reverse (-R, the direction of a read);
#   - our `mooncake-bench` (--protocol=tcp): target in namespace A, initiator in namespace B;
#   - the `transfer_engine_bench` of Mooncake's wheel, the same way (see benches/compare.sh);
# at 1 MiB and 16 MiB blocks, write and read. It prints a Markdown table with GB/s (1e9 bytes/s)
# and the ratios ours/iperf3 (write against forward, read against reverse) and ours/Mooncake,
# each paired per run: median (min-max) over the runs.
#
# Must run as root (namespaces). The namespaces (mc2h-<pid>-a, mc2h-<pid>-b; deleting them deletes
# the veth pair) and every process the script starts (by PID) are removed on exit, also on error
# or Ctrl-C. Installs iperf3 with apt-get when it is absent. Every process runs under `timeout`.
#
# Knobs (environment variables):
#   RUNS=3               runs (each run measures every point once; the order of ours and
#                        Mooncake's flips from run to run)
#   DURATION=5           seconds per measurement (whole seconds)
#   SIZES="1048576 16777216"   block sizes in bytes
#   OPS="write read"     operations
#   LANES                iperf3 streams = our MC_TCP_LANES_PER_PEER (default: ours, src/config.rs)
#   BUF_MIB=256          --buffer_size of targets and initiators, in MiB
#   BATCH=128            --batch_size, lowered to BUF_MIB MiB / block (16 at 16 MiB)
#   THREADS=1            --threads of both benches
#   MTU=1500             the veth MTU
#   WHEEL=0              skips Mooncake's wheel (when it is not installed)
#   WHEEL_BENCH=path     the wheel's transfer_engine_bench (else found as in benches/compare.sh)
#   NO_BUILD=1           uses target/release/mooncake-bench as it is (else cargo builds it)
#   OUT=dir              logs and results.tsv (default: a new /tmp/mooncake-two-host.XXXXXX)
#
# Example: RUNS=5 benches/two_host.sh > /tmp/two_host.md      (about 75 s per run)
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SIZES=${SIZES:-"1048576 16777216"}
OPS=${OPS:-"write read"}
BUF_MIB=${BUF_MIB:-256}
BATCH=${BATCH:-128}
THREADS=${THREADS:-1}
MTU=${MTU:-1500}
WHEEL=${WHEEL:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/mooncake-two-host.XXXXXX)}
mkdir -p "$OUT"
BUF=$((BUF_MIB * 1024 * 1024))

log() { echo "[two_host] $*" >&2; }
die() {
    log "$*"
    exit 1
}

[[ $(id -u) == 0 ]] || die "must run as root (it creates network namespaces)"
for tool in ip timeout python3; do command -v "$tool" >/dev/null || die "$tool not found"; done

# Our lanes per peer: MC_TCP_LANES_PER_PEER if set, else the default in src/config.rs.
if [[ -z ${LANES:-} ]]; then
    LANES=${MC_TCP_LANES_PER_PEER:-$(sed -n 's/.*env_u64("MC_TCP_LANES_PER_PEER", \([0-9]*\),.*/\1/p' "$ROOT/src/config.rs" | head -n 1)}
fi
[[ $LANES =~ ^[0-9]+$ ]] || die "cannot tell our lanes per peer (set LANES)"

if ! command -v iperf3 >/dev/null; then
    log "installing iperf3 with apt-get"
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q iperf3 >&2 ||
        { timeout 300 apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q iperf3 >&2; } ||
        die "cannot install iperf3"
fi

if [[ -z ${NO_BUILD:-} ]]; then
    log "cargo build --release --bin mooncake-bench"
    (cd "$ROOT" && nice cargo build --release --bin mooncake-bench >&2)
fi
OURS=${CARGO_TARGET_DIR:-$ROOT/target}/release/mooncake-bench
[[ -x $OURS ]] || die "no $OURS"

if [[ $WHEEL == 1 && -z ${WHEEL_BENCH:-} ]]; then
    PY=${MOONCAKE_WHEEL_PYTHON:-${ANCHOR_HOME:-$HOME/.cache/mooncake-anchor}/venv/bin/python}
    [[ -x $PY ]] || die "no wheel python at $PY (set MOONCAKE_WHEEL_PYTHON or WHEEL_BENCH, or WHEEL=0)"
    WHEEL_BENCH="$("$PY" -c 'import mooncake, os; print(os.path.dirname(mooncake.__file__))')/transfer_engine_bench"
fi
[[ $WHEEL != 1 || -x $WHEEL_BENCH ]] || die "no wheel bench at $WHEEL_BENCH"

# --- the two hosts ---------------------------------------------------------------------------
NS_A=mc2h-$$-a # the target / iperf3 server: 198.51.100.1
NS_B=mc2h-$$-b # the initiator / iperf3 client: 198.51.100.2
IP_A=198.51.100.1
IP_B=198.51.100.2
PIDS=()

# SIGTERM, up to 10 s, then SIGKILL: one process, by its PID.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ $p != "$1" ]] && keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
    ip netns delete "$NS_A" 2>/dev/null || true
    ip netns delete "$NS_B" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_A" || die "cannot create network namespaces"
ip netns add "$NS_B"
ip link add veth0 netns "$NS_A" mtu "$MTU" type veth peer name veth0 netns "$NS_B" mtu "$MTU"
ip -n "$NS_A" addr add "$IP_A/24" dev veth0
ip -n "$NS_B" addr add "$IP_B/24" dev veth0
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set veth0 up
done
# Both ends up (operstate UP) within 5 s; iperf3 below shows whether packets pass.
for ((i = 0; i < 50; i++)); do
    [[ $(ip -n "$NS_A" -o link show veth0) == *"state UP"* && $(ip -n "$NS_B" -o link show veth0) == *"state UP"* ]] && break
    sleep 0.1
done
((i < 50)) || die "the veth pair did not come up"
log "hosts: $NS_A ($IP_A) <-> $NS_B ($IP_B), veth MTU $MTU; lanes per peer: $LANES; logs: $OUT"

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }
LIMIT=$((DURATION + 60)) # the most any one process of a measurement may run

# --- iperf3 ----------------------------------------------------------------------------------
# iperf3_point DIR RUN: DIR is fwd (client B sends to A) or rev (-R: A sends to B).
iperf3_point() {
    local dir=$1 run=$2 port=5201 spid rc=0 flag=() gbps jlog
    jlog=$OUT/iperf3_${dir}_run$run.json
    [[ $dir == rev ]] && flag=(-R)
    timeout -k 5 "$LIMIT" ip netns exec "$NS_A" iperf3 -s -1 -B "$IP_A" -p "$port" >"$OUT/iperf3_server_${dir}_run$run.log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    sleep 0.5
    timeout -k 5 "$LIMIT" ip netns exec "$NS_B" iperf3 -c "$IP_A" -p "$port" -P "$LANES" -t "$DURATION" \
        "${flag[@]+"${flag[@]}"}" -J >"$jlog" 2>&1 || rc=$?
    stop_pid "$spid"
    forget_pid "$spid"
    gbps=$(python3 -c 'import json,sys; print("%.4f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8e9))' "$jlog" 2>/dev/null || echo NA)
    ((rc == 0)) || { log "iperf3 $dir run $run failed (rc $rc), see $jlog"; gbps=NA; }
    local op
    for op in $OPS; do
        if [[ ($op == write && $dir == fwd) || ($op == read && $dir == rev) ]]; then
            for bs in $SIZES; do echo -e "iperf3\t$op\t$bs\t$run\t$gbps" >>"$OUT/results.tsv"; done
        fi
    done
    log "run $run iperf3 -P $LANES $dir: $gbps GB/s"
}

# --- the transfer benches --------------------------------------------------------------------
batch_for() {
    local b=$((BUF / ($1 * THREADS)))
    ((b > BATCH)) && b=$BATCH
    ((b < 1)) && b=1
    echo "$b"
}

# measure IMPL BIN OP BS RUN: a target in A, an initiator in B; appends a TSV row.
measure() {
    local impl=$1 bin=$2 op=$3 bs=$4 run=$5 batch tlog ilog tpid seg i rc=0 gbps
    batch=$(batch_for "$bs")
    ilog=$OUT/${impl}_${op}_${bs}_run$run.log
    tlog=$ilog.target
    timeout -k 5 "$LIMIT" ip netns exec "$NS_A" env MC_TCP_LANES_PER_PEER="$LANES" "$bin" --mode=target \
        --metadata_server=P2PHANDSHAKE --local_server_name="$IP_A" --protocol=tcp --buffer_size="$BUF" >"$tlog" 2>&1 &
    tpid=$!
    PIDS+=("$tpid")
    seg=
    for ((i = 0; i < 150; i++)); do
        seg=$(grep -o "listening on $IP_A:[0-9]*" "$tlog" 2>/dev/null | head -n 1 | cut -d' ' -f3 || true)
        [[ -n $seg ]] && break
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $seg ]]; then
        log "$impl target printed no 'listening on' line (see $tlog)"
        stop_pid "$tpid"
        forget_pid "$tpid"
        echo -e "$impl\t$op\t$bs\t$run\tNA" >>"$OUT/results.tsv"
        return
    fi
    sleep 0.5 # Mooncake's target prints the line before it registers its buffer
    timeout -k 5 "$LIMIT" ip netns exec "$NS_B" env MC_TCP_LANES_PER_PEER="$LANES" "$bin" --mode=initiator \
        --metadata_server=P2PHANDSHAKE --local_server_name="$IP_B" --protocol=tcp --segment_id="$seg" \
        --operation="$op" --block_size="$bs" --batch_size="$batch" --threads="$THREADS" \
        --duration="$DURATION" --buffer_size="$BUF" --report_unit=GB --report_precision=4 >"$ilog" 2>&1 || rc=$?
    stop_pid "$tpid"
    forget_pid "$tpid"
    gbps=$(sed -n 's/.*Test completed: duration [0-9.]*, batch count [0-9]*, throughput \([0-9.]*\) GB\/s.*/\1/p' "$ilog" | head -n 1)
    if [[ $rc -ne 0 || -z $gbps ]]; then
        log "$impl $op bs=$bs run $run failed (rc $rc), see $ilog"
        gbps=NA
    fi
    echo -e "$impl\t$op\t$bs\t$run\t$gbps" >>"$OUT/results.tsv"
    log "run $run $op bs=$bs batch=$batch $impl: $gbps GB/s"
}

: >"$OUT/results.tsv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS
for ((run = 1; run <= RUNS; run++)); do
    iperf3_point fwd "$run"
    iperf3_point rev "$run"
    for op in $OPS; do
        for bs in $SIZES; do
            if [[ $WHEEL != 1 ]]; then
                measure ours "$OURS" "$op" "$bs" "$run"
            elif ((run % 2)); then
                measure ours "$OURS" "$op" "$bs" "$run"
                measure mooncake "$WHEEL_BENCH" "$op" "$bs" "$run"
            else
                measure mooncake "$WHEEL_BENCH" "$op" "$bs" "$run"
                measure ours "$OURS" "$op" "$bs" "$run"
            fi
        done
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

human() {
    local b=$1
    if ((b >= 1048576 && b % 1048576 == 0)); then echo "$((b / 1048576)) MiB"; else echo "$((b / 1024)) KiB"; fi
}

echo "### Two hosts (network namespaces, veth, MTU $MTU): mooncake-bench vs iperf3 -P $LANES vs Mooncake's transfer_engine_bench"
echo
echo "$RUNS runs of ${DURATION} s per point, threads=$THREADS, $(nproc) cores, load average $load_start at the start and $load_end at the end, $((SECONDS - started)) s in all."
echo "Cells: median (min-max) over the runs; GB/s = 1e9 bytes/s; ratios paired per run. iperf3 for write = forward (B -> A), for read = reverse (-R: A -> B)."
echo
echo "| op | block | batch | iperf3 -P $LANES GB/s | ours GB/s | Mooncake GB/s | ours / iperf3 | ours / Mooncake |"
echo "|---|---|---|---|---|---|---|---|"
for op in $OPS; do
    for bs in $SIZES; do
        awk -F'\t' -v op="$op" -v bs="$bs" -v label="$(human "$bs")" -v batch="$(batch_for "$bs")" '
            function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
            function med(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
            function cell(a, n, f) { if (n == 0) return "n/a"; sort(a, n); return sprintf(f " (" f "-" f ")", med(a, n), a[1], a[n]) }
            $2 == op && $3 == bs { runs[$4] = 1; if ($5 != "NA") { v[$1, $4] = $5 + 0; seen[$1, $4] = 1 } }
            END {
                for (r in runs) {
                    if ((("iperf3", r) in seen)) p[++np] = v["iperf3", r]
                    if ((("ours", r) in seen)) o[++no] = v["ours", r]
                    if ((("mooncake", r) in seen)) m[++nm] = v["mooncake", r]
                    if ((("ours", r) in seen) && (("iperf3", r) in seen) && v["iperf3", r] > 0) qi[++ni] = v["ours", r] / v["iperf3", r]
                    if ((("ours", r) in seen) && (("mooncake", r) in seen) && v["mooncake", r] > 0) qm[++nq] = v["ours", r] / v["mooncake", r]
                }
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", op, label, batch, cell(p, np, "%.2f"), cell(o, no, "%.2f"), cell(m, nm, "%.2f"), cell(qi, ni, "%.2f"), cell(qm, nq, "%.2f")
            }' "$OUT/results.tsv"
    done
done
echo
log "raw results: $OUT/results.tsv (impl op block run GB/s)"
