#!/usr/bin/env bash
# Installs the wheels on Debian 11 (bullseye: glibc 2.31, Python 3.9), the oldest system the
# manylinux_2_28 wheel claims besides the 2.28 ones, and uses them there:
#
#   ci/test-wheel-debian11.sh [WHEEL_DIR]     (default $MOONCAKE_WHEEL_DIR, else dist/)
#
# 1. a bullseye root (ci/debootstrap.sh, cached under $MOONCAKE_ROOTS, default
#    /var/tmp/mooncake-roots) with python3 and python3-venv;
# 2. in it, a venv and `pip install --no-index` of every wheel in WHEEL_DIR (the package's
#    only dependencies are the alias wheels, which are there: pip gets no index and, in a
#    network namespace of its own, no network);
# 3. `mooncake_master --version`, and python/examples/transfer_100mib.py: two processes move
#    100 MiB between each other over TCP on loopback and check every byte.
# The root stays as debootstrap left it: the run's files are in a directory of their own in it
# (removed on exit), and proc and dev are mounted only during the run (unmounted by the trap).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/wheel-tests-common.sh
root=$roots/bullseye

step "bullseye root with python3 and python3-venv"
bash ci/debootstrap.sh bullseye "$root" python3 python3-venv

# Everything this run adds to the root lives here; mounts are recorded so the trap undoes
# exactly those (the rm below must never meet a live bind mount of the host's /dev).
work_rel=/tmp/mooncake-wheel-test.$$
work=$root$work_rel
mounted=()
cleanup() {
  local rc=$? m
  for (( i=${#mounted[@]}-1; i>=0; i-- )); do
    m=${mounted[$i]}
    umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null || echo "$0: could not unmount $m" >&2
  done
  if ! grep -q " $root/" /proc/mounts; then rm -rf --one-file-system "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount -t proc proc "$root/proc"; mounted+=("$root/proc")
# The host's /dev, recursively (null, urandom, shm, pts), as a slave so that unmounting it
# here never propagates back to the host.
mount --rbind /dev "$root/dev"; mounted+=("$root/dev")
mount --make-rslave "$root/dev"

mkdir -p "$work/wheels"
cp "${wheels[@]}" "$work/wheels/"
cp python/examples/transfer_100mib.py "$work/"

# Commands run in the root with a clean environment, bounded, and, where the kernel allows,
# in a network namespace with only loopback: nothing in the chroot can reach the network.
netns=()
if unshare --net -- true 2>/dev/null; then
  netns=(unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh)
else
  echo "$0: no network namespaces here; the chroot shares the host's network (pip still gets --no-index)"
fi
in_root() {  # in_root SECONDS COMMAND...
  local secs=$1; shift
  timeout -k 10 "$secs" "${netns[@]}" chroot "$root" /usr/bin/env -i \
    PATH="$work_rel/venv/bin:/usr/local/bin:/usr/bin:/bin" HOME=/root LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 MC_TCP_BIND_ADDRESS=127.0.0.1 \
    sh -c 'cd "$0" && exec "$@"' "$work_rel" "$@"
}

step "the root: $(in_root 30 sh -c 'ldd --version | head -n1; python3 --version' | tr '\n' ' ')"

step "venv and pip install --no-index ${wheels[*]##*/}"
in_root 120 python3 -m venv "$work_rel/venv"
# The wheels by name (the chroot has no shell glob of ours): pip installs them all, the
# aliases included, and resolves their requirements among them only.
in_root_wheels=()
for w in "${wheels[@]}"; do in_root_wheels+=("$work_rel/wheels/${w##*/}"); done
in_root 300 "$work_rel/venv/bin/pip" install --no-index --find-links "$work_rel/wheels" "${in_root_wheels[@]}"
in_root 60 "$work_rel/venv/bin/pip" list

step "the installed package loads its bundled library"
in_root 60 python -c '
import mooncake, mooncake._lib as lib, os
print("mooncake from", os.path.dirname(mooncake.__file__))
print("library", lib.LIB._name)
assert lib.LIB._name.startswith(os.path.dirname(mooncake.__file__)), "not the bundled library"
'

step "mooncake_master --version"
in_root 30 mooncake_master --version

step "transfer_100mib.py: two processes, 100 MiB over TCP on loopback, every byte checked"
in_root 300 python transfer_100mib.py

step "Debian 11 wheel test passed"
