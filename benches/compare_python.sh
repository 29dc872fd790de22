#!/usr/bin/env bash
# The Python API side by side: benches/te_bench.py, unchanged, under Mooncake's wheel
# and under our package, interleaved, RUNS times each (default 3), DURATION s per point
# (default 1). Results: $OUT/{wheel,ours}-<run>.json (default OUT=/tmp/tecmp), te_bench.py's
# own schema; on stdout, the Markdown table of docs/PERFORMANCE.md (median per point over the
# runs, ratio ours/Mooncake paired per run). Interpreters: OURS_PY (default target/python-tests/venv/bin/python, made by
# ci/test-python.sh) and WHEEL_PY (default the venv of ci/setup-wheel.sh); both need numpy.
# Ours from a checkout instead: OURS_PY=<python with numpy> PYTHONPATH=python
# MOONCAKE_LIB=target/release/libmooncake.so (the wheel's run drops PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
OURS_PY=${OURS_PY:-$PWD/target/python-tests/venv/bin/python}
WHEEL_PY=${WHEEL_PY:-${ANCHOR_HOME:-$HOME/.cache/mooncake-anchor}/venv/bin/python}
TE_BENCH=${TE_BENCH:-$PWD/benches/te_bench.py}
OUT=${OUT:-/tmp/tecmp}
RUNS=${RUNS:-3}
DURATION=${DURATION:-1}
mkdir -p "$OUT"
for i in $(seq 1 "$RUNS"); do
  for impl in wheel ours; do
    py=(env -u PYTHONPATH "$WHEEL_PY")   # a checkout of ours on PYTHONPATH must not hide the wheel
    [ "$impl" = ours ] && py=("$OURS_PY")
    echo "run $i: $impl" >&2
    (cd "$OUT" && timeout 900 "${py[@]}" "$TE_BENCH" --duration "$DURATION" --out "$OUT/$impl-$i.json" >/dev/null 2>"$OUT/$impl-$i.err")
  done
done
echo "results in $OUT" >&2
"$OURS_PY" - "$OUT" "$RUNS" <<'PYEOF'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
for impl in ("wheel", "ours"):
    for i in range(1, runs + 1):
        d = json.load(open(f"{out}/{impl}-{i}.json"))
        assert all(d["verify"].values()), (impl, i, d["verify"])
        for r in d["rows"]:
            rows.setdefault((r["scenario"], r["mode"], r["op"], r["block"]), {}).setdefault(impl, []).append(r)
size = {4096: "4 KiB", 65536: "64 KiB", 1048576: "1 MiB", 16777216: "16 MiB"}
print("| scenario | call | op | block | ours GB/s | Mooncake GB/s | ratio | ours p50 µs | Mooncake p50 µs |")
print("|---|---|---|---|---|---|---|---|---|")
for k in sorted(rows, key=lambda k: (k[0] != "remote", k[1] != "single", k[2] != "write", k[3])):
    o, w = rows[k]["ours"], rows[k]["wheel"]
    og, wg = [r["GBps"] for r in o], [r["GBps"] for r in w]
    ratios = [a / b for a, b in zip(og, wg)]
    call = k[1] if k[1] == "single" else f"batch{o[0]['batch']}"
    med = statistics.median
    print(f"| {k[0]} | {call} | {k[2]} | {size.get(k[3], k[3])} | {med(og):.3f} | {med(wg):.3f} | "
          f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
          f"{med([r['lat_p50_us'] for r in o]):.1f} | {med([r['lat_p50_us'] for r in w]):.1f} |")
PYEOF
