#!/usr/bin/env python3
"""Transfer Engine throughput and latency through the public Python API, loopback TCP only.

The script uses nothing but `mooncake.engine.TransferEngine` and numpy, so the same file runs
under Mooncake's wheel and under our package; which one is measured depends only on the
interpreter (and PYTHONPATH / MOONCAKE_LIB) it is started with.

Scenarios (--scenarios):
  remote  this process starts a copy of itself in the `target` role (its own engine and a
          registered --buf-mib buffer) and moves data to and from that buffer;
  local   the engine moves data between two of its own registered buffers, naming its own
          session as the peer.
Per (scenario, op, block size), two call patterns are timed for --duration seconds (or at most
--max-ops blocks):
  single  one transfer_sync_write/read call per block;
  batch   batch_transfer_sync_write/read with min(--batch, buffer / block) blocks per call.
Each call is timed with perf_counter_ns, Python overhead included; GB/s is bytes (1e9 a GB)
over the wall time of the point.
Before timing, a random pattern is written to the peer and read back (the `verify` map).

Output: a JSON document on stdout (and in --out), a short table on stderr:
  {"mooncake_path": dir of the imported package, "engine_file": ..., "args": {...},
   "verify": {scenario: bool}, "rows": [{"scenario", "mode", "op", "block", "batch", "ops",
   "calls", "seconds", "ops_per_s", "GBps", "lat_p50_us", "lat_p99_us"}]}
Latency is per call, so a batch row's latency covers the whole batch.

Example: MC_TCP_BIND_ADDRESS=127.0.0.1 python3 benches/te_bench.py --duration 1 --out te.json
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

MIB = 1 << 20
SIZES = "4096,65536,1048576,16777216"


def new_engine():
    from mooncake.engine import TransferEngine

    engine = TransferEngine()
    rc = engine.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "")
    if rc != 0:
        raise SystemExit(f"te_bench: initialize returned {rc}")
    return engine


def registered(engine, nbytes, fill):
    """A numpy buffer with every page touched, registered with `engine`."""
    buf = np.full(nbytes, fill, dtype=np.uint8)
    rc = engine.register_memory(buf.ctypes.data, nbytes)
    if rc != 0:
        raise SystemExit(f"te_bench: register_memory returned {rc}")
    return buf


def session_of(engine):
    return f"127.0.0.1:{engine.get_rpc_port()}"


def target(args):
    """The `target` role: serve one buffer until stdin is closed."""
    engine = new_engine()
    buf = registered(engine, args.buf_mib * MIB, 0x3C)
    print(json.dumps({"session": session_of(engine), "addr": buf.ctypes.data, "len": buf.nbytes}), flush=True)
    sys.stdin.read()
    return 0


def percentile_us(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, round(q * (len(sorted_ns) - 1)))] / 1e3


def verify(engine, peer, local, remote_addr):
    """Writes random bytes to the peer, reads them back into a zeroed region, compares."""
    n = min(4 * MIB, local.nbytes // 2)
    pattern = np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8)
    local[:n] = pattern
    local[n:2 * n] = 0
    base = local.ctypes.data
    if engine.transfer_sync_write(peer, base, remote_addr, n) != 0:
        return False
    if engine.transfer_sync_read(peer, base + n, remote_addr, n) != 0:
        return False
    return bool(np.array_equal(local[n:2 * n], pattern))


def measure(engine, peer, local, remote_addr, span, mode, op, block, args):
    """Times one (mode, op, block) point; returns its row (without the scenario)."""
    per_call = max(1, min(args.batch, span // block)) if mode == "batch" else 1
    slots = max(1, span // block)
    base = local.ctypes.data
    if mode == "single":
        call = engine.transfer_sync_write if op == "write" else engine.transfer_sync_read
    else:
        call = engine.batch_transfer_sync_write if op == "write" else engine.batch_transfer_sync_read
    lat_ns, blocks, slot = [], 0, 0
    start = time.perf_counter()
    while blocks < args.max_ops and time.perf_counter() - start < args.duration:
        offs = [((slot + i) % slots) * block for i in range(per_call)]
        slot += per_call
        t0 = time.perf_counter_ns()
        if mode == "single":
            rc = call(peer, base + offs[0], remote_addr + offs[0], block)
        else:
            rc = call(peer, [base + o for o in offs], [remote_addr + o for o in offs], [block] * per_call)
        lat_ns.append(time.perf_counter_ns() - t0)
        if rc != 0:
            raise SystemExit(f"te_bench: {mode} {op} of {block} B returned {rc}")
        blocks += per_call
    seconds = time.perf_counter() - start
    lat_ns.sort()
    return {"mode": mode, "op": op, "block": block, "batch": per_call, "ops": blocks,
            "calls": len(lat_ns), "seconds": seconds, "ops_per_s": blocks / seconds,
            "GBps": blocks * block / seconds / 1e9, "lat_p50_us": percentile_us(lat_ns, 0.5),
            "lat_p99_us": percentile_us(lat_ns, 0.99)}


def start_target(args, log):
    """Starts a copy of this script in the `target` role; returns it and its JSON line."""
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "target", "--buf-mib", str(args.buf_mib)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    line = child.stdout.readline()
    if not line:
        raise SystemExit("te_bench: the target process exited before it was ready")
    return child, json.loads(line)


def stop_target(child):
    child.stdin.close()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run(args):
    import mooncake
    import mooncake.engine

    result = {"mooncake_path": os.path.dirname(mooncake.__file__),
              "engine_file": mooncake.engine.__file__, "python": sys.executable,
              "args": vars(args), "verify": {}, "rows": []}
    engine = new_engine()
    span = args.buf_mib * MIB
    local = registered(engine, span, 0xA5)
    with open(args.target_log or os.devnull, "wb") as log:
        for scenario in args.scenarios.split(","):
            child = None
            if scenario == "remote":
                child, info = start_target(args, log)
                peer, remote_addr = info["session"], info["addr"]
            elif scenario == "local":
                other = registered(engine, span, 0x5A)
                peer, remote_addr = session_of(engine), other.ctypes.data
            else:
                raise SystemExit(f"te_bench: unknown scenario {scenario!r}")
            try:
                result["verify"][scenario] = verify(engine, peer, local, remote_addr)
                for mode in ("single", "batch"):
                    for op in ("write", "read"):
                        for block in args.sizes:
                            row = {"scenario": scenario,
                                   **measure(engine, peer, local, remote_addr, span, mode, op, block, args)}
                            result["rows"].append(row)
                            print(f"{scenario:6} {mode:6} x{row['batch']:<4} {op:5} {block:>9} B "
                                  f"{row['GBps']:8.3f} GB/s  p50 {row['lat_p50_us']:10.1f} us  "
                                  f"p99 {row['lat_p99_us']:10.1f} us", file=sys.stderr, flush=True)
            finally:
                if child is not None:
                    stop_target(child)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if all(result["verify"].values()) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", nargs="?", default="run", choices=["run", "target"])
    ap.add_argument("--buf-mib", type=int, default=256, help="registered buffer per side (MiB)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per point")
    ap.add_argument("--max-ops", type=int, default=1_000_000, help="at most this many blocks per point")
    ap.add_argument("--batch", type=int, default=128, help="most blocks per batch call")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=SIZES,
                    help=f"block sizes in bytes (default {SIZES})")
    ap.add_argument("--scenarios", default="remote,local")
    ap.add_argument("--target-log", help="file for the target process's stderr")
    ap.add_argument("--out", help="also write the JSON document here")
    args = ap.parse_args()
    return target(args) if args.role == "target" else run(args)


if __name__ == "__main__":
    sys.exit(main())
