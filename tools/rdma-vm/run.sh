#!/usr/bin/env bash
# Runs JOB [ARGS...] in a QEMU guest with soft-RoCE NICs (see README.md in this directory).
# The exit status is the job's; 124 when --timeout ran out, 125 when the guest never reported
# a status (setup.sh not run, the kernel or the guest's setup failed), 2 for bad arguments.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${MOONCAKE_RDMA_VM_CACHE:-/var/tmp/mooncake-rdma-vm}

usage() {
  cat >&2 <<'EOF'
usage: run.sh [--nics N] [--numa N] [--cpus N] [--mem SIZE] [--timeout SECS] [--] JOB [ARGS...]
  --nics N       soft-RoCE devices rxe0..rxeN-1 on veth0..vethN-1, 192.0.2.(i+1)/24 (1..16, default 1)
  --numa N       NUMA nodes; RAM and vCPUs are split between them (default 1)
  --cpus N       vCPUs (default 2, raised to --numa if lower)
  --mem SIZE     guest RAM, e.g. 2G or 1536M (default 2G)
  --timeout SECS whole run, boot included; qemu is killed and run.sh exits 124 (default 300)
EOF
  exit 2
}

nics=1 numa=1 cpus=2 mem=2G timeout=300
while [ $# -gt 0 ]; do
  case $1 in
    --nics|--numa|--cpus|--mem|--timeout)
      [ $# -ge 2 ] || usage
      v=$2; o=${1#--}; shift 2 ;;
    --nics=*|--numa=*|--cpus=*|--mem=*|--timeout=*)
      v=${1#*=}; o=${1%%=*}; o=${o#--}; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    -*) echo "run.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
  case $o in
    mem) mem=$v ;;
    *) [[ $v =~ ^[0-9]+$ ]] || { echo "run.sh: --$o wants a number, not '$v'" >&2; usage; }
       printf -v "$o" '%d' "$((10#$v))" ;;
  esac
done
[ $# -ge 1 ] || usage
((nics >= 1 && nics <= 16)) || { echo "run.sh: --nics must be 1..16" >&2; usage; }
((numa >= 1 && numa <= 8)) || { echo "run.sh: --numa must be 1..8" >&2; usage; }
((timeout >= 1)) || { echo "run.sh: --timeout must be at least 1" >&2; usage; }
((cpus >= numa)) || cpus=$numa
case $mem in
  *[gG]) mem_mib=$((${mem%[gG]} * 1024)) ;;
  *[mM]) mem_mib=${mem%[mM]} ;;
  *) echo "run.sh: --mem wants e.g. 2G or 1536M" >&2; usage ;;
esac
[[ $mem_mib =~ ^[0-9]+$ ]] && ((mem_mib >= 256 * numa)) || { echo "run.sh: --mem too small or malformed" >&2; usage; }

if [ ! -f "$cache/current" ] || [ ! -f "$cache/initramfs.cpio.gz" ]; then
  echo "run.sh: no guest kernel in $cache: run tools/rdma-vm/setup.sh (as root) first" >&2
  exit 125
fi
krel= kdir=
# shellcheck source=/dev/null
. "$cache/current"
# The initramfs embeds guest-init.sh: refuse one built from another version of it.
init_sum=$(sha256sum "$here/guest-init.sh" | cut -d' ' -f1)
if [ "$(cut -d' ' -f2 "$cache/initramfs.stamp" 2>/dev/null)" != "$init_sum" ]; then
  echo "run.sh: the initramfs in $cache is stale (guest-init.sh changed): run setup.sh again" >&2
  exit 125
fi
qemu=$(command -v qemu-system-x86_64) || { echo "run.sh: qemu-system-x86_64 missing: run setup.sh" >&2; exit 125; }

# setup.sh leaves an uncompressed vmlinux beside the bzImage: qemu boots it directly (PVH),
# which saves the seconds that decompressing the kernel takes under emulation.
kernel=$kdir/vmlinux
[ -f "$kernel" ] || kernel=$kdir/boot/vmlinuz-$krel

# The run directory is the guest's window back to us: configuration, job, exit status.
run=$(mktemp -d "${TMPDIR:-/tmp}/rdma-vm.XXXXXX")
qpid= spid=
cleanup() {
  # Only what this script started, by PID.
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
  [ -z "$spid" ] || kill "$spid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

debug=${RDMA_VM_DEBUG:-}
cat > "$run/config" <<EOF
krel='$krel'
kdir='$kdir'
nics=$nics
numa=$numa
debug='$debug'
EOF
cp "$here/guest-job.sh" "$run/guest-job.sh"
printf '%s\0' "$@" > "$run/argv"
env -0 > "$run/env"
pwd > "$run/cwd"

args=(-nodefaults -no-user-config -no-reboot -display none -nic none
  -machine pc -accel tcg,thread=multi -cpu max -smp "$cpus" -m "${mem_mib}M"
  -kernel "$kernel" -initrd "$cache/initramfs.cpio.gz")
if ((numa > 1)); then
  # vCPUs and RAM split as evenly as they go; the last node takes the remainders.
  first=0
  for ((k = 0; k < numa; k++)); do
    ncpu=$((cpus / numa)); nmem=$((mem_mib / numa))
    if ((k == numa - 1)); then ncpu=$((cpus - first)); nmem=$((mem_mib - nmem * (numa - 1))); fi
    args+=(-object "memory-backend-ram,id=mem$k,size=${nmem}M"
      -numa "node,nodeid=$k,cpus=$first-$((first + ncpu - 1)),memdev=mem$k")
    first=$((first + ncpu))
  done
  for ((k = 0; k < numa; k++)); do
    for ((l = 0; l < numa; l++)); do
      ((k == l)) || args+=(-numa "dist,src=$k,dst=$l,val=20")
    done
  done
fi
kargs="console=ttyS0 panic=-1 mitigations=off"
if [ -n "$debug" ]; then kargs+=" loglevel=7"; else kargs+=" quiet loglevel=3"; fi
kargs+=" ${RDMA_VM_KARGS:-}"
args+=(-append "$kargs"
  # Kernel messages and init's own go to a log, shown when something went wrong.
  -serial "file:$run/console.log"
  # The job's output: a virtio console streamed to our stdout.
  -device virtio-serial-pci -chardev stdio,id=job,signal=off -device virtconsole,chardev=job
  -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev "local,id=ctl,path=$run,security_model=none"
  -device virtio-9p-pci,fsdev=ctl,mount_tag=ctl)

"$qemu" "${args[@]}" < /dev/null 2> "$run/qemu.err" &
qpid=$!
sleep "$timeout" &
spid=$!
# Whichever ends first: qemu (the guest powered off) or the timer.
wait -n "$qpid" "$spid" || true
if kill -0 "$qpid" 2>/dev/null; then
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  qpid=
  echo "rdma-vm: timed out after ${timeout}s; qemu killed" >&2
  exit 124
fi
wait "$qpid" 2>/dev/null || true
qpid=
kill "$spid" 2>/dev/null || true
wait "$spid" 2>/dev/null || true
spid=

if [ -n "$debug" ]; then
  echo "rdma-vm: kernel console:" >&2
  cat "$run/console.log" >&2 || true
fi
if [ ! -f "$run/status" ]; then
  echo "rdma-vm: the guest did not run the job (exit 125); its console said:" >&2
  tail -n 40 "$run/console.log" >&2 2>/dev/null || true
  cat "$run/qemu.err" >&2 2>/dev/null || true
  exit 125
fi
status=$(cat "$run/status")
[[ $status =~ ^[0-9]+$ ]] || status=125
exit "$status"
