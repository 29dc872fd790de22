#!/usr/bin/env bash
# Usage: ci/without-system-headers.sh CMD [ARGS...]
#
# Runs CMD where the verbs and rdmacm headers (/usr/include/infiniband, /usr/include/rdma) and
# every libclang shared library are hidden, to prove that a build needs none of them (the
# `rdma` feature builds from committed bindings, src/transport/rdma/verbs/bindings.rs). The
# hiding is bind mounts (an empty directory over the header directories, /dev/null over each
# libclang*.so*) in a private mount namespace, so nothing changes outside CMD. Needs root and
# unshare(1); otherwise it fails, unless MOONCAKE_ALLOW_HEADERS=1, which runs CMD as it is
# (with a warning).
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

header_dirs=(/usr/include/infiniband /usr/include/rdma /usr/local/include/infiniband /usr/local/include/rdma)
lib_dirs=(/lib /lib64 /usr/lib /usr/lib64 /usr/local/lib /opt)
[ -n "${LIBCLANG_PATH:-}" ] && lib_dirs+=("$LIBCLANG_PATH")

# libclang shared libraries, the files themselves (symlinks to them then lead to /dev/null).
find_libclang() {
  local dirs=() d
  for d in "${lib_dirs[@]}"; do [ -d "$d" ] && dirs+=("$d"); done
  [ "${#dirs[@]}" -eq 0 ] || { find "${dirs[@]}" -name 'libclang*.so*' -type f 2>/dev/null || true; } | sort -u
}

# Every name libclang*.so* (file or symlink) that still leads to a regular file. find's -type
# would trust the directory entry, which a bind mount does not change: test(1) stats.
visible_libclang() {
  local dirs=() d f
  for d in "${lib_dirs[@]}"; do [ -d "$d" ] && dirs+=("$d"); done
  [ "${#dirs[@]}" -eq 0 ] && return 0
  { find -L "${dirs[@]}" -name 'libclang*.so*' 2>/dev/null || true; } | sort -u | while IFS= read -r f; do
    if [ -f "$f" ]; then echo "$f"; fi
  done
}

if [ "${_MOONCAKE_HEADERS_HIDDEN_IN:-}" = "" ]; then
  why=""
  if [ "$(id -u)" -ne 0 ]; then
    why="needs root (bind mounts in a private mount namespace)"
  elif ! command -v unshare >/dev/null 2>&1; then
    why="needs unshare(1) (util-linux)"
  fi
  if [ -n "$why" ]; then
    if [ "${MOONCAKE_ALLOW_HEADERS:-}" = 1 ]; then
      echo "without-system-headers: WARNING: $why; MOONCAKE_ALLOW_HEADERS=1, so running with the headers visible: $*" >&2
      exec "$@"
    fi
    echo "without-system-headers: $why, so the headers cannot be hidden (MOONCAKE_ALLOW_HEADERS=1 runs the command anyway)" >&2
    exit 1
  fi
  empty=$(mktemp -d /tmp/mooncake-no-headers.XXXXXX)
  rc=0
  _MOONCAKE_HEADERS_HIDDEN_IN="$empty" unshare -m --propagation private bash "$0" "$@" || rc=$?
  rmdir "$empty" 2>/dev/null || true
  exit "$rc"
fi

# Inside the private namespace: hide, check, run.
empty=$_MOONCAKE_HEADERS_HIDDEN_IN
unset _MOONCAKE_HEADERS_HIDDEN_IN
for d in "${header_dirs[@]}"; do
  if [ -d "$d" ]; then
    mount --bind "$empty" "$d"
  fi
done
n=0
while IFS= read -r f; do
  mount --bind /dev/null "$f"
  n=$((n + 1))
done < <(find_libclang)

for d in "${header_dirs[@]}"; do
  if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then
    echo "without-system-headers: $d is still visible" >&2
    exit 1
  fi
done
left=$(visible_libclang)
if [ -n "$left" ]; then
  echo "without-system-headers: libclang still visible: $left" >&2
  exit 1
fi
if command -v cc >/dev/null 2>&1 && echo '#include <infiniband/verbs.h>' | cc -E -x c - >/dev/null 2>&1; then
  echo "without-system-headers: the C compiler still finds <infiniband/verbs.h>" >&2
  exit 1
fi
echo "without-system-headers: hid ${header_dirs[*]} (where present) and $n libclang libraries; running: $*" >&2
exec "$@"
