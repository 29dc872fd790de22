#!/usr/bin/env bash
# Python package tests:
#  1. `pip install ./python` into a fresh venv (it builds the Rust library with cargo);
#  2. ruff (python/) and mypy (python/mooncake), configured in python/pyproject.toml;
#  3. the pytest suite (python/tests: ours <-> ours and ours <-> Mooncake's wheel, and
#     benches/te_bench.py run unchanged on both);
#  4. `python -m build --wheel`, installed offline (--no-index) into another fresh venv;
#  5. from that venv, two processes move and check 100 MiB, in a mount namespace where
#     libibverbs, librdmacm and libnuma are hidden (TCP must not need them).
# Work files under target/python-tests/. MOONCAKE_REQUIRE_NETNS=1 makes a missing `unshare`
# (or no root) a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/python-tests
mkdir -p "$WORK"
step() { printf '\n--- %s\n' "$*"; }

# The package is built with the etcd and redis features (python/setup.py), in the target dir
# of ci/test.sh's feature tests, so that target/release stays the default build.
export CARGO_TARGET_DIR=${MOONCAKE_FEATURES_TARGET:-$ROOT/target/features}
source ci/protoc-env.sh

step "pip install ./python (fresh venv)"
python3 -m venv --clear "$WORK/venv"
"$WORK/venv/bin/pip" install -q --upgrade pip
"$WORK/venv/bin/pip" install -q ./python numpy pytest build
PY=$WORK/venv/bin/python
"$PY" -c "import mooncake.engine as m; print('mooncake.engine from', m.__file__)"
for cmd in mooncake-bench transfer_engine_bench mooncake_http_metadata_server mooncake_client; do
  "$WORK/venv/bin/$cmd" --help >/dev/null
done
"$WORK/venv/bin/mooncake_master" --version >/dev/null   # gflags: --help exits 1, --version 0
# The store tests run the installed console scripts (the package has no executables: they run
# the tools inside the library); mooncake_client is found next to the master.
export MOONCAKE_TEST_MASTER=$WORK/venv/bin/mooncake_master MOONCAKE_REQUIRE_MASTER=1

step "ruff and mypy (python/pyproject.toml)"
# Pinned: a new release's new rules must not fail CI unannounced. Caches under $WORK.
"$WORK/venv/bin/pip" install -q ruff==0.17.6 mypy==2.4.1
(cd python && RUFF_CACHE_DIR=$WORK/ruff-cache "$WORK/venv/bin/ruff" check . \
  && MYPY_CACHE_DIR=$WORK/mypy-cache "$WORK/venv/bin/mypy")

step "pytest python/tests"
MOONCAKE_TEST_PYTHON_OURS=$PY MOONCAKE_REQUIRE_OURS=1 \
  timeout 900 "$PY" -m pytest -q -p no:cacheprovider python/tests

step "python -m build --wheel, installed offline"
rm -rf "$WORK/dist"
"$PY" -m build --wheel --outdir "$WORK/dist" python >/dev/null
ls -l "$WORK/dist"
python3 -m venv --clear "$WORK/venv-offline"
"$WORK/venv-offline/bin/pip" install -q --no-index "$WORK"/dist/*.whl

step "100 MiB between two processes with libibverbs, librdmacm, libnuma hidden"
HIDE=$(ldconfig -p | awk '/lib(ibverbs|rdmacm|numa)\.so/ {print $NF}' | xargs -r -n1 readlink -f | sort -u)
echo "hidden: ${HIDE:-(none installed)}"
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  HIDE="$HIDE" timeout 300 unshare -m --propagation private bash -euc '
    for f in $HIDE; do mount --bind /dev/null "$f"; done
    for f in $HIDE; do
      if python3 -c "import ctypes,sys; ctypes.CDLL(sys.argv[1])" "$f" 2>/dev/null; then
        echo "FAIL: $f still loads inside the namespace"; exit 1
      fi
    done
    "$0" '"$ROOT"'/python/examples/transfer_100mib.py
  ' "$WORK/venv-offline/bin/python"
elif [ -n "${MOONCAKE_REQUIRE_NETNS:-}" ]; then
  echo "FAIL: the hidden-library check needs root and unshare"; exit 1
else
  echo "SKIPPED: needs root and unshare; running without hiding"
  "$WORK/venv-offline/bin/python" python/examples/transfer_100mib.py
fi
echo "test-python.sh: all passed"
