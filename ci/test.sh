#!/usr/bin/env bash
# The test command (README.md): installs what is missing, checks that the repository stands
# alone and that the default build needs no system headers (the first release build runs with
# the verbs headers and libclang hidden) and holds no test scaffolding, formatting, lints, rustdoc
# and a check with Cargo.toml's rust-version, every Rust test (unit, C ABI,
# interop with Mooncake's wheel, network namespaces, leaks), the etcd/redis features against
# real servers, the RDMA tests in a soft-RoCE guest (ci/test-rdma.sh), the C/C++ examples and
# ABI checks, the packaging (ci/install.sh into a prefix; CMake and pkg-config), the Python
# package, the C examples and Python suites behind each metadata service, then the prebuilt
# wheels (ci/build-wheel.sh: tag, size, glibc floor, Mooncake's distribution names), the same
# wheels in a Debian 11 root, and the container image built and run with buildah.
# MOONCAKE_SKIP_SETUP=1 skips ci/setup.sh (for a machine that has everything).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

if [ -z "${MOONCAKE_SKIP_SETUP:-}" ]; then
  step "setup"
  bash ci/setup.sh
fi

# The Debian roots of the wheel and container tests wait mostly on Debian's archive: made in the
# background (cached under /var/tmp) while cargo works, waited for before those steps.
mkdir -p target/ci-logs
roots_log=$PWD/target/ci-logs/debootstrap.log
( bash ci/debootstrap.sh bullseye "${MOONCAKE_ROOTS:-/var/tmp/mooncake-roots}/bullseye" python3 python3-venv \
    && bash ci/debootstrap.sh --slim bookworm "${MOONCAKE_ROOTS:-/var/tmp/mooncake-roots}/bookworm-slim" ) \
  >"$roots_log" 2>&1 &
roots_pid=$!
trap 'kill "$roots_pid" 2>/dev/null || true' EXIT

step "the repository stands alone (no tracked file points outside it)"
bash ci/check-self-contained.sh
step "cargo fmt --check"
cargo fmt --all -- --check
step "the default features need no system headers or libclang"
bash ci/check-default-deps.sh
step "cargo build --release, with the verbs/rdmacm headers and libclang hidden"
# First build of a fresh clone: every build script runs here, so a default build that needed a
# system header would fail now (as on a machine with only a Rust toolchain and a C compiler).
if [ "$(id -u)" = 0 ]; then
  bash ci/without-system-headers.sh cargo build --release --lib --bins --examples
else
  echo "not root: building with the headers visible"
  cargo build --release --lib --bins --examples
fi
step "the release libraries hold no fake verbs device (feature rdma-fake is off)"
bash ci/check-no-fake-verbs.sh target/release
step "README.md's first command, verbatim"
cmd=$(sed -n '/^```sh$/,/^```$/p' README.md | sed -n 2p | sed 's/ *#.*//')
[ "$cmd" = "cargo run --release --example demo" ] || { echo "FAIL: README.md's first command is now: $cmd"; exit 1; }
timeout 300 $cmd
step "committed verbs bindings = bindgen over this machine's headers"
MOONCAKE_REQUIRE_VERBS_HEADERS=1 bash ci/check-verbs-bindings.sh

step "cargo clippy"
cargo clippy --release --all-targets -- -D warnings
# The fake verbs device outside cfg(test) and the benchmark that needs it (benches/rdma_slice.rs,
# required-features). Lints only: nothing here replaces target/release's libraries.
cargo clippy --release --lib --benches --features rdma-fake -- -D warnings
step "cargo check without the rdma feature"
CARGO_TARGET_DIR=$PWD/target/no-rdma cargo check --release --no-default-features --all-targets
step "cargo doc, rustdoc's warnings denied (broken intra-doc links and the like)"
# In the no-rdma target dir, whose dependencies the check above has just compiled in the release
# profile (a fresh dev-profile dir would check them all again: about 3 min instead of 40 s).
RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR=$PWD/target/no-rdma cargo doc --release --no-deps --lib
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
step "cargo check of the library and programs with Cargo.toml's rust-version ($msrv)"
# Cargo.toml promises this version; only its compiler proves the promise (about 2.5 min: its
# own target dir, every dependency checked again by that compiler; the toolchain download ~30 s).
# rustup fetches it from static.rust-lang.org, which is not one of the registries every CI
# machine is promised (crates.io, PyPI, Debian): where the download fails the step says so and
# is skipped; where the toolchain is there (installed before, or fetched) the check must pass.
if timeout 180 rustup toolchain install "$msrv" --profile minimal; then
  CARGO_TARGET_DIR=$PWD/target/msrv cargo "+$msrv" check --release --lib --bins
else
  echo "SKIP: rustup could not fetch Rust $msrv here; the rust-version check did not run"
fi
step "fuzz targets (nightly, cargo-fuzz): each built and run a few seconds on its corpus"
# docs/RELIABILITY.md "Fuzzing": the long campaign runs outside CI (fuzz/campaign.sh).
bash ci/test-fuzz.sh
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

# The reliability suite (issue 18) mostly waits (idle gaps, progress timeouts): it runs in the
# background from here, after the last rebuild of target/release (ci/test-rdma.sh's), and is
# waited for at the end.
rel_log=$PWD/target/ci-logs/reliability.log
bash ci/test-reliability.sh >"$rel_log" 2>&1 &
rel_pid=$!

step "C and C++ programs"
bash ci/test-c.sh target/release include

# ASan (nightly library, gcc's libasan) and Valgrind over the same C programs: the ASan build is
# its own target dir and the Valgrind runs mostly wait, so this runs beside the steps below.
san_log=$PWD/target/ci-logs/sanitizers.log
bash ci/test-sanitizers.sh >"$san_log" 2>&1 &
san_pid=$!
trap 'kill "$roots_pid" "$rel_pid" "$san_pid" 2>/dev/null || true' EXIT

step "packaging: install, CMake, pkg-config"
bash ci/test-packaging.sh target/release

step "Python package: pip install, pytest, offline wheel, no RDMA/NUMA libraries"
bash ci/test-python.sh

step "C examples and Python suites behind HTTP, etcd and redis metadata servers"
MOONCAKE_METADATA_FEATURES=1 MOONCAKE_REQUIRE_SERVERS=1 bash ci/test-metadata.sh

step "wheels: ci/build-wheel.sh (glibc 2.28, stripped, Mooncake's distribution names)"
bash ci/build-wheel.sh
step "wheels: tag, auditwheel, glibc floor, installed size, replacing Mooncake's wheel"
bash ci/test-wheel.sh dist
step "Debian roots (made in the background since the start)"
wait "$roots_pid" || { tail -n 30 "$roots_log"; echo "FAIL: ci/debootstrap.sh"; exit 1; }
step "the wheels in Debian 11 (glibc 2.31, Python 3.9): two processes move bytes"
bash ci/test-wheel-debian11.sh dist
step "container image (buildah, Dockerfile): mooncake_master --version and a put/get in it"
bash ci/test-container.sh dist

step "the reliability suite (in the background since the RDMA step)"
wait "$rel_pid" || { tail -n 80 "$rel_log"; echo "FAIL: ci/test-reliability.sh"; exit 1; }
tail -n 3 "$rel_log"
step "sanitizers: ASan and Valgrind (in the background since the C step)"
wait "$san_pid" || { tail -n 80 "$san_log"; echo "FAIL: ci/test-sanitizers.sh"; exit 1; }
tail -n 15 "$san_log"

step "all tests passed"
