#!/bin/bash
# Runs inside the rdma-vm guest, chrooted into the host's root (see guest-init.sh), with the
# host's own bash, ip, rdma and modprobe. It builds the soft-RoCE NICs, runs the job with the
# caller's environment and directory, and leaves the job's exit status in the run directory
# (/run/rdma-vm here, a directory of run.sh's on the host). No status file means exit 125.
set -uo pipefail
ctl=/run/rdma-vm
# shellcheck source=/dev/null
. "$ctl/config"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

out=/dev/hvc0
# The virtio console is a tty: no \n -> \r\n translation, so the job's bytes arrive unchanged.
stty -F "$out" raw -echo 2>/dev/null || true
trace() {
  local up rest
  [ -n "${debug:-}" ] || return 0
  read -r up rest < /proc/uptime
  echo "rdma-vm guest: ${up}s $*" > "$out"
}
fail() { echo "rdma-vm guest: $*" > "$out"; exit 1; }

trace "chroot ready"
# Everything below runs under emulation, where each program started costs a noticeable
# fraction of a second: sysctls are plain writes, and ip runs once, with a batch.
echo rdma-vm > /proc/sys/kernel/hostname
sysctl_set() { echo "$2" > "/proc/sys/${1//.//}"; }
# Deterministic GID tables: no IPv6 addresses (and so no extra GIDs) on the RoCE links.
sysctl_set net.ipv6.conf.default.disable_ipv6 1
# Traffic between two NICs of this one machine leaves one veth and enters another with a
# source address that is local here: accept it (accept_local, no reverse-path filter), and
# let only the addressed veth answer ARP, so that each NIC receives its own packets.
for k in all default; do
  sysctl_set "net.ipv4.conf.$k.rp_filter" 0
  sysctl_set "net.ipv4.conf.$k.accept_local" 1
  sysctl_set "net.ipv4.conf.$k.arp_ignore" 1
  sysctl_set "net.ipv4.conf.$k.arp_announce" 2
done
# crc32_generic up front: rdma_rxe asks the kernel for a crc32 driver when a device is added.
modprobe -a veth bridge crc32_generic rdma_rxe rdma_ucm ib_uverbs || fail "modprobe failed"
trace "modules loaded"

addr() { echo "192.0.2.$(($1 + 1))"; }
{
  echo "link set lo up"
  echo "link add br0 type bridge"
  echo "link set br0 up"
  for ((i = 0; i < nics; i++)); do
    echo "link add veth$i type veth peer name vbr$i"
    echo "link set vbr$i master br0 up"
    echo "addr add $(addr "$i")/24 dev veth$i"
    echo "link set veth$i up"
    # Each NIC's own table: everything in 192.0.2.0/24 leaves through its veth.
    echo "route add 192.0.2.0/24 dev veth$i src $(addr "$i") table $((100 + i))"
  done
  # Without this, the kernel routes a packet for another local address through lo, which
  # rxe drops. Locally sent packets between two NICs' addresses use the sender's table
  # instead; a NIC's packets to itself stay local (rxe loops them back itself). The local
  # table moves behind these rules, and still serves whatever arrives on the veths.
  echo "rule add pref 1000 lookup local"
  echo "rule del pref 0 lookup local"
  for ((i = 0; i < nics; i++)); do
    echo "rule add pref 50 iif lo from $(addr "$i") to $(addr "$i") lookup local"
    for ((j = 0; j < nics; j++)); do
      [ "$i" = "$j" ] || echo "rule add pref 100 iif lo from $(addr "$i") to $(addr "$j") lookup $((100 + i))"
    done
  done
  # A veth taken down and up again (tests do that) loses the route in its table; then the
  # main table, where the kernel restores its connected route, takes over: rxe names its
  # output device, which picks that route.
  echo "rule add pref 200 iif lo from 192.0.2.0/24 to 192.0.2.0/24 lookup main"
} > /run/rdma-vm.ip
ip -batch /run/rdma-vm.ip || fail "network setup failed (ip -batch $(cat /run/rdma-vm.ip))"
trace "links and routing ready"
for ((i = 0; i < nics; i++)); do
  rdma link add "rxe$i" type rxe netdev "veth$i" || fail "rdma link add rxe$i"
done
trace "rxe devices added"
# Wait (bounded) until each port is active and has its RoCE v2 GID for the IPv4 address.
gid_index=
for ((i = 0; i < nics; i++)); do
  want=$(printf '0000:0000:0000:0000:0000:ffff:c000:02%02x' $((i + 1)))
  found=
  port=/sys/class/infiniband/rxe$i/ports/1
  for ((t = 0; t < 300; t++)); do
    state= gid= type=
    read -r state < "$port/state" 2>/dev/null || true
    if [[ $state == *ACTIVE* ]]; then
      # Builtins only (read, not cat): this loop is on the boot's critical path.
      for g in "$port"/gids/*; do
        n=${g##*/}
        read -r gid < "$g" 2>/dev/null || continue
        [ "$gid" = "$want" ] || continue
        read -r type < "$port/gid_attrs/types/$n" 2>/dev/null || true
        if [ "$type" = "RoCE v2" ]; then found=$n; break; fi
      done
    fi
    [ -n "$found" ] && break
    sleep 0.1
  done
  [ -n "$found" ] || fail "rxe$i: no active port with a RoCE v2 GID for $(addr "$i") after 30 s"
  [ "$i" = 0 ] && gid_index=$found
  [ "$found" = "$gid_index" ] || fail "rxe$i: RoCE v2 IPv4 GID at index $found, rxe0's at $gid_index"
done
devices=$(for ((i = 0; i < nics; i++)); do printf 'rxe%d ' "$i"; done)
trace "rdma ready: $devices(GID index $gid_index)"

# The caller's environment and arguments, as run.sh saved them (NUL-separated).
mapfile -d '' -t envs < "$ctl/env"
mapfile -d '' -t argv < "$ctl/argv"
cd "$(cat "$ctl/cwd")" || fail "no directory $(cat "$ctl/cwd") here"
# A job that is a file but not executable (a script) runs with bash.
if [ -f "${argv[0]}" ] && [ ! -x "${argv[0]}" ]; then
  argv=(bash "${argv[@]}")
fi

# The job writes into a pipe, as under CI, rather than onto the console tty. Its exit ends
# the run even if something it started still holds the pipe: the drain below is bounded.
fifo=/run/rdma-vm.out   # on the guest's tmpfs: the run directory is 9p, no FIFOs there
rm -f "$fifo"
mkfifo "$fifo" || fail "mkfifo"
cat "$fifo" > "$out" &
catpid=$!
env -i "${envs[@]}" RDMA_VM_GUEST=1 RDMA_VM_DEVICES="${devices% }" RDMA_VM_GID_INDEX="$gid_index" \
  RDMA_VM_NICS="$nics" RDMA_VM_NUMA="$numa" "${argv[@]}" < /dev/null > "$fifo" 2>&1 &
jobpid=$!
trace "job started"
wait "$jobpid"
rc=$?
for ((t = 0; t < 20; t++)); do
  kill -0 "$catpid" 2>/dev/null || break
  sleep 0.1
done
kill "$catpid" 2>/dev/null || true
rm -f "$fifo"
trace "job exited with $rc"
echo "$rc" > "$ctl/status"
sync
