#!/usr/bin/env bash
# The test command (README.md): installs what is missing, checks formatting and lints, builds
# the release library, runs every Rust test (unit, C ABI, interop with Mooncake's wheel,
# network namespaces, leaks), the etcd/redis features against real servers, the RDMA tests in
# a soft-RoCE guest (ci/test-rdma.sh), then the C/C++
# examples and ABI checks, the packaging (ci/install.sh into a prefix; the examples built from
# it with CMake and pkg-config), the Python package, and the C examples and Python suites
# behind each metadata service (ci/test-metadata.sh).
# MOONCAKE_SKIP_SETUP=1 skips ci/setup.sh (for a machine that has everything).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

if [ -z "${MOONCAKE_SKIP_SETUP:-}" ]; then
  step "setup"
  bash ci/setup.sh
fi

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --release --all-targets -- -D warnings
step "cargo check without the rdma feature"
CARGO_TARGET_DIR=$PWD/target/no-rdma cargo check --release --no-default-features --all-targets
step "cargo build --release"
cargo build --release
# The default build links no etcd or redis client (they are cargo features).
deps=$(cargo tree -e normal --prefix none)
if grep -E '^(etcd-client|redis|tonic) ' <<<"$deps"; then echo "FAIL: the default build depends on the above"; exit 1; fi

# In CI every peer must be there: a missing wheel or namespace support fails instead of skipping.
export MOONCAKE_REQUIRE_WHEEL=1
if [ "$(id -u)" = 0 ]; then export MOONCAKE_REQUIRE_NETNS=1; fi
export RUST_BACKTRACE=1
step "cargo test --release"
cargo test --release -- --test-threads="${MOONCAKE_TEST_THREADS:-2}"

# The etcd and redis backends (cargo features) against real servers, in a target dir of their
# own so that target/release stays the default build the C and packaging checks use. protoc
# comes from the vendored crate (ci/protoc-env.sh) unless PROTOC and PROTOC_INCLUDE are set.
step "cargo clippy + test --features etcd,redis (real etcd and redis servers)"
source ci/protoc-env.sh
export MOONCAKE_FEATURES_TARGET=$PWD/target/features
CARGO_TARGET_DIR=$MOONCAKE_FEATURES_TARGET cargo clippy --release --features etcd,redis --all-targets -- -D warnings
MOONCAKE_REQUIRE_SERVERS=1 CARGO_TARGET_DIR=$MOONCAKE_FEATURES_TARGET \
  cargo test --release --features etcd,redis --lib --test metadata_backends --test metadata_http \
  -- --test-threads="${MOONCAKE_TEST_THREADS:-2}"

step "RDMA in the soft-RoCE guest (two NICs, two NUMA nodes)"
MOONCAKE_REQUIRE_RDMA=1 bash ci/test-rdma.sh

step "C and C++ programs"
bash ci/test-c.sh target/release include

step "packaging: install, CMake, pkg-config"
bash ci/test-packaging.sh target/release

step "Python package: pip install, pytest, offline wheel, no RDMA/NUMA libraries"
bash ci/test-python.sh

step "C examples and Python suites behind HTTP, etcd and redis metadata servers"
MOONCAKE_METADATA_FEATURES=1 MOONCAKE_REQUIRE_SERVERS=1 bash ci/test-metadata.sh

step "all tests passed"
