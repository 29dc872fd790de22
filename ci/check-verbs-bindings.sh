#!/usr/bin/env bash
# Usage: ci/check-verbs-bindings.sh [--bless]
#
# The `rdma` feature builds from committed libibverbs bindings
# (src/transport/rdma/verbs/bindings.rs) so that building needs neither the verbs headers nor
# libclang. This regenerates them from the system's <infiniband/verbs.h> with
# tools/verbs-bindgen (bindgen, which loads libclang at run time; its own crate and target
# directory, never part of the library's dependencies) and diffs against the committed file;
# --bless writes the regenerated file over it instead.
#
# Without the headers (libibverbs-dev) or libclang (libclang-dev), or on a machine other than
# x86_64 (the bindings are x86_64's), it prints "skipped" and exits 0, unless
# MOONCAKE_REQUIRE_VERBS_HEADERS=1 (CI) makes that a failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
committed="$root/src/transport/rdma/verbs/bindings.rs"
header=/usr/include/infiniband/verbs.h

bless=0
case "${1:-}" in
  "") ;;
  --bless) bless=1 ;;
  *)
    echo "usage: $0 [--bless]" >&2
    exit 2
    ;;
esac

skip() {
  if [ "${MOONCAKE_REQUIRE_VERBS_HEADERS:-}" = 1 ] || [ "$bless" = 1 ]; then
    echo "check-verbs-bindings: FAILED: $1 (MOONCAKE_REQUIRE_VERBS_HEADERS=1 or --bless needs it)" >&2
    exit 1
  fi
  echo "check-verbs-bindings: skipped: $1"
  exit 0
}

[ "$(uname -m)" = x86_64 ] || skip "the committed bindings are x86_64's, this machine is $(uname -m)"
[ -f "$header" ] || skip "no $header (libibverbs-dev)"

# --locked: the generator's bindgen is the one its Cargo.lock pins, so the output is stable.
cargo build -q --release --locked --manifest-path "$root/tools/verbs-bindgen/Cargo.toml" \
  --target-dir "$root/target/verbs-bindgen"
gen="$root/target/verbs-bindgen/release/verbs-bindgen"

rc=0
clang=$("$gen" --probe) || rc=$?
if [ "$rc" = 3 ]; then
  skip "libclang cannot be loaded (libclang-dev; or set LIBCLANG_PATH)"
elif [ "$rc" != 0 ]; then
  echo "check-verbs-bindings: FAILED: verbs-bindgen --probe exited $rc" >&2
  exit 1
fi

tmp=$(mktemp /tmp/verbs-bindings.XXXXXX.rs)
trap 'rm -f "$tmp"' EXIT
"$gen" "$tmp"

if [ "$bless" = 1 ]; then
  if cmp -s "$tmp" "$committed"; then
    echo "check-verbs-bindings: $committed is already up to date ($clang)"
  else
    cp "$tmp" "$committed"
    echo "check-verbs-bindings: wrote $committed ($clang)"
  fi
  exit 0
fi

if ! diff -u --label "$committed (committed)" --label "regenerated from $header" "$committed" "$tmp"; then
  echo "check-verbs-bindings: FAILED: the committed bindings differ from what tools/verbs-bindgen makes of $header ($clang);" \
    "review the diff, then run: bash ci/check-verbs-bindings.sh --bless" >&2
  exit 1
fi
echo "check-verbs-bindings: OK: $committed matches $header ($clang)"
