#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test libmooncake:
# compilers and tools from apt (cmake and pkg-config for ci/test-packaging.sh; etcd and
# redis-server, which the metadata tests start on loopback ports themselves), rustfmt/clippy,
# and Mooncake's published wheel in a venv (the interop tests' peer).
# Idempotent; prints what it does.
set -euo pipefail

need=()
for pkg_cmd in gcc:gcc g++:g++ iproute2:ip util-linux:unshare procps:ps binutils:nm \
    cmake:cmake pkg-config:pkg-config etcd-server:etcd redis-server:redis-server; do
  pkg=${pkg_cmd%%:*}; cmd=${pkg_cmd##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# The wheel's engine.so links libibverbs.so.1 even for tcp.
ldconfig -p | grep -q 'libibverbs.so.1 ' || need+=(libibverbs1)
# The verbs headers and libclang only for ci/check-verbs-bindings.sh (it regenerates the
# committed verbs bindings with bindgen; the rdma feature's build needs neither); the rxe
# provider for the soft-RoCE guest tests.
for pkg in libibverbs-dev librdmacm-dev libclang-dev ibverbs-providers; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "ci/setup.sh: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  echo "ci/setup.sh: rustup component add clippy rustfmt"
  rustup component add clippy rustfmt
fi

bash "$(dirname "$0")/setup-wheel.sh"
