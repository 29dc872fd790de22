#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The C ABI tests and the C/C++ examples of ci/test-c.sh under two memory checkers:
#
#   AddressSanitizer  libmooncake.so built by nightly rustc with -Zsanitizer=address (its own
#                     target dir, target/asan, and an explicit --target, so that build scripts
#                     and proc macros stay uninstrumented), the programs built by gcc with
#                     -fsanitize=address. One ASan runtime serves both: gcc's libasan.so, which
#                     gcc links into each program as its first NEEDED library; rustc links no
#                     runtime into a cdylib (the library's __asan_* symbols stay undefined and
#                     the loader binds them to the program's libasan). The instrumented library
#                     is therefore only ever loaded by instrumented programs. LeakSanitizer
#                     (part of ASan on x86_64) runs at exit of every process.
#   Valgrind          the normal release library (target/release, as shipped) and the programs
#                     built without instrumentation, under memcheck with --leak-check=full:
#                     any error or leak (definite, indirect or possible) fails, children
#                     included (--trace-children=yes). ci/valgrind.supp holds the suppressions,
#                     each a documented false positive.
#
# Programs: abi_c11, abi_cpp17, store_abi_c11, store_abi_cpp17 (tests/abi/), transfer_example in
# C11 and C++17 (two processes, 256 MiB written, read back and compared in 1 MiB and 4 KiB
# requests), store_put_get and store_unregistered (c_examples/, against a mooncake_master of
# target/release started on free loopback ports and stopped by its PID).
#
# Usage: ci/test-sanitizers.sh            (after `cargo build --release --lib --bins`)
# Environment: CC (gcc), CXX (g++), TEST_TIMEOUT (seconds per program, 900: Valgrind runs the
#   transfer examples 20-50x slower), SANITIZERS ("asan valgrind": the parts to run),
#   RUST_NIGHTLY (nightly: the toolchain for the ASan build), PROGRAMS (names of the programs
#   below to run; default all).
# The ASan part is SKIPPED (with the reason) when no nightly toolchain is installed and rustup
# cannot fetch one within 5 minutes; the Valgrind part always runs (valgrind is installed with
# apt-get when absent, as root). Outputs and logs go to target/sanitizers/. Every step runs even
# after a failure; the exit status is 1 if any failed.

set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
cc=${CC:-gcc}
cxx=${CXX:-g++}
limit=${TEST_TIMEOUT:-900}
parts=${SANITIZERS:-asan valgrind}
nightly=${RUST_NIGHTLY:-nightly}
inc_dir=$root/include
release_dir=$root/target/release
build=$root/target/sanitizers
asan_target_dir=$root/target/asan
triple=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
triple=${triple:-x86_64-unknown-linux-gnu}
started=$SECONDS

die() {
    echo "test-sanitizers.sh: $*" >&2
    exit 1
}
[[ -f $release_dir/libmooncake.so ]] || die "$release_dir/libmooncake.so not found (run: cargo build --release --lib --bins)"
for tool in "$cc" "$cxx" nm readelf timeout; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$build" || die "cannot create $build"

version=$(sed -n 's/^version *= *"\([0-9]*\.[0-9]*\.[0-9]*\)".*/\1/p' Cargo.toml | head -n 1)
IFS=. read -r v_major v_minor v_patch <<<"$version"
version_defs=(-DEXPECT_VERSION_MAJOR="$v_major" -DEXPECT_VERSION_MINOR="$v_minor"
    -DEXPECT_VERSION_PATCH="$v_patch")
warnings=(-Wall -Wextra -Werror -pedantic)

failed=()
summary=()

# step NAME COMMAND...: prints and runs COMMAND, records its result and time.
step() {
    local name=$1
    shift
    echo
    echo "+ $*"
    local start=$SECONDS
    "$@"
    local rc=$?
    local took=$((SECONDS - start))
    if ((rc == 0)); then
        summary+=("PASS  $name (${took}s)")
    else
        summary+=("FAIL  $name (exit $rc, ${took}s)")
        failed+=("$name")
    fi
    return $rc
}

