#!/usr/bin/env bash
# The RDMA transport on real verbs: builds tests/rdma_guest.rs on this machine, boots the
# soft-RoCE QEMU guest of tools/rdma-vm (two rxe NICs, two NUMA nodes) and runs the test
# binary there (see tests/rdma_guest.rs and tools/rdma-vm/README.md). As root it first runs
# tools/rdma-vm/setup.sh (packages, Debian's kernel, the initramfs; quick once done). Without
# root the guest must have been set up already; if it was not, the run is skipped, or fails
# when MOONCAKE_REQUIRE_RDMA=1 (CI). The test with Mooncake's wheel as the RDMA peer takes the
# venv of ci/setup-wheel.sh; MOONCAKE_REQUIRE_WHEEL=1 (CI) makes its absence a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

vm=$PWD/tools/rdma-vm
if [ "$(id -u)" = 0 ]; then
  bash "$vm/setup.sh"
elif [ ! -f "${MOONCAKE_RDMA_VM_CACHE:-/var/tmp/mooncake-rdma-vm}/current" ]; then
  echo "ci/test-rdma.sh: the rdma-vm guest is not set up and setting it up needs root (sudo $vm/setup.sh)"
  if [ -n "${MOONCAKE_REQUIRE_RDMA:-}" ]; then exit 1; fi
  echo "ci/test-rdma.sh: skipped"; exit 0
fi

# The Python test in the guest loads target/release/libmooncake.so.
cargo build --release --lib
bin=$(cargo test --release --test rdma_guest --no-run --message-format=json 2>/dev/null \
  | grep '"name":"rdma_guest"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "ci/test-rdma.sh: no rdma_guest test binary"; exit 1; }
# The tests exist only where the RDMA transport is compiled in (cfg rdma_transport, build.rs):
# an empty binary would pass in the guest without testing anything.
n=$("$bin" --list 2>/dev/null | grep -c ': test$' || true)
[ "$n" -gt 1 ] || { echo "ci/test-rdma.sh: $bin has no tests (is the RDMA transport compiled in?)"; exit 1; }
echo "ci/test-rdma.sh: $bin in the guest"
# A short rail pause lets the failover test see a NIC come back within seconds.
MC_RDMA_RAIL_PAUSE_SECONDS=1 MOONCAKE_REQUIRE_RDMA=1 RUST_LOG=${RUST_LOG:-mooncake=warn} \
  "$vm/run.sh" --nics 2 --numa 2 --cpus 2 --mem 2G --timeout 900 "$bin" --test-threads=1
