#!/usr/bin/env bash
# Checks the wheels of ci/build-wheel.sh (dist/), run after it:
#  1. the tag (py3-none-manylinux_2_28_x86_64), `auditwheel show`, and the newest GLIBC_
#     symbol version the library needs (<= 2.28);
#  2. installed into a venv that has Mooncake's real `mooncake-transfer-engine-non-cuda`
#     (from PyPI, or $MOONCAKE_REAL_WHEEL: a path or requirement): `pip install dist/*.whl`
#     replaces it: no file of it is left that is not ours, `import mooncake.engine,
#     mooncake.store` loads our library, both alias names report the Mooncake API version;
#  3. the same over a stand-in of Mooncake's CUDA wheel `mooncake-transfer-engine` (a small
#     wheel made here that owns mooncake/__init__.py and friends);
#  4. the installed size (<= 15 MB) and the console scripts (names, --version, --help, a master
#     started and stopped with SIGTERM).
# Work files under target/wheel-tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/wheel-tests
PLAT=manylinux_2_28_x86_64
MAX_GLIBC=2.28
MAX_INSTALLED_KB=$((15 * 1024))
REAL=${MOONCAKE_REAL_WHEEL:-mooncake-transfer-engine-non-cuda==0.3.13.post1}
rm -rf "$WORK" && mkdir -p "$WORK"
step() { printf '\n--- %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }

shopt -s nullglob
WHEELS=("$ROOT"/dist/*.whl)
LIBWHEEL=("$ROOT"/dist/libmooncake-*.whl)
[ ${#LIBWHEEL[@]} = 1 ] || fail "expected one dist/libmooncake-*.whl (run ci/build-wheel.sh)"
LIBWHEEL=${LIBWHEEL[0]}
ls -l "${WHEELS[@]}"

step "tag, auditwheel, glibc"
case $LIBWHEEL in *-py3-none-$PLAT.whl) echo "tag: py3-none-$PLAT" ;; *) fail "$LIBWHEEL: not py3-none-$PLAT" ;; esac
python3 -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q auditwheel
"$WORK/tools/bin/auditwheel" show "$LIBWHEEL" | tee "$WORK/auditwheel.txt"
tr '\n' ' ' <"$WORK/auditwheel.txt" | grep -q "consistent with the following platform tag: \"$PLAT\"" ||
  fail "auditwheel does not agree with $PLAT"
python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], "wb").write(z.read("mooncake/_libmooncake.so"))' \
  "$LIBWHEEL" "$WORK/lib.so"
newest=$(objdump -T "$WORK/lib.so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "newest GLIBC_ symbol version: $newest"
[ "$(printf '%s\n' "GLIBC_$MAX_GLIBC" "$newest" | sort -V | tail -1)" = "GLIBC_$MAX_GLIBC" ] || fail "needs $newest"

# check_replaced VENV OLD_FILES: after `pip install dist/*.whl` over Mooncake's wheel.
check_replaced() {
  local venv=$1 old=$2
  "$venv/bin/pip" list 2>/dev/null | grep -Ei '^(libmooncake|mooncake)' | tee "$WORK/pip-list.txt"
  "$venv/bin/pip" check
  "$venv/bin/python" - "$old" <<'PY'
import importlib.metadata as md
import os
import sys

ours = set()
for name in ("libmooncake", "mooncake-transfer-engine", "mooncake-transfer-engine-non-cuda"):
    d = md.distribution(name)
    ours |= {os.path.realpath(d.locate_file(f)) for f in (d.files or [])}
left = [p for p in open(sys.argv[1]).read().split("\n") if p and os.path.exists(p) and os.path.realpath(p) not in ours]
assert not left, f"files of the old distribution left: {left[:10]}"
owners = [d.metadata["Name"] for d in md.distributions()
          if any(str(f).startswith("mooncake/") for f in (d.files or []))]
assert owners == ["libmooncake"], f"distributions owning mooncake/: {owners}"
for name in ("mooncake-transfer-engine", "mooncake-transfer-engine-non-cuda"):
    v = md.version(name)
    release = tuple(int(x) for x in v.split("+")[0].split("."))
    assert v.startswith("0.3.13+libmooncake.") and release >= (0, 3, 13), (name, v)
    print(f"version({name}) = {v}")
import mooncake.engine, mooncake.store  # noqa: E401,E402
from mooncake import _lib
lib = _lib.load()
here = os.path.dirname(mooncake.engine.__file__)
assert os.path.dirname(os.path.realpath(lib._name)) == os.path.realpath(here), lib._name
print("mooncake.engine, mooncake.store load", lib._name, "version", lib.mooncake_version().decode())
PY
}

# old_files VENV DIST: absolute paths of DIST's installed files.
old_files() {
  "$1/bin/python" -c 'import importlib.metadata as md, os, sys
d = md.distribution(sys.argv[1])
print("\n".join(os.path.realpath(d.locate_file(f)) for f in d.files))' "$2"
}

step "over Mooncake's real wheel: $REAL"
python3 -m venv "$WORK/venv-real"
"$WORK/venv-real/bin/pip" install -q "$REAL"
old_files "$WORK/venv-real" mooncake-transfer-engine-non-cuda >"$WORK/old-real.txt"
echo "$(wc -l <"$WORK/old-real.txt") files of mooncake-transfer-engine-non-cuda before"
"$WORK/venv-real/bin/pip" install -q --no-index "${WHEELS[@]}"
check_replaced "$WORK/venv-real" "$WORK/old-real.txt"

step "over a stand-in of Mooncake's CUDA wheel (mooncake-transfer-engine)"
FAKE=$(python3 ci/make_wheel.py "$WORK/fake" mooncake-transfer-engine 0.3.13.post1 \
  --file 'mooncake/__init__.py=FAKE = True' --file 'mooncake/engine.py=raise ImportError("fake")' \
  --file 'mooncake/cuda_only.py=x = 1' --file 'mooncake/store.py=raise ImportError("fake")')
python3 -m venv "$WORK/venv-gpu"
"$WORK/venv-gpu/bin/pip" install -q --no-index "$FAKE"
old_files "$WORK/venv-gpu" mooncake-transfer-engine >"$WORK/old-gpu.txt"
"$WORK/venv-gpu/bin/pip" install -q --no-index "${WHEELS[@]}"
check_replaced "$WORK/venv-gpu" "$WORK/old-gpu.txt"
[ ! -e "$("$WORK/venv-gpu/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mooncake/cuda_only.py" ] ||
  fail "mooncake/cuda_only.py of the old wheel is still there"

step "installed size"
V=$WORK/venv-gpu
KB=$("$V/bin/python" -c 'import importlib.metadata as md, os
d = md.distribution("libmooncake")
print(sum(os.path.getsize(d.locate_file(f)) for f in d.files if os.path.exists(d.locate_file(f))) // 1024)')
echo "libmooncake installed: $KB KiB (wheel: $(( $(stat -c %s "$LIBWHEEL") / 1024 )) KiB)"
[ "$KB" -le $MAX_INSTALLED_KB ] || fail "installed size $KB KiB > $MAX_INSTALLED_KB KiB"

step "console scripts"
out=$("$V/bin/mooncake_master" --version) || fail "mooncake_master --version exited $?"
echo "$out"; [[ $out == "mooncake_master version "* ]] || fail "mooncake_master --version said: $out"
for name in mooncake-bench transfer_engine_bench; do
  out=$("$V/bin/$name" --help) || fail "$name --help exited $?"
  grep -q "Usage: $name " <<<"$out" || fail "$name --help does not name itself: $(head -3 <<<"$out")"
  echo "$name --help: $(grep 'Usage:' <<<"$out")"
done
for name in mooncake_client mooncake_http_metadata_server; do
  "$V/bin/$name" --help >/dev/null || fail "$name --help exited $?"
done
# A master started through its console script, then stopped with SIGTERM: exit status 0.
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
: >"$WORK/master.err"
"$V/bin/mooncake_master" --rpc_address=127.0.0.1 --rpc_port="$(port)" --metrics_port="$(port)" \
  2>"$WORK/master.err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/master.err" && break; sleep 0.1; done
grep "listening on" "$WORK/master.err" || { cat "$WORK/master.err"; kill $pid; fail "no listening line"; }
kill -TERM $pid
wait $pid || fail "mooncake_master exited $? on SIGTERM"
echo "ci/test-wheel.sh: all passed"
