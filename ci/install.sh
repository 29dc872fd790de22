#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Installs libmooncake for C and C++ programs under a prefix:
#   PREFIX/lib/libmooncake.so.X.Y.Z              the shared library (X.Y.Z: Cargo.toml's version)
#   PREFIX/lib/libmooncake.so.N -> ….so.X.Y.Z     its SONAME (N: the ABI version, see build.rs)
#   PREFIX/lib/libmooncake.so   -> ….so.N         for the linker's -lmooncake
#   PREFIX/lib/libmooncake.a
#   PREFIX/include/mooncake/transfer_engine_c.h, store_c.h, mooncake.h
#   PREFIX/lib/cmake/Mooncake/MooncakeConfig.cmake, MooncakeConfigVersion.cmake
#   PREFIX/lib/pkgconfig/mooncake.pc
# The CMake and pkg-config files hold no absolute path, so the prefix can be moved afterwards.
#
# Usage: ci/install.sh --prefix DIR [--lib-dir DIR] [--no-build]
#   --prefix DIR   where to install (created if missing)
#   --lib-dir DIR  take libmooncake.so and libmooncake.a from DIR instead of building them
#                  (implies --no-build)
#   --no-build     do not run `cargo build --release`; use what target/release holds
#                  (or $CARGO_TARGET_DIR/release)
# Idempotent: a second run rewrites the same files. Files of other versions already in the
# prefix are left alone. Each file is copied beside its destination and renamed over it, so a
# program that has the old library loaded keeps running. Needs sh, sed and coreutils-level
# POSIX tools, plus readelf (binutils) to read the library's SONAME; cargo unless --no-build.

set -eu

# What libmooncake.a needs besides itself, as `cargo rustc --release --lib -- --print
# native-static-libs` printed it (Linux, glibc). ci/test-packaging.sh links the examples
# statically with this list and runs them, so a library missing here fails there.
STATIC_LIBS="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

say() { echo "ci/install.sh: $*"; }
die() {
    echo "ci/install.sh: error: $*" >&2
    exit 1
}
usage() {
    sed -n 's/^# \{0,1\}//; /^Usage:/,/^Idempotent/p' "$0" | sed '$d' >&2
    exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=
lib_dir=
build=yes
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --lib-dir) [ $# -ge 2 ] || usage; lib_dir=$2; build=no; shift 2 ;;
        --lib-dir=*) lib_dir=${1#--lib-dir=}; build=no; shift ;;
        --no-build) build=no; shift ;;
        -h | --help) usage ;;
        *) echo "ci/install.sh: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$prefix" ] || usage
# Relative directories are taken from where the script was started, before the cd below.
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
if [ -n "$lib_dir" ]; then
    case $lib_dir in /*) ;; *) lib_dir=$(pwd)/$lib_dir ;; esac
fi
cd "$root"

if [ -z "$lib_dir" ]; then
    target_dir=${CARGO_TARGET_DIR:-target}
    case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
    lib_dir=$target_dir/release
fi
if [ "$build" = yes ]; then
    say "cargo build --release"
    cargo build --release
fi

shared=$lib_dir/libmooncake.so
static=$lib_dir/libmooncake.a
for f in "$shared" "$static" include/transfer_engine_c.h include/store_c.h include/mooncake.h; do
    [ -f "$f" ] || die "$f not found (build with: cargo build --release)"
done
command -v readelf >/dev/null 2>&1 || die "readelf not found (Debian: apt-get install binutils)"

version=$(sed -n 's/^version *= *"\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\)".*/\1/p' Cargo.toml |
    head -n 1)
[ -n "$version" ] || die "no version = \"X.Y.Z\" in Cargo.toml"
major=${version%%.*}

# The SONAME is build.rs's choice; read it from the library rather than repeating the rule here,
# and check that it is the one this version should have (a stale build would not be).
soname=$(LC_ALL=C readelf -d "$shared" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ -n "$soname" ] || die "$shared has no SONAME (is build.rs in place? rebuild it)"
[ "$soname" = "libmooncake.so.$major" ] ||
    die "$shared has SONAME $soname; Cargo.toml's $version wants libmooncake.so.$major (rebuild it)"
real=libmooncake.so.$version

case $(LC_ALL=C readelf -h "$shared" | sed -n 's/^ *Class: *//p') in
    ELF64) sizeof_void_p=8 ;;
    ELF32) sizeof_void_p=4 ;;
    *) die "cannot tell the ELF class of $shared" ;;
esac

# put SRC DEST MODE: copies SRC beside DEST, then renames it over DEST (atomic for readers).
put() {
    say "install $2"
    cp "$1" "$2.tmp.$$"
    chmod "$3" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
}

# fill TEMPLATE DEST: writes TEMPLATE with every @MOONCAKE_…@ placeholder replaced.
fill() {
    say "install $2 (from $1)"
    cmake_libs=$(echo "$STATIC_LIBS" | sed 's/^-l//; s/ -l/;/g')
    sed -e "s|@MOONCAKE_VERSION@|$version|g" \
        -e "s|@MOONCAKE_SONAME@|$soname|g" \
        -e "s|@MOONCAKE_SHARED_FILE@|$real|g" \
        -e "s|@MOONCAKE_STATIC_LIBS@|$STATIC_LIBS|g" \
        -e "s|@MOONCAKE_STATIC_LIBS_CMAKE@|$cmake_libs|g" \
        -e "s|@MOONCAKE_SIZEOF_VOID_P@|$sizeof_void_p|g" \
        "$1" >"$2.tmp.$$"
    if grep -n '@MOONCAKE_[A-Z_]*@' "$2.tmp.$$" >&2; then
        rm -f "$2.tmp.$$"
        die "$1 has a placeholder this script does not fill"
    fi
    chmod 644 "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
}

# link TARGET NAME: NAME becomes a symbolic link to TARGET (in the same directory).
link() {
    say "link $2 -> $1"
    ln -sf "$1" "$2"
}

say "libmooncake $version (SONAME $soname) from $lib_dir into $prefix"
mkdir -p "$prefix/lib/cmake/Mooncake" "$prefix/lib/pkgconfig" "$prefix/include/mooncake"

put "$shared" "$prefix/lib/$real" 755
link "$real" "$prefix/lib/$soname"
link "$soname" "$prefix/lib/libmooncake.so"
put "$static" "$prefix/lib/libmooncake.a" 644
put include/transfer_engine_c.h "$prefix/include/mooncake/transfer_engine_c.h" 644
put include/store_c.h "$prefix/include/mooncake/store_c.h" 644
put include/mooncake.h "$prefix/include/mooncake/mooncake.h" 644
fill cmake/MooncakeConfig.cmake.in "$prefix/lib/cmake/Mooncake/MooncakeConfig.cmake"
fill cmake/MooncakeConfigVersion.cmake.in "$prefix/lib/cmake/Mooncake/MooncakeConfigVersion.cmake"
fill cmake/mooncake.pc.in "$prefix/lib/pkgconfig/mooncake.pc"
say "done"
