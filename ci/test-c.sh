#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds and runs the C-level tests of libmooncake.so:
#   abi_c11, abi_cpp17   layouts, constants, types and prototypes of Mooncake's C ABI
#                        (tests/abi/), linked so that every symbol must resolve;
#   store_abi_c11, store_abi_cpp17   the same for store_c.h and the store part of mooncake.h;
#   exported symbols     `nm -D` of the library against tests/abi/exported_symbols.txt;
#   transfer_example     c_examples/ in C11 and C++17: 256 MiB written, read back and
#                        verified between two processes, in 1 MiB and 4 KiB requests;
#   store_put_get        c_examples/store_put_get.c against a mooncake_master of LIB_DIR
#                        (started on free loopback ports, stopped by its PID); skipped, with a
#                        note, when LIB_DIR has no mooncake_master;
#   store_unregistered   c_examples/store_unregistered.c the same way: the zero-copy calls on
#                        malloc'd (unregistered) memory, and a zero local buffer.
#
# Usage: ci/test-c.sh [LIB_DIR [INCLUDE_DIR]]
#   LIB_DIR      holds libmooncake.so (default: target/release; build it first with
#                `cargo build --release`; this script builds only the C/C++ programs)
#   INCLUDE_DIR  holds transfer_engine_c.h, store_c.h and mooncake.h (default: include)
# Relative paths are taken from the current directory; the defaults from the repository root.
# Environment: CC (gcc), CXX (g++), TEST_TIMEOUT (seconds per program, 300).
# Needs only bash, coreutils, gcc, g++ and binutils (nm, readelf); installs nothing. Outputs go
# to target/c-tests/. Every step runs even after a failure; the exit status is 1 if any failed.

set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lib_dir=$(realpath -m -- "${1:-$root/target/release}")
inc_dir=$(realpath -m -- "${2:-$root/include}")
cc=${CC:-gcc}
cxx=${CXX:-g++}
limit=${TEST_TIMEOUT:-300}
build=$root/target/c-tests
lib=$lib_dir/libmooncake.so

cd "$root" || exit 1

die() {
    echo "test-c.sh: $*" >&2
    exit 1
}
[[ -f $lib ]] || die "$lib not found (run: cargo build --release)"
[[ -f $inc_dir/transfer_engine_c.h && -f $inc_dir/store_c.h && -f $inc_dir/mooncake.h ]] ||
    die "transfer_engine_c.h / store_c.h / mooncake.h not found in $inc_dir"
for tool in "$cc" "$cxx" nm readelf timeout; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$build" || die "cannot create $build"

