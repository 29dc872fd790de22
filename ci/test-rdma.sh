#!/usr/bin/env bash
# The RDMA transport on real verbs: builds tests/rdma_guest.rs on this machine, boots the
# soft-RoCE QEMU guest of the workplace's rdma-vm tool (two rxe NICs, two NUMA nodes) and runs
# the test binary there (see tests/rdma_guest.rs). The tool is found at $RDMA_VM_TOOL, else
# ../shared/tools/rdma-vm beside this checkout or beside /work/main. Root is needed (the
# tool's setup installs qemu and downloads Debian's kernel; the guest's tests use `ip link`).
# MOONCAKE_REQUIRE_RDMA=1 (CI) makes a missing tool a failure instead of a skip. The test with
# Mooncake's wheel as the RDMA peer takes the venv of ci/setup-wheel.sh (the guest sees the host's root
# filesystem, not other mounts such as a tmpfs /tmp); MOONCAKE_REQUIRE_WHEEL=1 (CI) makes its absence a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=${RDMA_VM_TOOL:-}
if [ -z "$tool" ]; then
  for t in "$PWD/../shared/tools/rdma-vm" /work/shared/tools/rdma-vm; do
    if [ -x "$t/run.sh" ]; then tool=$t; break; fi
  done
fi
if [ -z "$tool" ] || [ ! -x "$tool/run.sh" ]; then
  echo "ci/test-rdma.sh: the rdma-vm tool is not here (set RDMA_VM_TOOL)"
  if [ -n "${MOONCAKE_REQUIRE_RDMA:-}" ]; then exit 1; fi
  echo "ci/test-rdma.sh: skipped"; exit 0
fi

bash "$tool/setup.sh"
# The Python test in the guest loads target/release/libmooncake.so.
cargo build --release --lib
bin=$(cargo test --release --test rdma_guest --no-run --message-format=json 2>/dev/null \
  | grep '"name":"rdma_guest"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "ci/test-rdma.sh: no rdma_guest test binary"; exit 1; }
echo "ci/test-rdma.sh: $bin in the guest ($tool)"
# A short rail pause lets the failover test see a NIC come back within seconds.
MC_RDMA_RAIL_PAUSE_SECONDS=1 MOONCAKE_REQUIRE_RDMA=1 RUST_LOG=${RUST_LOG:-mooncake=warn} \
  "$tool/run.sh" --nics 2 --numa 2 --cpus 2 --mem 2G --timeout 900 "$bin" --test-threads=1
