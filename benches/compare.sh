#!/usr/bin/env bash
# Side-by-side: our `mooncake-bench` against the `transfer_engine_bench` of Mooncake's published
# wheel, same machine, same session, 127.0.0.1, P2P handshake. Mooncake always uses tcp (it has
# no same-host path); ours uses PROTOCOL (tcp by default; shm for the same-host transport).
#
# For each (run, operation, block size) point, each implementation runs as two processes of its
# own: a target (fresh per point, stopped by PID with SIGTERM) and an initiator with the same
# flags. The two implementations alternate within every point, and which one goes first flips
# from run to run, so machine drift hits both alike. Both print Mooncake's line
# "Test completed: duration D, batch count N, throughput X GB/s" (X = N * batch * block / D,
# GB = 1e9 bytes), which is what is compared. After the timed runs, a verify phase runs our
# initiator with --verify (write a pattern, read it back, compare) once per point against our
# target and against the wheel's target.
#
# Output on stdout: a Markdown table (ours GB/s, Mooncake GB/s, ratio ours/Mooncake: median and
# min-max over the runs; the ratio is taken per run, pairing the two measurements of that run),
# a CPU table (CPU seconds of target + initiator, as busy cores and per GB moved: medians), then
# the verify lines. Raw logs and a TSV of every measurement go to $OUT.
#
# Knobs (environment variables):
#   RUNS=3                     runs per point (3 is the minimum on a noisy VM)
#   DURATION=3                 seconds per measurement (whole seconds: Mooncake's flag is int32)
#   SIZES="4096 65536 1048576 16777216"   block sizes in bytes
#   OPS="write read"           operations
#   THREADS=1                  --threads for both
#   BATCH=128                  --batch_size; lowered to BUF_MIB MiB / (block * threads) as
#                              te_cpp_bench.py does (16 for 16 MiB with the defaults)
#   BUF_MIB=256                --buffer_size of targets and initiators, in MiB
#   VERIFY=1                   0 skips the verify phase
#   WHEEL_BENCH=path           the wheel's transfer_engine_bench; else found through the
#                              wheel's python: MOONCAKE_WHEEL_PYTHON, $ANCHOR_HOME/venv/bin/python
#                              or ~/.cache/mooncake-anchor/venv/bin/python
#   PROTOCOL=tcp               our --protocol: tcp (tcp only), shm (same-host transport, an
#                              error if not permitted) or auto; the wheel always gets tcp
#   MEMCPY=0                   1 also measures a single-thread memcpy of the same blocks
#                              (benches/memcpy_ref.c, built with cc) in every point and adds a
#                              table of ours / memcpy
#   OUT=dir                    where logs go (default: a new /tmp/mooncake-compare.XXXXXX)
#   CARGO=cargo                cargo command; the script runs `cargo build --release` first
#   NO_BUILD=1                 skip the build (use target/release/mooncake-bench as it is)
#   OURS_FLAGS="..."           extra flags for our initiator only (e.g. --poll_yield); the
#                              table header shows them
#   TIME=/usr/bin/time         GNU time, for the initiator's CPU seconds (the target's are read
#                              from /proc/PID/stat before it is stopped); without it the CPU
#                              table shows n/a for the initiator
#
# Example: RUNS=5 DURATION=3 benches/compare.sh > /tmp/compare.md
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
SIZES=${SIZES:-"4096 65536 1048576 16777216"}
OPS=${OPS:-"write read"}
THREADS=${THREADS:-1}
BATCH=${BATCH:-128}
BUF_MIB=${BUF_MIB:-256}
VERIFY=${VERIFY:-1}
CARGO=${CARGO:-cargo}
TIME=${TIME:-/usr/bin/time}
read -r -a OURS_EXTRA <<<"${OURS_FLAGS:-}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/mooncake-compare.XXXXXX)}
mkdir -p "$OUT"
BUF=$((BUF_MIB * 1024 * 1024))
PROTOCOL=${PROTOCOL:-tcp}
MEMCPY=${MEMCPY:-0}
COMMON=(--metadata_server=P2PHANDSHAKE --local_server_name=127.0.0.1)
proto_for() { [[ $1 == ours ]] && echo "--protocol=$PROTOCOL" || echo "--protocol=tcp"; }

log() { echo "[compare] $*" >&2; }

if [[ -z "${NO_BUILD:-}" ]]; then
    log "cargo build --release"
    (cd "$ROOT" && $CARGO build --release --bin mooncake-bench >&2)
fi
OURS="${CARGO_TARGET_DIR:-$ROOT/target}/release/mooncake-bench"
[[ -x "$OURS" ]] || { echo "no $OURS" >&2; exit 1; }

