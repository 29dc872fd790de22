#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Tests libmooncake's packaging for C and C++ users, from an installed prefix (ci/install.sh):
#   install          into a fresh prefix, then again: the second run changes nothing
#   layout           files, symlinks, SONAME libmooncake.so.<major>, and a NEEDED list free of
#                    libibverbs, librdmacm and libnuma (the library must load without them)
#   relocatable      no absolute path in the CMake and pkg-config files
#   headers          each public header alone, and twice, in C11 and C++17, -Wall -Wextra -Werror
#                    -pedantic
#   cmake            c_examples/ through find_package(Mooncake REQUIRED), shared and static,
#                    both programs run (two processes each, 256 MiB verified)
#   pkg-config       the same programs through `pkg-config --cflags --libs mooncake` (shared)
#                    and `--static` (libmooncake.a), run
#   find_package     twice in one scope, in a subdirectory, the config include()d twice, and
#                    the version file's answers (compatible, exact, incompatible, ranges)
#   moved prefix     the prefix is moved with mv; CMake and pkg-config builds from the new
#                    place find it there, and the programs run
#
# Usage: ci/test-packaging.sh [LIB_DIR]
#   LIB_DIR  holds a built libmooncake.so and libmooncake.a (ci/install.sh --lib-dir); without
#            it, ci/install.sh runs `cargo build --release` first.
# Environment: CC (gcc), CXX (g++), TEST_TIMEOUT (seconds per program run, 300).
# Needs bash, coreutils, gcc, g++, binutils (readelf), cmake and pkg-config (ci/setup.sh installs
# them). Works in target/packaging-tests/, which it empties first. Every step runs even after a
# failure, except those that need the installed prefix; the exit status is 1 if any failed.

set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lib_dir=${1:+$(realpath -m -- "$1")}
cc=${CC:-gcc}
cxx=${CXX:-g++}
limit=${TEST_TIMEOUT:-300}
work=$root/target/packaging-tests
prefix=$work/prefix
moved=$work/moved/prefix # where the prefix goes for the relocation steps
warnings=(-Wall -Wextra -Werror -pedantic)

cd "$root" || exit 1

die() {
    echo "test-packaging.sh: $*" >&2
    exit 1
}
for tool in "$cc" "$cxx" cmake pkg-config readelf timeout realpath; do
    command -v "$tool" >/dev/null || die "$tool not found (run ci/setup.sh)"
done

