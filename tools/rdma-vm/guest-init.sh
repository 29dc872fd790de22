#!/bin/sh
# PID 1 of the rdma-vm guest (busybox sh, inside the initramfs built by setup.sh).
# It stacks a tmpfs over the host's root (read-only virtio-9p) so that the job can write,
# makes the guest kernel's modules visible there, and hands over to guest-job.sh chrooted
# into that root. Whatever happens, it ends by rebooting, which makes qemu (-no-reboot) exit.
# Its own messages go to the kernel console (ttyS0), which run.sh keeps in a log file.
/bin/busybox --install -s /bin
export PATH=/bin

die() {
  echo "rdma-vm init: $*"
  sync
  reboot -f
  sleep 5   # reboot -f does not return; the sleep only keeps PID 1 from exiting first
  exit 1
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r m; do
  insmod "/lib/modules/$m" || die "insmod $m failed"
done < /modules.order

# ctl: the run's own directory on the host (read-write): config, job, and the status file.
mkdir -p /ctl /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ctl /ctl || die "cannot mount the run directory"
. /ctl/config || die "no /ctl/config"
# cache=loose: the host root does not change under a run (see README), and it is much faster.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower \
  || die "cannot mount the host root"
mount -t tmpfs -o mode=755 tmpfs /rw || die "tmpfs"
mkdir -p /rw/upper /rw/work
# No index/xino/metacopy: 9p offers neither file handles nor stable inode numbers for them.
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work,index=off,xino=off,metacopy=off,redirect_dir=off \
  overlay /newroot || die "cannot mount the overlay"

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
# /run holds the host's sockets and pid files, which mean nothing here.
mount -t tmpfs -o mode=755 tmpfs $r/run
mkdir -p $r/run/rdma-vm
mount --bind /ctl $r/run/rdma-vm
# modprobe in the job finds the guest kernel's modules where it expects them.
mkdir -p "$r/lib/modules/$krel"
mount --bind "$r$kdir/lib/modules/$krel" "$r/lib/modules/$krel" || die "no modules for $krel under $kdir"

# The kernel runs /sbin/modprobe from this initramfs when a module asks for another at run
# time (rdma_rxe wants a crc32 driver): send it to the real modprobe under the new root.
mkdir -p /sbin
printf '#!/bin/sh\nexec chroot %s /sbin/modprobe "$@"\n' "$r" > /sbin/modprobe
chmod 755 /sbin/modprobe

chroot $r /bin/bash /run/rdma-vm/guest-job.sh
echo "rdma-vm init: guest-job.sh returned $?"
sync
reboot -f
sleep 5
