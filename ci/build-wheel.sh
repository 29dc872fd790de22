#!/usr/bin/env bash
# Builds the wheels users install, into dist/ (docs/PACKAGING.md):
#   libmooncake-<version>-py3-none-manylinux_2_28_x86_64.whl   the package and the library
#   mooncake_transfer_engine-<api>+libmooncake.<version>-py3-none-any.whl           metadata only
#   mooncake_transfer_engine_non_cuda-<api>+libmooncake.<version>-py3-none-any.whl  metadata only
# Install them together: pip install dist/*.whl
#
# The library alone (`--lib`, features etcd and redis, default rdma) is built with
# cargo-zigbuild against glibc 2.28, stripped, and packaged by python/setup.py with
# MOONCAKE_PREBUILT_LIB (no cargo there). Tools are cached outside the repository, in
# $MOONCAKE_BUILD_CACHE (default ~/.cache/libmooncake-build): a venv with zig (PyPI's
# `ziglang`), auditwheel and setuptools, and cargo-zigbuild (`cargo install --locked`).
# The cargo build goes to target/wheel. `auditwheel show` must agree with the tag.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${MOONCAKE_BUILD_CACHE:-$HOME/.cache/libmooncake-build}
GLIBC=2.28
PLAT=manylinux_${GLIBC/./_}_x86_64
TARGET=x86_64-unknown-linux-gnu
OUT=$ROOT/dist
step() { printf '\n--- %s\n' "$*"; }

step "build tools ($CACHE)"
[ -x "$CACHE/venv/bin/python" ] || python3 -m venv "$CACHE/venv"
# Already satisfied requirements need no index (offline reruns work).
"$CACHE/venv/bin/pip" install -q ziglang auditwheel "setuptools>=77" wheel
if [ ! -x "$CACHE/cargo-tools/bin/cargo-zigbuild" ]; then
  CARGO_INSTALL_ROOT=$CACHE/cargo-tools nice -n 10 cargo install --locked cargo-zigbuild
fi
# cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH: the venv's python3.
export PATH=$CACHE/venv/bin:$CACHE/cargo-tools/bin:$PATH
PY=$CACHE/venv/bin/python

step "cargo zigbuild --lib (glibc $GLIBC)"
export CARGO_TARGET_DIR=$ROOT/target/wheel
source ci/protoc-env.sh
start=$(date +%s)
nice -n 10 cargo zigbuild --release --lib --target "$TARGET.$GLIBC" --features etcd,redis
echo "cargo zigbuild: $(( $(date +%s) - start )) s"
LIB=$CARGO_TARGET_DIR/libmooncake-stripped.so
cp "$CARGO_TARGET_DIR/$TARGET/release/libmooncake.so" "$LIB"
strip --strip-unneeded "$LIB"
ls -l "$CARGO_TARGET_DIR/$TARGET/release/libmooncake.so" "$LIB"
newest=$(objdump -T "$LIB" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "newest glibc symbol version: $newest"
if [ "$(printf '%s\n' "GLIBC_$GLIBC" "$newest" | sort -V | tail -1)" != "GLIBC_$GLIBC" ]; then
  echo "FAIL: the library needs $newest, newer than GLIBC_$GLIBC"; exit 1
fi

step "a panic unwinds to catch_unwind in a zig-linked library (tools/unwind-probe)"
# The FFI boundary turns panics into error codes; with zig's linker and unwinder that must hold
# as it does in a plain cargo build, or a panic would abort the caller's process.
( cd tools/unwind-probe && CARGO_TARGET_DIR=$ROOT/target/wheel/unwind-probe \
    nice -n 10 cargo zigbuild --release --target "$TARGET.$GLIBC" )
"$PY" -c 'import ctypes, sys; sys.exit(0 if ctypes.CDLL(sys.argv[1]).mooncake_unwind_probe() == 1 else 1)' \
  "$ROOT/target/wheel/unwind-probe/$TARGET/release/libunwind_probe.so" ||
  { echo "FAIL: a panic did not unwind in the zig-linked library"; exit 1; }
echo "a panic unwound and was caught"

step "wheels -> $OUT"
VERSION=$(cargo metadata --no-deps --format-version 1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
API=$(cargo metadata --no-deps --format-version 1 |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["metadata"]["mooncake"]["api-version"])')
# From a copy of python/: setuptools writes build/ and *.egg-info next to setup.py, which must
# not touch (or race with) a `pip install ./python` of the checkout.
SRC=$CARGO_TARGET_DIR/python-src
rm -rf "$OUT" "$SRC" && mkdir -p "$SRC"
tar -C python --exclude=build --exclude='*.egg-info' --exclude=__pycache__ --exclude='_libmooncake*.so' -cf - . |
  tar -C "$SRC" -xf -
MOONCAKE_PREBUILT_LIB=$LIB MOONCAKE_WHEEL_PLAT=$PLAT MOONCAKE_CARGO_TOML=$ROOT/Cargo.toml \
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" "$SRC"
for name in mooncake-transfer-engine mooncake-transfer-engine-non-cuda; do
  "$PY" ci/make_wheel.py "$OUT" "$name" "$API+libmooncake.$VERSION" \
    --summary "Installed by libmooncake: Mooncake's $name $API API, served by libmooncake $VERSION" >/dev/null
done
ls -l "$OUT"

step "auditwheel show"
WHEEL=$(ls "$OUT"/libmooncake-*.whl)
case $WHEEL in *-py3-none-$PLAT.whl) ;; *) echo "FAIL: $WHEEL is not tagged py3-none-$PLAT"; exit 1 ;; esac
auditwheel show "$WHEEL" | tee "$CARGO_TARGET_DIR/auditwheel.txt"
if ! tr '\n' ' ' <"$CARGO_TARGET_DIR/auditwheel.txt" | grep -q "consistent with the following platform tag: \"$PLAT\""; then
  echo "FAIL: auditwheel does not agree with $PLAT"; exit 1
fi
echo "ci/build-wheel.sh: dist/ ready; install with: pip install dist/*.whl"