if [[ -z "${WHEEL_BENCH:-}" ]]; then
    PY=${MOONCAKE_WHEEL_PYTHON:-${ANCHOR_HOME:-$HOME/.cache/mooncake-anchor}/venv/bin/python}
    [[ -x "$PY" ]] || { echo "no wheel python at $PY (set MOONCAKE_WHEEL_PYTHON or WHEEL_BENCH)" >&2; exit 1; }
    WHEEL_BENCH="$("$PY" -c 'import mooncake, os; print(os.path.dirname(mooncake.__file__))')/transfer_engine_bench"
fi
[[ -x "$WHEEL_BENCH" ]] || { echo "no wheel bench at $WHEEL_BENCH" >&2; exit 1; }

# Targets still running when the script ends (by PID only).
TARGET_PIDS=()
cleanup() {
    for pid in "${TARGET_PIDS[@]}"; do
        stop_pid "$pid"
    done
}
trap cleanup EXIT

# SIGTERM, then up to 10 s for the process to end, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid ignored SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start_target BIN LOG [PROTOCOL-FLAG]: starts a target, sets TARGET_PID and SEGMENT.
start_target() {
    local bin=$1 tlog=$2 pflag=${3:---protocol=tcp} i
    "$bin" --mode=target "${COMMON[@]}" "$pflag" --buffer_size="$BUF" >"$tlog" 2>&1 &
    TARGET_PID=$!
    TARGET_PIDS+=("$TARGET_PID")
    SEGMENT=
    for i in $(seq 100); do
        SEGMENT=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$tlog" 2>/dev/null | head -1 | cut -d' ' -f3 || true)
        [[ -n "$SEGMENT" ]] && break
        sleep 0.1
    done
    if [[ -z "$SEGMENT" ]]; then
        log "target $bin printed no 'listening on' line:"; cat "$tlog" >&2
        return 1
    fi
    sleep 0.5  # Mooncake's target prints the line before it registers its buffer
}

end_target() {
    stop_pid "$TARGET_PID"
    local keep=() p
    for p in "${TARGET_PIDS[@]}"; do [[ "$p" != "$TARGET_PID" ]] && keep+=("$p"); done
    TARGET_PIDS=("${keep[@]+"${keep[@]}"}")
}

batch_for() {  # te_cpp_bench.py: max(1, min(BATCH, buf // (bs * threads)))
    local b=$((BUF / ($1 * THREADS)))
    ((b > BATCH)) && b=$BATCH
    ((b < 1)) && b=1
    echo "$b"
}

# CPU seconds (user + sys) a live process has used so far.
cpu_of_pid() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo NA
}

# measure IMPL BIN OP BS RUN: one target + one initiator; appends a TSV row:
# impl op block batch run GB/s duration initiator-CPU-s target-CPU-s initiator-wall-s
measure() {
    local impl=$1 bin=$2 op=$3 bs=$4 run=$5 batch ilog gbps dur rc cpu_i cpu_t wall timer=() extra=()
    batch=$(batch_for "$bs")
    ilog="$OUT/${impl}_${op}_${bs}_run${run}.log"
    start_target "$bin" "$ilog.target" "$(proto_for "$impl")" || { echo -e "$impl\t$op\t$bs\t$batch\t$run\tNA\tNA\tNA\tNA\tNA" >>"$OUT/results.tsv"; return; }
    [[ -x "$TIME" ]] && timer=("$TIME" -f "cpu %U %S %e" -o "$ilog.cpu")
    [[ $impl == ours ]] && extra=("${OURS_EXTRA[@]+"${OURS_EXTRA[@]}"}")
    rc=0
    timeout $((DURATION + 60)) "${timer[@]}" "$bin" --mode=initiator "${COMMON[@]}" "$(proto_for "$impl")" --segment_id="$SEGMENT" \
        --operation="$op" --block_size="$bs" --batch_size="$batch" --threads="$THREADS" \
        --duration="$DURATION" --buffer_size="$BUF" --report_unit=GB --report_precision=4 \
        "${extra[@]+"${extra[@]}"}" >"$ilog" 2>&1 || rc=$?
    cpu_t=$(cpu_of_pid "$TARGET_PID")
    end_target
    cpu_i=$(awk '/^cpu / { printf "%.2f", $2 + $3 }' "$ilog.cpu" 2>/dev/null || true)
    wall=$(awk '/^cpu / { printf "%.2f", $4 }' "$ilog.cpu" 2>/dev/null || true)
    [[ -n "$cpu_i" ]] || cpu_i=NA
    [[ -n "$wall" ]] || wall=NA
    gbps=$(sed -n 's/.*Test completed: duration [0-9.]*, batch count [0-9]*, throughput \([0-9.]*\) GB\/s.*/\1/p' "$ilog" | head -1)
    dur=$(sed -n 's/.*Test completed: duration \([0-9.]*\), batch count.*/\1/p' "$ilog" | head -1)
    if [[ $rc -ne 0 || -z "$gbps" ]]; then
        log "$impl $op bs=$bs run $run failed (rc $rc), see $ilog"
        gbps=NA
        dur=NA
    fi
    echo -e "$impl\t$op\t$bs\t$batch\t$run\t$gbps\t$dur\t$cpu_i\t$cpu_t\t$wall" >>"$OUT/results.tsv"
    log "run $run $op bs=$bs batch=$batch $impl: $gbps GB/s, CPU s initiator $cpu_i target $cpu_t"
}

