#!/usr/bin/env bash
# The Python API side by side: ../shared/bench/te_bench.py, unchanged, under Mooncake's wheel
# and under our package, interleaved, RUNS times each (default 3), DURATION s per point
# (default 1). Results: $OUT/{wheel,ours}-<run>.json (default OUT=/tmp/tecmp), te_bench.py's
# own schema; docs/PERFORMANCE.md shows how they were summarised (median per point, ratio per
# run). Interpreters: OURS_PY (default target/python-tests/venv/bin/python, made by
# ci/test-python.sh) and WHEEL_PY (default the venv of ci/setup-wheel.sh); both need numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
OURS_PY=${OURS_PY:-$PWD/target/python-tests/venv/bin/python}
WHEEL_PY=${WHEEL_PY:-${ANCHOR_HOME:-$HOME/.cache/mooncake-anchor}/venv/bin/python}
TE_BENCH=${TE_BENCH:-$PWD/../shared/bench/te_bench.py}
OUT=${OUT:-/tmp/tecmp}
RUNS=${RUNS:-3}
DURATION=${DURATION:-1}
mkdir -p "$OUT"
for i in $(seq 1 "$RUNS"); do
  for impl in wheel ours; do
    py=$WHEEL_PY
    [ "$impl" = ours ] && py=$OURS_PY
    echo "run $i: $impl" >&2
    (cd "$OUT" && timeout 900 "$py" "$TE_BENCH" --duration "$DURATION" --out "$OUT/$impl-$i.json" >/dev/null 2>"$OUT/$impl-$i.err")
  done
done
echo "results in $OUT" >&2
