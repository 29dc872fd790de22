#!/usr/bin/env bash
# The long fuzz campaign (not part of CI): each target in turn, one process (libFuzzer's
# default: no -jobs, no -fork), at the lowest priority, up to RUNS executions or its share of the time left before END (epoch
# seconds; default: 45 min from now), starting from the committed corpus (fuzz/corpus/<t>,
# only read) plus a scratch corpus that keeps what it finds (WORK/corpus/<t>). Logs and any
# crashing input go to WORK. Prints one line per target for docs/RELIABILITY.md.
#   fuzz/campaign.sh [targets...]     RUNS=10000000 END=<epoch> WORK=/tmp/mooncake-fuzz
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
END=${END:-$(($(date +%s) + 2700))}
WORK=${WORK:-/tmp/mooncake-fuzz}
bin=target/x86_64-unknown-linux-gnu/release
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tcp_header tcp_frame topology_matrix rdma_handshake handshake_frame
  master_proto dummy_proto segment_descriptor http_metadata gflags)
left=${#targets[@]}
for t in "${targets[@]}"; do
  now=$(date +%s)
  share=$(((END - now) / left))
  [ "$share" -ge 30 ] || share=30
  mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
  start=$(date +%s)
  rc=0
  nice -n 19 "$bin/$t" -runs="$RUNS" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$WORK/artifacts/$t/" \
    "$WORK/corpus/$t" "corpus/$t" >"$WORK/$t.log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log")
  last=$(grep -E '^#[0-9]+' "$WORK/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  echo "$t rc=$rc execs=${execs:-?} seconds=$secs $last crashes=$(ls "$WORK/artifacts/$t" | wc -l) limit=${share}s"
  left=$((left - 1))
done