: >"$OUT/results.tsv"
log "ours: $OURS (--protocol=$PROTOCOL); wheel: $WHEEL_BENCH (--protocol=tcp); logs: $OUT"
if [[ "$MEMCPY" == 1 ]]; then
    cc -O2 -o "$OUT/memcpy_ref" "$ROOT/benches/memcpy_ref.c"
fi
# memcpy_point OP BS RUN: one single-thread memcpy measurement; appends a TSV row like measure.
memcpy_point() {
    local op=$1 bs=$2 run=$3 line gbps
    line=$("$OUT/memcpy_ref" "$bs" "$BUF" "$DURATION")
    gbps=$(sed -n 's/.*throughput \([0-9.]*\) GB\/s.*/\1/p' <<<"$line")
    echo -e "memcpy\t$op\t$bs\t$(batch_for "$bs")\t$run\t${gbps:-NA}\tNA\tNA\tNA\tNA" >>"$OUT/results.tsv"
    log "run $run $op bs=$bs memcpy: ${gbps:-NA} GB/s"
}
for run in $(seq "$RUNS"); do
    for op in $OPS; do
        for bs in $SIZES; do
            if ((run % 2)); then
                measure ours "$OURS" "$op" "$bs" "$run"
                measure mooncake "$WHEEL_BENCH" "$op" "$bs" "$run"
            else
                measure mooncake "$WHEEL_BENCH" "$op" "$bs" "$run"
                measure ours "$OURS" "$op" "$bs" "$run"
            fi
            if [[ "$MEMCPY" == 1 ]]; then memcpy_point "$op" "$bs" "$run"; fi
        done
    done
done

human() {
    local b=$1
    if ((b >= 1048576 && b % 1048576 == 0)); then echo "$((b / 1048576)) MiB"
    elif ((b >= 1024 && b % 1024 == 0)); then echo "$((b / 1024)) KiB"
    else echo "$b B"; fi
}

