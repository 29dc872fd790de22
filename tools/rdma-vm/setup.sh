#!/usr/bin/env bash
# Prepares this machine for tools/rdma-vm/run.sh: the host packages it needs, Debian's kernel
# (downloaded and unpacked into a cache, never installed here) and a busybox initramfs.
# Run as root. Safe to run again: every step is skipped when its result is already there.
#
# Environment: MOONCAKE_RDMA_VM_CACHE (default /var/tmp/mooncake-rdma-vm) is the cache;
# MOONCAKE_RDMA_VM_KERNEL_PKG names a kernel package to use instead of the one that
# linux-image-amd64 depends on.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${MOONCAKE_RDMA_VM_CACHE:-/var/tmp/mooncake-rdma-vm}

if [ "$(id -u)" != 0 ]; then
  echo "rdma-vm setup: must run as root (it installs packages)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# Host side: qemu and busybox build and boot the guest; kmod (depmod) indexes the guest's
# modules; the rest runs inside the guest, which executes the host's own binaries.
pkgs=(qemu-system-x86 busybox-static kmod cpio xz-utils iproute2 procps
      ibverbs-providers ibverbs-utils rdmacm-utils numactl)
missing=()
for p in "${pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
apt_updated=
if [ ${#missing[@]} -gt 0 ]; then
  echo "rdma-vm setup: installing ${missing[*]}"
  apt-get update -qq
  apt_updated=1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Which kernel: the one Debian's meta package points at today, unless pinned.
pkg=${MOONCAKE_RDMA_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  if [ -z "$pkg" ] && [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
    pkg=$(apt-cache depends linux-image-amd64 \
      | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  fi
fi
[ -n "$pkg" ] || { echo "rdma-vm setup: cannot tell which kernel package to use" >&2; exit 1; }
kver=${pkg#linux-image-}
# Some package names carry a suffix after the release (e.g. -unsigned); the release is what
# lib/modules is named after, so read it back from the unpacked tree below.
kdir=$cache/kernel-$pkg

mkdir -p "$cache"
if [ ! -f "$kdir/.unpacked" ]; then
  echo "rdma-vm setup: fetching $pkg"
  rm -rf "$kdir" "$cache/download"
  mkdir -p "$cache/download"
  # apt-get download writes to the current directory; _apt cannot write to a root-owned one,
  # which only costs a warning, so keep it quiet.
  if ! (cd "$cache/download" && apt-get download -qq "$pkg" 2>/dev/null); then
    if [ -z "$apt_updated" ]; then
      apt-get update -qq
      apt_updated=1
    fi
    (cd "$cache/download" && apt-get download -qq "$pkg" 2>/dev/null)
  fi
  mkdir -p "$kdir.tmp"
  dpkg-deb -x "$cache"/download/*.deb "$kdir.tmp"
  rm -rf "$cache/download"
  mv "$kdir.tmp" "$kdir"
  touch "$kdir/.unpacked"
fi
# The release string: the one directory under lib/modules.
krel=$(ls "$kdir/lib/modules" | head -n1)
[ -n "$krel" ] && [ -f "$kdir/boot/vmlinuz-$krel" ] || { echo "rdma-vm setup: $kdir holds no kernel" >&2; exit 1; }
if [ ! -f "$kdir/lib/modules/$krel/modules.dep" ] || [ ! -s "$kdir/lib/modules/$krel/modules.dep.bin" ]; then
  depmod -b "$kdir" "$krel"
fi
# An uncompressed vmlinux boots several seconds faster under TCG than the bzImage, which has
# to decompress itself first (qemu starts it through its PVH note). Debian's bzImage holds an
# xz stream; xz complains about the bytes after it, so judge the result by its ELF header.
if [ ! -f "$kdir/vmlinux" ]; then
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kdir/boot/vmlinuz-$krel" | head -n1 | cut -d: -f1 || true)
  if [ -n "$off" ]; then
    tail -c +$((off + 1)) "$kdir/boot/vmlinuz-$krel" | xz -dc > "$kdir/vmlinux.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$kdir/vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      mv "$kdir/vmlinux.tmp" "$kdir/vmlinux"
    fi
  fi
  rm -f "$kdir/vmlinux.tmp"
fi
# Older kernels in the cache are dropped so that it does not grow with every Debian update.
for old in "$cache"/kernel-*; do
  [ "$old" = "$kdir" ] || rm -rf "$old"
done

# The initramfs only has to reach the host's root: busybox, our init, and the modules for
# virtio-9p, overlayfs and the virtio console (built as modules in Debian's kernel).
initrd=$cache/initramfs.cpio.gz
stamp="$krel $(sha256sum "$here/guest-init.sh" | cut -d' ' -f1) $(sha256sum /bin/busybox | cut -d' ' -f1)"
if [ ! -f "$initrd" ] || [ "$(cat "$cache/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "rdma-vm setup: building the initramfs for $krel"
  moddir=$kdir/lib/modules/$krel
  # Resolve dependencies from modules.dep, dependencies first, each module once.
  declare -A seen=()
  order=()
  add() {
    local name=$1 line path dep
    line=$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 || true)
    [ -n "$line" ] || return 0   # built into the kernel
    path=${line%%:*}
    [ -z "${seen[$path]:-}" ] || return 0
    seen[$path]=1
    for dep in ${line#*:}; do
      dep=${dep##*/}
      add "${dep%%.ko*}"
    done
    order+=("$path")
  }
  for m in virtio_pci virtio_console 9pnet_virtio 9p overlay; do add "$m"; done

  work=$(mktemp -d "$cache/initramfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work"/{bin,dev,proc,sys,mnt,lib/modules}
  cp /bin/busybox "$work/bin/busybox"
  ln -s busybox "$work/bin/sh"
  : > "$work/modules.order"
  for path in "${order[@]}"; do
    base=${path##*/}
    case $base in
      *.ko.xz) xz -dc "$moddir/$path" > "$work/lib/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$moddir/$path" > "$work/lib/modules/${base%.zst}"; base=${base%.zst} ;;
      *) cp "$moddir/$path" "$work/lib/modules/$base" ;;
    esac
    echo "$base" >> "$work/modules.order"
  done
  install -m 755 "$here/guest-init.sh" "$work/init"
  (cd "$work" && find . -mindepth 1 | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  echo "$stamp" > "$cache/initramfs.stamp"
  rm -rf "$work"
  trap - EXIT
fi

# run.sh reads this to find the kernel.
printf 'krel=%s\nkdir=%s\n' "$krel" "$kdir" > "$cache/current.tmp"
mv "$cache/current.tmp" "$cache/current"
echo "rdma-vm setup: ready ($krel in $cache)"