version=$(sed -n 's/^version *= *"\([0-9]*\.[0-9]*\.[0-9]*\)".*/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version = \"X.Y.Z\" in Cargo.toml"
IFS=. read -r v_major v_minor _ <<<"$version"
soname=libmooncake.so.$v_major

failed=()
summary=()

# step NAME COMMAND...: prints and runs COMMAND, records its result and time.
step() {
    local name=$1
    shift
    echo
    echo "=== $name"
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
    return "$rc"
}

# finish: prints the summary and exits with the overall result.
finish() {
    echo
    echo "== packaging tests =="
    printf '%s\n' "${summary[@]}"
    if ((${#failed[@]} > 0)); then
        echo "test-packaging.sh: ${#failed[@]} step(s) failed"
        exit 1
    fi
    echo "test-packaging.sh: all passed"
    exit 0
}

# bounded SECONDS COMMAND...: COMMAND under `timeout` (exit 124 when it ran too long).
bounded() {
    local secs=$1
    shift
    timeout --kill-after=10 "$secs" "$@"
}

# ---- install ----------------------------------------------------------------------------------

install_into() { # install_into PREFIX [--no-build]
    local args=(--prefix "$1")
    if [[ -n $lib_dir ]]; then
        args+=(--lib-dir "$lib_dir")
    elif [[ ${2:-} == --no-build ]]; then
        args+=(--no-build)
    fi
    # A cold release build on a small machine takes minutes; the bound is generous.
    bounded 3600 sh ci/install.sh "${args[@]}"
}

# snapshot DIR: one line per entry under DIR: its kind, path, and link target or checksum.
snapshot() {
    (cd "$1" && find . | LC_ALL=C sort | while IFS= read -r p; do
        if [[ -L $p ]]; then
            echo "link $p -> $(readlink "$p")"
        elif [[ -f $p ]]; then
            echo "file $p $(stat -c %a "$p") $(cksum <"$p")"
        else
            echo "dir  $p"
        fi
    done)
}

install_twice() {
    snapshot "$prefix" >"$work/install-1.txt" || return 1
    install_into "$prefix" --no-build || return 1
    snapshot "$prefix" >"$work/install-2.txt" || return 1
    if ! diff -u "$work/install-1.txt" "$work/install-2.txt"; then
        echo "the second install changed the prefix"
        return 1
    fi
    echo "second install left $(wc -l <"$work/install-2.txt") entries unchanged"
}

# ---- what was installed -----------------------------------------------------------------------

check_layout() {
    local rc=0 lib=$prefix/lib
    local f
    for f in "lib/libmooncake.so.$version" lib/libmooncake.a \
        include/mooncake/transfer_engine_c.h include/mooncake/store_c.h include/mooncake/mooncake.h \
        lib/cmake/Mooncake/MooncakeConfig.cmake lib/cmake/Mooncake/MooncakeConfigVersion.cmake \
        lib/pkgconfig/mooncake.pc; do
        if [[ -f $prefix/$f && ! -L $prefix/$f ]]; then
            echo "ok    $f"
        else
            echo "FAIL  $f is missing or not a plain file"
            rc=1
        fi
    done
    # The links are relative (the prefix can move) and chain dev name -> SONAME -> file.
    check_link() { # check_link NAME TARGET
        if [[ -L $lib/$1 && $(readlink "$lib/$1") == "$2" ]]; then
            echo "ok    lib/$1 -> $2"
        else
            echo "FAIL  lib/$1 should be a link to $2"
            rc=1
        fi
    }
    check_link "$soname" "libmooncake.so.$version"
    check_link libmooncake.so "$soname"
    if find "$prefix" -name '*.tmp.*' | grep .; then
        echo "FAIL  temporary files left behind"
        rc=1
    fi
    return "$rc"
}

check_dynamic() {
    local lib=$prefix/lib/libmooncake.so.$version
    local dynamic got needed
    dynamic=$(LC_ALL=C readelf -d "$lib") || return 1
    got=$(sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p' <<<"$dynamic")
    needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' <<<"$dynamic")
    echo "SONAME: ${got:-none}"
    echo "NEEDED: ${needed//$'\n'/ }"
    local rc=0
    if [[ $got != "$soname" ]]; then
        echo "FAIL  the SONAME should be $soname"
        rc=1
    fi
    # libibverbs is opened at run time (dlopen, docs/RDMA.md) and NUMA comes from sysfs and a
    # raw system call, so none is linked: the library must load on a machine without them.
    if grep -E '^(libibverbs|librdmacm|libnuma)\.' <<<"$needed"; then
        echo "FAIL  the library must not need libibverbs, librdmacm or libnuma"
        rc=1
    fi
    return "$rc"
}

# No installed CMake or pkg-config file may name the prefix or this checkout.
check_no_absolute_paths() {
    local rc=0 f
    for f in "$prefix"/lib/cmake/Mooncake/*.cmake "$prefix"/lib/pkgconfig/mooncake.pc; do
        if grep -nF -e "$prefix" -e "$root" "$f"; then
            echo "FAIL  $f holds an absolute path"
            rc=1
        else
            echo "ok    ${f#"$prefix"/}"
        fi
    done
    return "$rc"
}

# ---- headers ----------------------------------------------------------------------------------

# compile_header LANG HEADER COPIES: a translation unit that includes HEADER COPIES times,
# compiled as C11 (LANG c) or C++17 (LANG c++) with every warning an error.
compile_header() {
    local lang=$1 header=$2 copies=$3
    local name src compiler std
    name=$(basename "$header" .h)
    if [[ $lang == c ]]; then
        src=$work/headers/${name}_x$copies.c compiler=$cc std=-std=c11
    else
        src=$work/headers/${name}_x$copies.cpp compiler=$cxx std=-std=c++17
    fi
    local i
    for ((i = 0; i < copies; i++)); do echo "#include \"$name.h\""; done >"$src"
    bounded 120 "$compiler" "$std" "${warnings[@]}" -I"$prefix/include/mooncake" \
        -c "$src" -o "${src%.*}.o"
}

# The examples spell the include as Mooncake does; <mooncake/…> with -IPREFIX/include works too.
compile_prefixed_include() {
    local src=$work/headers/prefixed.c
    printf '#include <mooncake/mooncake.h>\n#include <mooncake/transfer_engine_c.h>\n#include <mooncake/store_c.h>\n' >"$src"
    bounded 120 "$cc" -std=c11 "${warnings[@]}" -I"$prefix/include" -c "$src" -o "${src%.c}.o"
}

# ---- CMake ------------------------------------------------------------------------------------

# configure SRC BUILD PREFIX [-DOPTION…]: configures SRC against PREFIX only (no package
# registry).
configure() {
    local src=$1 build=$2 from=$3
    shift 3
    rm -rf "$build"
    bounded 300 cmake -S "$src" -B "$build" --no-warn-unused-cli -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$from" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
        -DCMAKE_C_FLAGS="${warnings[*]}" -DCMAKE_CXX_FLAGS="${warnings[*]}" "$@"
}

# found_in BUILD PREFIX: the Mooncake that CMake found for BUILD is PREFIX's.
found_in() {
    local found
    found=$(sed -n 's/^Mooncake_DIR:[A-Z]*=//p' "$1/CMakeCache.txt")
    if [[ $found != "$2/lib/cmake/Mooncake" ]]; then
        echo "FAIL  CMake found Mooncake in '$found', not in $2/lib/cmake/Mooncake"
        return 1
    fi
    echo "Mooncake_DIR=$found"
}

# needed_of BINARY: its NEEDED entries, one a line.
needed_of() {
    LC_ALL=C readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'
}

# expect_linked BINARY shared|static: a shared build needs libmooncake by its SONAME (never by
# the dev name libmooncake.so); a static one does not need it at all.
expect_linked() {
    local needed
    needed=$(needed_of "$1") || return 1
    echo "$(basename "$1") NEEDED: ${needed//$'\n'/ }"
    if [[ $2 == shared ]]; then
        grep -qx "$soname" <<<"$needed" || {
            echo "FAIL  $1 should need $soname"
            return 1
        }
    else
        ! grep -q '^libmooncake' <<<"$needed" || {
            echo "FAIL  $1 is linked statically and should not need libmooncake"
            return 1
        }
    fi
}

# cmake_examples BUILD PREFIX shared|static: builds c_examples/ with CMake, checks how the
# programs are linked, runs them through ctest.
cmake_examples() {
    local build=$1 from=$2 kind=$3 static=OFF
    [[ $kind == static ]] && static=ON
    configure "$root/c_examples" "$build" "$from" -DMOONCAKE_EXAMPLES_STATIC="$static" || return 1
    found_in "$build" "$from" || return 1
    bounded 600 cmake --build "$build" -j 2 || return 1
    expect_linked "$build/transfer_example_c" "$kind" || return 1
    expect_linked "$build/transfer_example_cpp" "$kind" || return 1
    (cd "$build" && bounded $((2 * limit + 60)) ctest --output-on-failure --timeout "$limit")
}

# The find_package project: find_package twice in one scope and once in a subdirectory, the
# config include()d twice more, a program linked against the target, and the version file.
write_find_twice_project() {
    local dir=$work/find-twice/src
    mkdir -p "$dir/sub" || return 1
    # SameMajorVersion (cmake/MooncakeConfigVersion.cmake.in): an older or equal version of the
    # same major is met; a newer one, or another major, is not.
    local incompatible="$((v_major + 1)).0;$v_major.$((v_minor + 1))"
    if ((v_major > 0)); then
        incompatible+=";$((v_major - 1)).0"
    fi
    cat >"$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.13)
project(mooncake_find_twice LANGUAGES C)

find_package(Mooncake REQUIRED)
# The searches for incompatible versions below reset Mooncake_DIR: check it now.
if(NOT Mooncake_DIR STREQUAL "$prefix/lib/cmake/Mooncake")
  message(FATAL_ERROR "found Mooncake in \${Mooncake_DIR}, not in $prefix/lib/cmake/Mooncake")
endif()
find_package(Mooncake REQUIRED)
include("\${Mooncake_DIR}/MooncakeConfig.cmake")
include("\${Mooncake_DIR}/MooncakeConfig.cmake")
add_subdirectory(sub)

# Compatible requests: this major.minor, its major's first minor, the exact version, ranges.
find_package(Mooncake $v_major.$v_minor REQUIRED)
find_package(Mooncake $v_major.0 REQUIRED)
find_package(Mooncake $version EXACT REQUIRED)
find_package(Mooncake $v_major REQUIRED)
if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.19)
  find_package(Mooncake $v_major.$v_minor...<$((v_major + 1)).0 REQUIRED)
  find_package(Mooncake 0.0.0...$version REQUIRED)
  find_package(Mooncake $((v_major + 1)).0...$((v_major + 2)).0 QUIET)
  if(Mooncake_FOUND)
    message(FATAL_ERROR "a range above $version accepted $version")
  endif()
endif()
# Incompatible ones, each in a function so that a failed search leaves this scope alone.
function(expect_incompatible requested)
  find_package(Mooncake \${requested} QUIET)
  if(Mooncake_FOUND)
    message(FATAL_ERROR "find_package(Mooncake \${requested}) accepted $version")
  endif()
  message(STATUS "find_package(Mooncake \${requested}): rejected, as it should be")
endfunction()
foreach(requested IN ITEMS $incompatible)
  expect_incompatible(\${requested})
endforeach()

add_executable(print_version print_version.c)
target_link_libraries(print_version PRIVATE Mooncake::mooncake)
EOF
    cat >"$dir/sub/CMakeLists.txt" <<'EOF'
# A subdirectory sees its parent's targets: this must not define them again.
find_package(Mooncake REQUIRED)
add_executable(print_version_static ../print_version.c)
target_link_libraries(print_version_static PRIVATE Mooncake::mooncake_static)
EOF
    cat >"$dir/print_version.c" <<'EOF'
#include "mooncake.h"
#include <stdio.h>
int main(void) {
    printf("%s\n", mooncake_version());
    return 0;
}
EOF
}

find_package_twice() {
    local build=$work/find-twice/build
    write_find_twice_project || return 1
    configure "$work/find-twice/src" "$build" "$prefix" || return 1
    bounded 600 cmake --build "$build" -j 2 || return 1
    local got
    for program in "$build/print_version" "$build/sub/print_version_static"; do
        got=$(bounded 60 "$program") || return 1
        echo "$(basename "$program"): mooncake_version() = $got"
        [[ $got == "$version" ]] || {
            echo "FAIL  expected $version"
            return 1
        }
    done
}

# ---- pkg-config -------------------------------------------------------------------------------

# pc FROM ARGS…: pkg-config seeing FROM's mooncake.pc only.
pc() {
    local from=$1
    shift
    PKG_CONFIG_PATH=$from/lib/pkgconfig PKG_CONFIG_LIBDIR=$from/lib/pkgconfig pkg-config "$@"
}

pkg_config_query() {
    local from=$1 got libdir
    got=$(pc "$from" --modversion mooncake) || return 1
    echo "modversion: $got"
    [[ $got == "$version" ]] || {
        echo "FAIL  expected $version"
        return 1
    }
    echo "cflags: $(pc "$from" --cflags mooncake)"
    echo "libs: $(pc "$from" --libs mooncake)"
    echo "static libs: $(pc "$from" --static --libs mooncake)"
    libdir=$(pc "$from" --variable=libdir mooncake) || return 1
    if [[ $(realpath -- "$libdir") != "$from/lib" ]]; then
        echo "FAIL  libdir $libdir is not $from/lib"
        return 1
    fi
}

# pkg_config_examples FROM BUILD: both programs through pkg-config, linked against the shared
# library with an rpath to it, checked and run.
pkg_config_examples() {
    local from=$1 build=$2 flags libdir
    mkdir -p "$build" || return 1
    read -r -a flags <<<"$(pc "$from" --cflags --libs mooncake)" || return 1
    libdir=$(pc "$from" --variable=libdir mooncake) || return 1
    local rpath=("-Wl,-rpath,$(realpath -- "$libdir")")
    bounded 300 "$cc" -std=c11 -O2 "${warnings[@]}" c_examples/transfer_example.c "${flags[@]}" \
        "${rpath[@]}" -o "$build/transfer_example_c" || return 1
    bounded 300 "$cxx" -std=c++17 -O2 "${warnings[@]}" c_examples/transfer_example.cpp \
        "${flags[@]}" "${rpath[@]}" -o "$build/transfer_example_cpp" || return 1
    expect_linked "$build/transfer_example_c" shared || return 1
    expect_linked "$build/transfer_example_cpp" shared || return 1
    bounded "$limit" "$build/transfer_example_c" || return 1
    bounded "$limit" "$build/transfer_example_cpp"
}

# pkg_config_static: the C program linked with libmooncake.a and the Libs.private list. The
# archive is named by path: with libmooncake.so beside it, -lmooncake would pick the .so.
pkg_config_static() {
    local build=$work/pkg-config-static cflags libs libdir
    mkdir -p "$build" || return 1
    read -r -a cflags <<<"$(pc "$prefix" --cflags mooncake)" || return 1
    read -r -a libs <<<"$(pc "$prefix" --static --libs-only-l mooncake | tr ' ' '\n' |
        grep -vx -- -lmooncake | tr '\n' ' ')" || return 1
    libdir=$(pc "$prefix" --variable=libdir mooncake) || return 1
    bounded 300 "$cc" -std=c11 -O2 "${warnings[@]}" "${cflags[@]}" c_examples/transfer_example.c \
        "$libdir/libmooncake.a" "${libs[@]}" -o "$build/transfer_example_c" || return 1
    expect_linked "$build/transfer_example_c" static || return 1
    bounded "$limit" "$build/transfer_example_c"
}

# ---- moving the prefix ------------------------------------------------------------------------

move_prefix() {
    mkdir -p "$(dirname "$moved")" && mv "$prefix" "$moved" || return 1
    echo "moved $prefix to $moved"
}

# The CMake build from the moved prefix must link and run against the moved library (its
# RUNPATH names the new place; the old one no longer exists).
cmake_moved() {
    cmake_examples "$work/cmake-moved" "$moved" shared || return 1
    local runpath
    runpath=$(LC_ALL=C readelf -d "$work/cmake-moved/transfer_example_c" |
        sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\].*/\2/p')
    echo "RUNPATH: $runpath"
    [[ ":$runpath:" == *":$moved/lib:"* ]] || {
        echo "FAIL  the RUNPATH should name $moved/lib"
        return 1
    }
}

# ---- the steps --------------------------------------------------------------------------------

rm -rf "$work" || die "cannot empty $work"
mkdir -p "$work/headers" || die "cannot create $work"
echo "libmooncake $version; work dir $work"
echo "tools: $(cmake --version | head -n 1); pkg-config $(pkg-config --version);" \
    "$($cc --version | head -n 1); $($cxx --version | head -n 1)"

# Everything else needs the installed prefix.
step "install into $prefix" install_into "$prefix" || finish
step "install again (idempotent)" install_twice
step "installed files and links" check_layout
step "SONAME and NEEDED" check_dynamic
step "no absolute paths in CMake/pkg-config files" check_no_absolute_paths

for header in "$prefix"/include/mooncake/*.h; do
    for lang in c c++; do
        for copies in 1 2; do
            step "header $(basename "$header") x$copies ($lang)" \
                compile_header "$lang" "$header" "$copies"
        done
    done
done
step "headers as <mooncake/...>" compile_prefixed_include

step "CMake: c_examples, shared" cmake_examples "$work/cmake-shared" "$prefix" shared
step "CMake: c_examples, static" cmake_examples "$work/cmake-static" "$prefix" static
step "CMake: find_package twice, versions" find_package_twice

step "pkg-config: query" pkg_config_query "$prefix"
step "pkg-config: c_examples, shared" pkg_config_examples "$prefix" "$work/pkg-config-shared"
step "pkg-config: transfer_example.c, static" pkg_config_static

step "move the prefix" move_prefix || finish
step "moved prefix: CMake" cmake_moved
step "moved prefix: pkg-config query" pkg_config_query "$moved"
step "moved prefix: pkg-config build" pkg_config_examples "$moved" "$work/pkg-config-moved"

finish
