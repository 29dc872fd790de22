#!/usr/bin/env bash
# The shipped libraries hold none of the fake verbs device (src/transport/rdma/fake.rs, test
# scaffolding behind the `rdma-fake` feature). Usage: ci/check-no-fake-verbs.sh [DIR]
# (default target/release), after `cargo build --release --lib`.
#
# The shared library's linker drops what its exports cannot reach, so the fake would be absent
# from libmooncake.so even with the feature on; libmooncake.a (installed by ci/install.sh)
# keeps every item the crate compiled, and is where a build with the feature shows it. Both
# are read, with their full symbol tables (`nm`, demangled) and the .so's exports (`nm -D`).
set -euo pipefail
dir=${1:-target/release}
pattern='mooncake::transport::rdma::fake::'
fail=0
for lib in "$dir/libmooncake.so" "$dir/libmooncake.a"; do
  [ -f "$lib" ] || { echo "FAIL: $lib not found (cargo build --release --lib)"; exit 1; }
  syms=$(nm -C "$lib" 2>/dev/null || true)
  # A stripped library would pass the check below without proving anything.
  grep -q 'mooncake::engine::' <<<"$syms" || { echo "FAIL: $lib has no symbol table to check"; exit 1; }
  hits=$(grep -F "$pattern" <<<"$syms" || true)
  if [ -n "$hits" ]; then
    head -n 5 <<<"$hits"
    echo "FAIL: $lib holds the fake verbs device ($(wc -l <<<"$hits") symbols; built with the rdma-fake feature?)"
    fail=1
  fi
done
if nm -D -C --defined-only "$dir/libmooncake.so" | grep -iF 'fake'; then
  echo "FAIL: $dir/libmooncake.so exports the above"
  fail=1
fi
[ "$fail" = 0 ] && echo "no fake verbs device in $dir/libmooncake.{so,a}"
exit "$fail"
