#!/usr/bin/env bash
# Checks that the guest gives what the RDMA tests rely on: two NUMA nodes, two rxe NICs with
# RoCE v2 IPv4 GIDs, RC traffic rxe0 -> rxe1 and rxe0 -> rxe0 (ibv_rc_pingpong), rdma_cm
# between the two addresses (rping), and rxe1 working again after its veth went down and up.
# On the host it boots the guest on itself; exit 0 means every check passed.
set -euo pipefail

if [ -z "${RDMA_VM_GUEST:-}" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  exec "$here/run.sh" --nics 2 --numa 2 --cpus 2 --mem 2G --timeout "${SELFTEST_TIMEOUT:-400}" \
    bash "$here/selftest.sh"
fi

failed=0
check() {
  local name=$1
  shift
  if "$@"; then echo "selftest: ok   $name"; else echo "selftest: FAIL $name"; failed=1; fi
}

has_devices() { ibv_devices | grep -q rxe0 && ibv_devices | grep -q rxe1; }
two_nodes() { numactl -H | grep -q '^available: 2 nodes'; }
gid_one() {
  local d
  for d in 0 1; do
    [ "$(cat "/sys/class/infiniband/rxe$d/ports/1/gids/1")" = \
      "$(printf '0000:0000:0000:0000:0000:ffff:c000:02%02x' $((d + 1)))" ] || return 1
    [ "$(cat "/sys/class/infiniband/rxe$d/ports/1/gid_attrs/types/1")" = "RoCE v2" ] || return 1
  done
  [ "${RDMA_VM_GID_INDEX:-}" = 1 ]
}

# ibv_rc_pingpong: server on $1, client on $2 connecting to $3 (its TCP side channel).
pingpong() {
  local sdev=$1 cdev=$2 addr=$3 port=$((18515 + RANDOM % 1000)) spid rc=1 try
  timeout 120 ibv_rc_pingpong -d "$sdev" -g 1 -p "$port" -n 50 -s 4096 > /tmp/pp-server.log 2>&1 &
  spid=$!
  # The server needs a moment to listen; the client retries a bounded number of times.
  for try in $(seq 1 30); do
    if timeout 120 ibv_rc_pingpong -d "$cdev" -g 1 -p "$port" -n 50 -s 4096 "$addr" > /tmp/pp-client.log 2>&1; then
      rc=0
      break
    fi
    grep -q "Couldn't connect" /tmp/pp-client.log || break
    sleep 0.5
  done
  wait "$spid" || rc=1
  if [ "$rc" != 0 ]; then cat /tmp/pp-server.log /tmp/pp-client.log; fi
  return "$rc"
}

rping_pair() {
  local spid rc=1 try
  timeout 120 rping -s -a 192.0.2.2 -C 3 > /tmp/rping-server.log 2>&1 &
  spid=$!
  for try in $(seq 1 30); do
    if timeout 120 rping -c -a 192.0.2.2 -I 192.0.2.1 -C 3 -v > /tmp/rping-client.log 2>&1; then
      rc=0
      break
    fi
    sleep 0.5
  done
  wait "$spid" || rc=1
  if [ "$rc" != 0 ]; then cat /tmp/rping-server.log /tmp/rping-client.log; fi
  return "$rc"
}

# The same, and the packets really went over the veths (not looped back inside rxe).
pingpong_wire() {
  local before after
  before=$(cat /sys/class/net/veth1/statistics/rx_packets)
  pingpong "$@" || return 1
  after=$(cat /sys/class/net/veth1/statistics/rx_packets)
  echo "selftest: veth1 received $((after - before)) packets"
  ((after - before >= 100))
}

flap_veth1() {
  ip link set veth1 down
  ip link set veth1 up
  local t
  for t in $(seq 1 100); do
    grep -q ACTIVE /sys/class/infiniband/rxe1/ports/1/state && return 0
    sleep 0.1
  done
  return 1
}

check "rxe0 and rxe1 present" has_devices
check "two NUMA nodes" two_nodes
check "GID index 1 is RoCE v2 ::ffff:192.0.2.(i+1)" gid_one
check "RC rxe0 -> rxe1" pingpong_wire rxe1 rxe0 192.0.2.2
check "RC rxe0 -> rxe0" pingpong rxe0 rxe0 192.0.2.1
check "rping 192.0.2.1 -> 192.0.2.2" rping_pair
check "veth1 down and up again" flap_veth1
check "RC rxe0 -> rxe1 after the flap" pingpong_wire rxe1 rxe0 192.0.2.2
exit "$failed"