echo "### mooncake-bench --protocol=$PROTOCOL${OURS_FLAGS:+ ($OURS_FLAGS)} vs Mooncake transfer_engine_bench (tcp, 127.0.0.1, threads=$THREADS, ${DURATION} s per run, $RUNS runs)"
echo
echo "Cells: median (min-max) over the runs. GB/s = 1e9 bytes/s. ratio = ours / Mooncake, paired per run."
echo
echo "| op | block | batch | ours GB/s | Mooncake GB/s | ratio |"
echo "|---|---|---|---|---|---|"
for op in $OPS; do
    for bs in $SIZES; do
        awk -F'\t' -v op="$op" -v bs="$bs" -v label="$(human "$bs")" '
            function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
            function med(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
            function cell(a, n, f) { if (n == 0) return "n/a"; sort(a, n); return sprintf(f " (" f "-" f ")", med(a, n), a[1], a[n]) }
            $2 == op && $3 == bs { batch = $4; if ($6 != "NA") { v[$1, $5] = $6 + 0; seen[$1, $5] = 1 } ; runs[$5] = 1 }
            END {
                no = nm = nr = 0
                for (r in runs) {
                    if ((("ours", r) in seen)) o[++no] = v["ours", r]
                    if ((("mooncake", r) in seen)) m[++nm] = v["mooncake", r]
                    if ((("ours", r) in seen) && (("mooncake", r) in seen) && v["mooncake", r] > 0) q[++nr] = v["ours", r] / v["mooncake", r]
                }
                printf "| %s | %s | %s | %s | %s | %s |\n", op, label, batch, cell(o, no, "%.3f"), cell(m, nm, "%.3f"), cell(q, nr, "%.2f")
            }' "$OUT/results.tsv"
    done
done
echo

if [[ "$MEMCPY" == 1 ]]; then
    echo "Against a single-thread memcpy of the same blocks over the same buffer size in the same run (benches/memcpy_ref.c): ratio = ours / memcpy, paired per run."
    echo
    echo "| op | block | ours GB/s | memcpy GB/s | ours / memcpy | Blocks/s ours | Blocks/s Mooncake |"
    echo "|---|---|---|---|---|---|---|"
    for op in $OPS; do
        for bs in $SIZES; do
            awk -F'\t' -v op="$op" -v bs="$bs" -v label="$(human "$bs")" '
                function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
                function med(a, n) { if (n == 0) return "n/a"; sort(a, n); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
                $2 == op && $3 == bs { if ($6 != "NA") { v[$1, $5] = $6 + 0; seen[$1, $5] = 1 }; runs[$5] = 1 }
                END {
                    for (r in runs) {
                        if ((("ours", r) in seen)) o[++no] = v["ours", r]
                        if ((("mooncake", r) in seen)) mk[++nk] = v["mooncake", r]
                        if ((("memcpy", r) in seen)) m[++nm] = v["memcpy", r]
                        if ((("ours", r) in seen) && (("memcpy", r) in seen) && v["memcpy", r] > 0) q[++nq] = v["ours", r] / v["memcpy", r]
                    }
                    mo = med(o, no); mm = med(m, nm); mq = med(q, nq); mmk = med(mk, nk)
                    printf "| %s | %s | %s | %s | %s | %s | %s |\n", op, label, (no ? sprintf("%.3f", mo) : "n/a"), (nm ? sprintf("%.3f", mm) : "n/a"), (nq ? sprintf("%.2f", mq) : "n/a"), (no ? sprintf("%.0f", mo * 1e9 / bs) : "n/a"), (nk ? sprintf("%.0f", mmk * 1e9 / bs) : "n/a")
                }' "$OUT/results.tsv"
        done
    done
    echo
fi

echo "CPU (user + sys of the target and initiator processes over the initiator's whole life, set-up included; medians over the runs): busy cores = CPU s / initiator wall time (this machine has $(nproc)); CPU s per GB = CPU s / GB moved in the timed run."
echo
echo "| op | block | ours busy cores | Mooncake busy cores | ours CPU s/GB | Mooncake CPU s/GB |"
echo "|---|---|---|---|---|---|"
for op in $OPS; do
    for bs in $SIZES; do
        awk -F'\t' -v op="$op" -v bs="$bs" -v label="$(human "$bs")" '
            function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
            function med(a, n) { if (n == 0) return "n/a"; sort(a, n); return sprintf("%.2f", n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) }
            $2 == op && $3 == bs && $6 != "NA" && $8 != "NA" && $9 != "NA" && $10 != "NA" && $10 > 0 && $6 > 0 {
                cpu = $8 + $9
                if ($1 == "ours") { oc[++no] = cpu / $10; og[no] = cpu / ($6 * $7) }
                else { mc[++nm] = cpu / $10; mg[nm] = cpu / ($6 * $7) }
            }
            END { printf "| %s | %s | %s | %s | %s | %s |\n", op, label, med(oc, no), med(mc, nm), med(og, no), med(mg, nm) }' "$OUT/results.tsv"
    done
done
echo

if [[ "$VERIFY" == 1 ]]; then
    echo "Verify phase (our initiator with --verify, 1 s each; every block of the run written, read back into zeroed memory, compared):"
    echo
    vfail=0
    for tgt in ours mooncake; do
        [[ $tgt == ours ]] && tbin=$OURS || tbin=$WHEEL_BENCH
        for op in $OPS; do
            for bs in $SIZES; do
                batch=$(batch_for "$bs")
                vlog="$OUT/verify_${tgt}_${op}_${bs}.log"
                start_target "$tbin" "$vlog.target" "$(proto_for "$tgt")" || { vfail=1; continue; }
                # Towards the wheel's target the same-host path is not offered: shm would refuse.
                vproto="--protocol=$PROTOCOL"
                [[ $tgt == mooncake && $PROTOCOL == shm ]] && vproto=--protocol=auto
                rc=0
                timeout 120 "$OURS" --mode=initiator "${COMMON[@]}" "$vproto" --segment_id="$SEGMENT" --operation="$op" \
                    --block_size="$bs" --batch_size="$batch" --threads="$THREADS" --duration=1 \
                    --buffer_size="$BUF" --verify >"$vlog" 2>&1 || rc=$?
                end_target
                line=$(grep -m1 '^verify:' "$vlog" || echo "verify: no result (rc $rc)")
                [[ $rc -eq 0 && "$line" == "verify: ok"* ]] || vfail=1
                echo "- ours -> $tgt target, $op $(human "$bs") x $batch: ${line#verify: } (exit $rc)"
            done
        done
    done
    echo
    [[ $vfail -eq 0 ]] && echo "All verify passes matched." || echo "SOME VERIFY PASSES FAILED (logs in $OUT)."
fi
log "raw results: $OUT/results.tsv"