# The package version, for the ABI tests' check of MOONCAKE_VERSION_*.
version=$(sed -n 's/^version *= *"\([0-9]*\.[0-9]*\.[0-9]*\)".*/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version = \"X.Y.Z\" in Cargo.toml"
IFS=. read -r v_major v_minor v_patch <<<"$version"
version_defs=(-DEXPECT_VERSION_MAJOR="$v_major" -DEXPECT_VERSION_MINOR="$v_minor"
    -DEXPECT_VERSION_PATCH="$v_patch")

# The programs ask the loader for the library's SONAME (libmooncake.so.N, build.rs), a name
# cargo does not create: a link by that name goes into the build dir, first in the rpath.
soname=$(LC_ALL=C readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
runtime_dir=$build/lib
mkdir -p "$runtime_dir" || die "cannot create $runtime_dir"
if [[ -n $soname ]]; then
    ln -sf "$lib" "$runtime_dir/$soname" || die "cannot link $runtime_dir/$soname"
fi

warnings=(-Wall -Wextra -Werror -pedantic)
# -z now: every symbol is bound at start-up, so a missing one fails at once, not when called.
link=(-L"$lib_dir" -lmooncake -Wl,-rpath,"$runtime_dir" -Wl,-rpath,"$lib_dir" -Wl,-z,now)

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

# run_bounded PROGRAM: runs a built program under `timeout` (exit 124 when it ran too long).
run_bounded() {
    timeout --kill-after=10 "$limit" "$@"
}

# check_symbols: every listed symbol is exported as a function, and no other C symbol is.
check_symbols() {
    local expected=$root/tests/abi/exported_symbols.txt
    local listed=$build/symbols.expected exported=$build/symbols.exported
    LC_ALL=C sort -u "$expected" >"$listed"
    # Functions (T; also W and i, which would be functions too); strip any @VERSION.
    nm -D --defined-only "$lib" |
        awk '$2 == "T" || $2 == "W" || $2 == "i" { sub(/@.*/, "", $3); print $3 }' |
        LC_ALL=C sort -u >"$exported" || return 1
    local missing extra
    missing=$(LC_ALL=C comm -23 "$listed" "$exported")
    # Rust's own symbols (legacy _ZN / v0 _R mangling, __rust_*, rust_*) are not C API.
    extra=$(LC_ALL=C comm -13 "$listed" "$exported" | grep -Ev '^(_ZN|_R[A-Z0-9]|__rust|rust_)' || true)
    local n_listed n_exported
    n_listed=$(wc -l <"$listed")
    n_exported=$(wc -l <"$exported")
    echo "listed: $n_listed, exported functions: $n_exported"
    local rc=0
    if [[ -n $missing ]]; then
        echo "listed in tests/abi/exported_symbols.txt but not exported by $lib:"
        printf '  %s\n' $missing
        rc=1
    fi
    if [[ -n $extra ]]; then
        echo "exported by $lib but not listed in tests/abi/exported_symbols.txt:"
        printf '  %s\n' $extra
        rc=1
    fi
    # Exported data is not part of the ABI either; show it, without failing on it.
    local data
    data=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[BDGRSV]$/ { print $2, $3 }')
    [[ -z $data ]] || printf 'note: exported data symbols:\n%s\n' "$data"
    ((rc == 0)) && echo "exported symbols match the list"
    return $rc
}

echo "library:  $lib (version $version in Cargo.toml, SONAME ${soname:-none})"
echo "headers:  $inc_dir"
echo "build:    $build"
echo "compiler: $($cc --version | head -n 1); $($cxx --version | head -n 1)"

if step "compile abi_c11" "$cc" -std=c11 "${warnings[@]}" -I"$inc_dir" "${version_defs[@]}" \
    tests/abi/abi_c11.c "${link[@]}" -o "$build/abi_c11"; then
    step "run abi_c11" run_bounded "$build/abi_c11"
fi
if step "compile abi_cpp17" "$cxx" -std=c++17 "${warnings[@]}" -I"$inc_dir" "${version_defs[@]}" \
    tests/abi/abi_cpp17.cpp "${link[@]}" -o "$build/abi_cpp17"; then
    step "run abi_cpp17" run_bounded "$build/abi_cpp17"
fi

if step "compile store_abi_c11" "$cc" -std=c11 "${warnings[@]}" -I"$inc_dir" \
    tests/abi/store_abi_c11.c "${link[@]}" -o "$build/store_abi_c11"; then
    step "run store_abi_c11" run_bounded "$build/store_abi_c11"
fi
if step "compile store_abi_cpp17" "$cxx" -std=c++17 "${warnings[@]}" -I"$inc_dir" \
    tests/abi/store_abi_cpp17.cpp "${link[@]}" -o "$build/store_abi_cpp17"; then
    step "run store_abi_cpp17" run_bounded "$build/store_abi_cpp17"
fi

step "exported symbols" check_symbols

if step "compile transfer_example (C11)" "$cc" -std=c11 -O2 "${warnings[@]}" -I"$inc_dir" \
    c_examples/transfer_example.c "${link[@]}" -o "$build/transfer_example_c"; then
    step "run transfer_example (C11)" run_bounded "$build/transfer_example_c"
fi
if step "compile transfer_example (C++17)" "$cxx" -std=c++17 -O2 "${warnings[@]}" -I"$inc_dir" \
    c_examples/transfer_example.cpp "${link[@]}" -o "$build/transfer_example_cpp"; then
    step "run transfer_example (C++17)" run_bounded "$build/transfer_example_cpp"
fi

# free_port: prints a loopback TCP port nobody listens on (bounded tries).
free_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# run_store_example PROGRAM: starts mooncake_master, runs the store example PROGRAM (a name
# under $build) against it, stops the master by its PID.
run_store_example() {
    local program=$1 master=$lib_dir/mooncake_master rpc http metrics pid rc i
    rpc=$(free_port) && http=$(free_port) && metrics=$(free_port) || return 1
    "$master" --rpc_address=127.0.0.1 --rpc_port="$rpc" --metrics_host=127.0.0.1 \
        --metrics_port="$metrics" --enable_http_metadata_server=true \
        --http_metadata_server_host=127.0.0.1 --http_metadata_server_port="$http" \
        >"$build/store_master.log" 2>&1 &
    pid=$!
    for ((i = 0; i < 200; i++)); do # up to 20 s for both ports
        if (exec 3<>"/dev/tcp/127.0.0.1/$rpc") 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null; then
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    run_bounded "$build/$program" "127.0.0.1:$rpc" "http://127.0.0.1:$http/metadata"
    rc=$?
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ((rc == 0)) || tail -n 20 "$build/store_master.log"
    return $rc
}

for program in store_put_get store_unregistered; do
    if step "compile $program (C11)" "$cc" -std=c11 -O2 "${warnings[@]}" -I"$inc_dir" \
        "c_examples/$program.c" "${link[@]}" -o "$build/$program"; then
        if [[ -x $lib_dir/mooncake_master ]]; then
            step "run $program (C11)" run_store_example "$program"
        else
            summary+=("SKIP  run $program ($lib_dir/mooncake_master not built)")
        fi
    fi
done

# README.md's "Using it from C", verbatim: its C function with a main added, compiled by its
# `cc` line run from the repository root as written there, then run: the program must find
# libmooncake by its SONAME with no link made by hand (build.rs makes it beside the library).
readme_c_instructions() {
    local dir=$build/readme src cmd
    mkdir -p "$dir" || return 1
    src=$dir/my_program.c
    sed -n '/^## Using it from C/,/^## /p' README.md | sed -n '/^```c$/,/^```$/p' | sed '1d;$d' >"$src"
    grep -q copy_to_peer "$src" || { echo "README.md has no C example"; return 1; }
    printf '%s\n' 'int main(void) { return copy_to_peer("127.0.0.1:1", 0, 0, 0) == -1 ? 0 : 1; }' >>"$src"
    cmd=$(sed -n '/^## Using it from C/,/^## /p' README.md | grep -m1 '^cc ')
    [[ -n $cmd ]] || { echo "README.md has no cc line"; return 1; }
    cmd=${cmd//my_program.c/$src}
    echo "+ $cmd -o $dir/my_program"
    eval "$cmd -o '$dir/my_program'" || return 1
    # A peer nobody serves: the call must fail cleanly (-1), which needs the library loaded.
    run_bounded "$dir/my_program"
}
if [[ $lib_dir == "$root/target/release" ]]; then
    step "README.md's C instructions, verbatim" readme_c_instructions
fi

echo
echo "== C tests =="
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "test-c.sh: ${#failed[@]} step(s) failed"
    exit 1
fi
echo "test-c.sh: all passed"
