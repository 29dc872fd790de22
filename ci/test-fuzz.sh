#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz, nightly) and runs each for a short time on its
# committed corpus (fuzz/corpus/<target>/). A crash, a panic, a leak of the input's memory cap or
# a hang fails the step and leaves the input in $MOONCAKE_FUZZ_WORK/artifacts/<target>/.
# The long campaign is not run here: docs/RELIABILITY.md records it and its commands.
#
#   MOONCAKE_FUZZ_SECONDS   seconds per target (default 8; 10 targets)
#   MOONCAKE_FUZZ_WORK      scratch directory (default ci/.work/fuzz): the corpus copies that
#                           grow during the run, and the artifacts; the committed corpus is only
#                           read
#
# Needs nightly (-Zsanitizer flags, coverage instrumentation). Where rustup cannot fetch it
# (static.rust-lang.org is not one of the registries every CI machine is promised), the step
# says SKIP, as the rust-version check of ci/test.sh does; where nightly is there the targets
# must build and run clean. cargo-fuzz comes from crates.io, pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${MOONCAKE_FUZZ_SECONDS:-8}
work=${MOONCAKE_FUZZ_WORK:-$PWD/ci/.work/fuzz}
start=$(date +%s)

if ! cargo +nightly --version >/dev/null 2>&1; then
  if ! timeout 180 rustup toolchain install nightly --profile minimal; then
    echo "SKIP: rustup could not fetch a nightly toolchain here; the fuzz targets did not run"
    exit 0
  fi
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

# No sanitizer: every decoder the targets drive is safe Rust (none of their files holds
# `unsafe`), so what can go wrong is a panic, an abort, unbounded memory or a hang, which
# libFuzzer catches without one; ASan would only slow the build and each run by half.
flags=(-s none)
targets=$(cargo +nightly fuzz list --fuzz-dir fuzz)
cargo +nightly fuzz build "${flags[@]}" --fuzz-dir fuzz
built=$(date +%s)

rm -rf "$work"
mkdir -p "$work"
for t in $targets; do
  [ -d "fuzz/corpus/$t" ] || { echo "FAIL: fuzz/corpus/$t is missing"; exit 1; }
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  echo "== fuzz $t (${seconds}s)"
  # New inputs go into the first (scratch) directory; the committed corpus is the second.
  if ! cargo +nightly fuzz run "${flags[@]}" --fuzz-dir fuzz "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 2>"$work/$t.log"; then
    tail -n 60 "$work/$t.log"
    echo "FAIL: fuzz target $t; its input: $(ls "$work/artifacts/$t/")"
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^Done ' "$work/$t.log" | tr '\n' ' '
  echo
done
end=$(date +%s)
echo "fuzz: build $((built - start)) s, runs $((end - built)) s, total $((end - start)) s"