# free_port: a loopback TCP port nobody listens on (bounded tries), below the kernel's
# ephemeral range (32768-60999 by default), where outgoing connections take their local ports.
free_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# with_master LOG COMMAND...: starts target/release's mooncake_master on free loopback ports,
# runs COMMAND with the two addresses appended, stops the master by its PID. A master that
# exits at start (a port taken between the check and its bind) is started again on other ports,
# up to 5 times.
with_master() {
    local mlog=$1 master=$release_dir/mooncake_master rpc http metrics pid rc i try up=0
    shift
    for ((try = 1; try <= 5 && up == 0; try++)); do
        rpc=$(free_port) && http=$(free_port) && metrics=$(free_port) || return 1
        "$master" --rpc_address=127.0.0.1 --rpc_port="$rpc" --metrics_host=127.0.0.1 \
            --metrics_port="$metrics" --enable_http_metadata_server=true \
            --http_metadata_server_host=127.0.0.1 --http_metadata_server_port="$http" >"$mlog" 2>&1 &
        pid=$!
        for ((i = 0; i < 200; i++)); do # up to 20 s for both ports
            if (exec 3<>"/dev/tcp/127.0.0.1/$rpc") 2>/dev/null &&
                (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null; then
                up=1
                break
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if ((up == 0)); then
            echo "mooncake_master did not come up (try $try):"
            tail -n 5 "$mlog"
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    ((up)) || return 1
    "$@" "127.0.0.1:$rpc" "http://127.0.0.1:$http/metadata"
    rc=$?
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ((rc == 0)) || tail -n 20 "$mlog"
    return $rc
}

# The programs: NAME LANGUAGE SOURCE NEEDS-MASTER EXTRA-FLAGS...
programs=(
    "abi_c11 c tests/abi/abi_c11.c 0 version"
    "abi_cpp17 c++ tests/abi/abi_cpp17.cpp 0 version"
    "store_abi_c11 c tests/abi/store_abi_c11.c 0"
    "store_abi_cpp17 c++ tests/abi/store_abi_cpp17.cpp 0"
    "transfer_example_c c c_examples/transfer_example.c 0"
    "transfer_example_cpp c++ c_examples/transfer_example.cpp 0"
    "store_put_get c c_examples/store_put_get.c 1"
    "store_unregistered c c_examples/store_unregistered.c 1"
)

# compile MODE LIB_DIR NAME LANGUAGE SOURCE [version] [EXTRA COMPILER FLAGS...]: builds
# $build/MODE/NAME against LIB_DIR's libmooncake.so (the loader finds it by its SONAME through
# a link in $build/MODE/lib, first in the rpath).
compile() {
    local mode=$1 lib_dir=$2 name=$3 lang=$4 src=$5 defs=()
    shift 5
    if [[ ${1:-} == version ]]; then
        defs=("${version_defs[@]}")
        shift
    fi
    local compiler=$cc std=-std=c11
    [[ $lang == c++ ]] && compiler=$cxx std=-std=c++17
    "$compiler" "$std" -g -O1 "${warnings[@]}" "$@" -I"$inc_dir" "${defs[@]+"${defs[@]}"}" "$src" \
        -L"$lib_dir" -lmooncake -Wl,-rpath,"$build/$mode/lib" -Wl,-rpath,"$lib_dir" -Wl,-z,now \
        -o "$build/$mode/$name"
}

# prepare MODE LIB_DIR: the output dir and the SONAME link of LIB_DIR's library.
prepare() {
    local mode=$1 lib=$2/libmooncake.so soname
    mkdir -p "$build/$mode/lib" || return 1
    soname=$(LC_ALL=C readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    [[ -z $soname ]] || ln -sf "$lib" "$build/$mode/lib/$soname"
}

# canary MODE RUNNER...: runs tests/sanitizers/canary.c twice, an overflowing read and then a
# leak on purpose; each run must exit with 1 and leave its report, in a log of its own.
canary() {
    local mode=$1 kind rc reports expect
    shift
    for kind in overflow leak; do
        rm -f "$build/$mode/canary."*log*
        ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$build/$mode/canary.asan.log" VG_LOG_TAG=canary. \
            timeout --kill-after=10 300 "$@" "$build/$mode/canary" "$kind" >"$build/$mode/canary.out" 2>&1
        rc=$?
        reports=$(cat "$build/$mode/canary."*log* 2>/dev/null)
        expect='heap-buffer-overflow|Invalid read of size 1'
        [[ $kind == leak ]] && expect='detected memory leaks|definitely lost in'
        if ((rc != 1)) || ! grep -Eq "$expect" <<<"$reports"; then
            echo "the canary ($kind) exited with $rc (not 1) or its report lacks /$expect/:"
            cat "$build/$mode/canary.out"
            printf '%s\n' "$reports"
            return 1
        fi
        echo "canary $kind: exit 1, reported as it must"
    done
}

# run_all MODE LIB_DIR RUNNER... -- COMPILER-FLAGS...: compiles and runs every program.
run_all() {
    local mode=$1 lib_dir=$2 runner=() cflags=() entry name lang src master extra
    shift 2
    while (($# > 0)) && [[ $1 != -- ]]; do
        runner+=("$1")
        shift
    done
    shift
    cflags=("$@")
    prepare "$mode" "$lib_dir" || return 1
    if step "$mode: compile canary" compile "$mode" "$lib_dir" canary c tests/sanitizers/canary.c \
        "${cflags[@]+"${cflags[@]}"}"; then
        step "$mode: canary (an overflow, a leak) fails as it must" canary "$mode" "${runner[@]}"
    fi
    for entry in "${programs[@]}"; do
        read -r name lang src master extra <<<"$entry"
        [[ -z ${PROGRAMS:-} || " $PROGRAMS " == *" $name "* ]] || continue
        if step "$mode: compile $name" compile "$mode" "$lib_dir" "$name" "$lang" "$src" $extra \
            "${cflags[@]+"${cflags[@]}"}"; then
            if ((master)); then
                step "$mode: run $name" with_master "$build/$mode/$name.master.log" \
                    timeout --kill-after=10 "$limit" "${runner[@]}" "$build/$mode/$name"
            else
                step "$mode: run $name" timeout --kill-after=10 "$limit" "${runner[@]}" "$build/$mode/$name"
            fi
        fi
    done
}

echo "release library: $release_dir/libmooncake.so"
echo "compilers:       $($cc --version | head -n 1); $($cxx --version | head -n 1)"
echo "outputs:         $build"

# ---- AddressSanitizer ----------------------------------------------------------------------
asan_part() {
    local toolchain_ok=0
    if cargo "+$nightly" --version >/dev/null 2>&1; then
        toolchain_ok=1
    elif command -v rustup >/dev/null &&
        timeout 300 rustup toolchain install "$nightly" --profile minimal; then
        toolchain_ok=1
    fi
    if ((toolchain_ok == 0)); then
        summary+=("SKIP  asan: no $nightly toolchain here and rustup could not fetch one (-Zsanitizer needs nightly)")
        return
    fi
    echo "ASan toolchain:  $(cargo "+$nightly" --version)"
    # LLVM's ASan instrumentation of the library calls into the runtime of the program that loads
    # it: gcc's libasan must speak the same ABI (__asan_version_mismatch_check_vN) as rustc's LLVM.
    local asan_lib_dir=$asan_target_dir/$triple/release
    step "asan: cargo +$nightly build --release --lib (-Zsanitizer=address)" \
        env RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="$asan_target_dir" \
        cargo "+$nightly" build --release --lib --target "$triple" || return
    # The instrumented library brings no runtime of its own (else two would fight in one process).
    # (nm's output is read whole: `grep -q` closing the pipe early would fail it under pipefail.)
    local defined undefined
    defined=$(nm -D --defined-only "$asan_lib_dir/libmooncake.so")
    undefined=$(nm -D --undefined-only "$asan_lib_dir/libmooncake.so")
    if grep -qw '__asan_init' <<<"$defined"; then
        summary+=("FAIL  asan: the instrumented library defines __asan_init (a second ASan runtime)")
        failed+=("asan runtime")
        return
    fi
    # The library is instrumented: its code reports through the runtime's __asan_report_*.
    if ! grep -q '__asan_report_load' <<<"$undefined"; then
        summary+=("FAIL  asan: $asan_lib_dir/libmooncake.so calls no __asan_report_* (not instrumented)")
        failed+=("asan instrumentation")
        return
    fi
    # detect_leaks: LeakSanitizer at exit. halt_on_error + exitcode 1: any report fails the
    # program. strict_string_checks, check_initialization_order: two checks ASan leaves off by
    # default. log_path: a report file per process, children included.
    local opts="detect_leaks=1:halt_on_error=1:exitcode=1:abort_on_error=0"
    opts+=":strict_string_checks=1:check_initialization_order=1"
    opts+=":log_path=$build/asan/asan.log"
    rm -f "$build/asan/asan.log".*
    # gcc's -Wmaybe-uninitialized gives false positives under -fsanitize=address (its
    # instrumentation hides initialisations from the warning's analysis; transfer_example.cpp's
    # std::optional<bool> at -O1): a warning there, not an error. test-c.sh keeps -Werror whole.
    ASAN_OPTIONS=$opts run_all asan "$asan_lib_dir" -- -fsanitize=address -fno-omit-frame-pointer \
        -Wno-error=maybe-uninitialized
    # A report from a child process (transfer_example's target and initiator) also lands here.
    if compgen -G "$build/asan/asan.log.*" >/dev/null; then
        echo "ASan reports:"
        cat "$build/asan/asan.log".*
        summary+=("FAIL  asan: reports in $build/asan/asan.log.*")
        failed+=("asan reports")
    fi
}

# ---- Valgrind --------------------------------------------------------------------------------
valgrind_part() {
    if ! command -v valgrind >/dev/null; then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q valgrind ||
                { timeout 300 apt-get update -q && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q valgrind; }
        fi
        command -v valgrind >/dev/null || {
            summary+=("FAIL  valgrind: not installed and apt-get could not install it")
            failed+=("valgrind")
            return
        }
    fi
    echo "Valgrind:        $(valgrind --version)"
    rm -f "$build/valgrind/"*.vg.log
    VG_LOG_TAG= run_all valgrind "$release_dir" valgrind --error-exitcode=1 --leak-check=full \
        --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
        --suppressions="$root/ci/valgrind.supp" --trace-children=yes --child-silent-after-fork=yes \
        --num-callers=40 --log-file="$build/valgrind/%q{VG_LOG_TAG}%p.vg.log" --
    # Every process that ran under memcheck (parents and children) must say 0 errors.
    local f bad=0 n=0
    for f in "$build/valgrind/"[0-9]*.vg.log; do
        [[ -e $f ]] || continue
        n=$((n + 1))
        if ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
            echo "memcheck found errors ($f):"
            cat "$f"
            bad=1
        fi
    done
    if ((n == 0)); then
        summary+=("FAIL  valgrind: no memcheck log was written")
        failed+=("valgrind logs")
    elif ((bad)); then
        summary+=("FAIL  valgrind: errors in $n process log(s), see above")
        failed+=("valgrind logs")
    else
        summary+=("PASS  valgrind: $n processes, each 'ERROR SUMMARY: 0 errors'")
    fi
}

for part in $parts; do
    case $part in
    asan) asan_part ;;
    valgrind) valgrind_part ;;
    *) die "unknown part $part (SANITIZERS takes asan and valgrind)" ;;
    esac
done

echo
echo "== sanitizers ($((SECONDS - started)) s) =="
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "test-sanitizers.sh: ${#failed[@]} step(s) failed"
    exit 1
fi
echo "test-sanitizers.sh: all passed"
