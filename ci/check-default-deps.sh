#!/usr/bin/env bash
# Usage: ci/check-default-deps.sh
#
# The default build (features `default`, which include `rdma`) must need no system headers
# and no libclang: this fails when its normal or build dependencies include a crate that
# runs bindgen, loads libclang or asks pkg-config for system libraries. The `rdma` feature's
# verbs bindings are committed instead (see ci/check-verbs-bindings.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
forbidden='bindgen|clang-sys|pkg-config|rdma-sys'

crates=$(cargo tree --locked --manifest-path "$root/Cargo.toml" -e normal,build --prefix none | awk '{print $1}' | sort -u)
found=$(grep -E -x "$forbidden" <<<"$crates" || true)
if [ -n "$found" ]; then
  echo "check-default-deps: FAILED: the default features depend on: $(echo $found)" >&2
  for c in $found; do
    cargo tree --locked --manifest-path "$root/Cargo.toml" -e normal,build -i "$c" >&2 || true
  done
  exit 1
fi
echo "check-default-deps: OK: no ${forbidden//|/, } among the default features' $(wc -l <<<"$crates") normal and build dependencies"
