#!/usr/bin/env bash
# The test command (README.md): installs what is missing, checks formatting and lints, builds
# the release library, runs every Rust test (unit, C ABI, interop with Mooncake's wheel,
# network namespaces, leaks), then the C/C++ examples and ABI checks, then the packaging
# (ci/install.sh into a prefix; the examples built from it with CMake and pkg-config).
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
step "cargo build --release"
cargo build --release

# In CI every peer must be there: a missing wheel or namespace support fails instead of skipping.
export MOONCAKE_REQUIRE_WHEEL=1
if [ "$(id -u)" = 0 ]; then export MOONCAKE_REQUIRE_NETNS=1; fi
export RUST_BACKTRACE=1
step "cargo test --release"
cargo test --release -- --test-threads="${MOONCAKE_TEST_THREADS:-2}"

step "C and C++ programs"
bash ci/test-c.sh target/release include

step "packaging: install, CMake, pkg-config"
bash ci/test-packaging.sh target/release

step "Python package: pip install, pytest, offline wheel, no RDMA/NUMA libraries"
bash ci/test-python.sh

step "all tests passed"
