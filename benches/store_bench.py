#!/usr/bin/env python3
"""Store put/get latency and bandwidth through the public Python API (`mooncake.store`).

Only `MooncakeDistributedStore` calls are used, so the same file runs under Mooncake's wheel and
under our package. The measurement is the one of `mooncake-bench store` (src/bench/store.rs):
rounds of K fresh keys (K = --round-mib / size, at most --keys-cap): put every key, get every
key, then remove_all(force=True); rounds repeat until --duration seconds of put time or
--max-rounds. Per phase: per-call latency p50/p99, keys/s and GB/s (1e9 bytes) over call time.
APIs (--apis): bytes (put/get), zerocopy (put_from/get_into), batch_bytes (put_batch/get_batch),
batch_zc (batch_put_from/batch_get_into), batch_multi (batch_put_from_multi_buffers/
batch_get_into_multi_buffers, each value in --parts parts scattered as vLLM's per-layer KV
cache is); batched calls carry --batch keys.

Roles:
  run     (default) for each scenario: start a fresh mooncake_master on free loopback ports
          (with its HTTP metadata server), then measure in a `client` child process;
            remote: an `owner` child contributes the --segment-mib segment, the client none,
                    so every byte crosses processes;
            local:  the client contributes the segment itself.
          The master is --master-bin, else the first `mooncake_master` found next to the
          imported `mooncake` package, next to this interpreter, in this checkout's
          target/release, or on PATH: the wheel's venv finds its own, our checkout ours.
  owner   contribute a segment until stdin is closed (prints one line when ready).
  client  measure against --master / --metadata; prints the rows as one JSON line.
Output of `run`: a JSON document on stdout (and in --out): {"master", "mooncake_path", "args",
"rows": [{"scenario", "api", "size", "verified", "put": {...}, "get": {...}}]}, where each
phase has keys, calls, seconds, ops_per_s, GBps, lat_p50_us, lat_p99_us (the fields of
`mooncake-bench store --json`); progress lines go to stderr.

Examples:
  ~/.cache/mooncake-anchor/venv/bin/python benches/store_bench.py --duration 1
  PYTHONPATH=python MOONCAKE_LIB=target/release/libmooncake.so python3 benches/store_bench.py
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

MIB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"store_bench: mooncake_master exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"store_bench: nothing listens on port {port}")


def find_master(args):
    if args.master_bin:
        return args.master_bin
    import mooncake

    for d in (os.path.dirname(mooncake.__file__), os.path.dirname(sys.executable),
              os.path.join(ROOT, "target", "release")):
        path = os.path.join(d, "mooncake_master")
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("mooncake_master")
    if not found:
        raise SystemExit("store_bench: no mooncake_master found (use --master-bin)")
    return found


def open_store(args, segment_bytes, staging_bytes):
    from mooncake.store import MooncakeDistributedStore

    store = MooncakeDistributedStore()
    rc = store.setup("127.0.0.1", args.metadata, segment_bytes, staging_bytes, "tcp", "", args.master)
    if rc != 0:
        raise SystemExit(f"store_bench: setup returned {rc}")
    return store


def owner(args):
    store = open_store(args, args.segment_mib * MIB, 16 * MIB)
    print("OWNER READY", flush=True)
    sys.stdin.read()
    store.close()
    return 0


def summary(lat_ns, keys, size):
    lat_ns.sort()
    seconds = sum(lat_ns) / 1e9

    def pct(q):
        return lat_ns[min(len(lat_ns) - 1, round(q * (len(lat_ns) - 1)))] / 1e3

    return {"keys": keys, "calls": len(lat_ns), "seconds": seconds, "ops_per_s": keys / seconds,
            "GBps": keys * size / seconds / 1e9, "lat_p50_us": pct(0.5), "lat_p99_us": pct(0.99)}


def timed(lat_ns, fn, *a):
    t0 = time.perf_counter_ns()
    out = fn(*a)
    lat_ns.append(time.perf_counter_ns() - t0)
    return out


def check(what, rc):
    if rc != 0:
        raise SystemExit(f"store_bench: {what} returned {rc}")


def multi_parts(base, slot, slots, size, parts):
    """The addresses of the `parts` parts of the value in `slot`, laid out as vLLM's KV cache
    is: part j of every slot lies in region j (one region per layer), so a value's parts are
    `slots * size / parts` bytes apart."""
    part = size // parts
    return [base + j * slots * part + slot * part for j in range(parts)]


def measure(store, api, size, reg, args):
    """One (api, size) point: rounds of fresh keys; returns the row without the scenario."""
    import numpy as np

    per_round = max(1, min(args.keys_cap, args.round_mib * MIB // size))
    batch = max(1, min(args.batch, per_round))
    value = ((np.arange(size, dtype=np.uint64) * 2654435761) >> 7).astype(np.uint8).tobytes()
    half = reg.nbytes // 2
    slots = max(1, half // size)
    src, dst = reg.ctypes.data, reg.ctypes.data + half
    if api == "batch_multi":
        if size % args.parts:
            raise SystemExit(f"store_bench: {size} B does not split into {args.parts} parts")
        part = size // args.parts
        for j in range(min(slots, per_round)):
            for p, a in enumerate(multi_parts(src, j, slots, size, args.parts)):
                off = a - reg.ctypes.data
                reg[off:off + part] = np.frombuffer(value[p * part:(p + 1) * part], dtype=np.uint8)
    else:
        for j in range(min(slots, per_round)):
            reg[j * size:(j + 1) * size] = np.frombuffer(value, dtype=np.uint8)
    put_ns, get_ns, keys_done, ok = [], [], 0, True
    for rnd in range(args.max_rounds):
        keys = [f"{api}-{size}-r{rnd}-k{i}" for i in range(per_round)]
        chunks = [list(range(i, min(i + batch, per_round))) for i in range(0, per_round, batch)]
        if api == "bytes":
            for k in keys:
                check("put", timed(put_ns, store.put, k, value))
            for i, k in enumerate(keys):
                got = timed(get_ns, store.get, k)
                ok &= len(got) == size and (i > 0 or got == value)
        elif api == "zerocopy":
            for i, k in enumerate(keys):
                check("put_from", timed(put_ns, store.put_from, k, src + i % slots * size, size))
            for i, k in enumerate(keys):
                ok &= timed(get_ns, store.get_into, k, dst + i % slots * size, size) == size
        elif api == "batch_bytes":
            for c in chunks:
                check("put_batch", timed(put_ns, store.put_batch, [keys[i] for i in c], [value] * len(c)))
            for c in chunks:
                got = timed(get_ns, store.get_batch, [keys[i] for i in c])
                ok &= all(len(g) == size for g in got) and (c[0] > 0 or got[0] == value)
        elif api == "batch_zc":
            for c in chunks:
                rcs = timed(put_ns, store.batch_put_from, [keys[i] for i in c],
                            [src + i % slots * size for i in c], [size] * len(c))
                check("batch_put_from", next((r for r in rcs if r != 0), 0))
            for c in chunks:
                got = timed(get_ns, store.batch_get_into, [keys[i] for i in c],
                            [dst + i % slots * size for i in c], [size] * len(c))
                ok &= all(n == size for n in got)
        elif api == "batch_multi":
            for c in chunks:
                rcs = timed(put_ns, store.batch_put_from_multi_buffers, [keys[i] for i in c],
                            [multi_parts(src, i % slots, slots, size, args.parts) for i in c],
                            [[size // args.parts] * args.parts for _ in c])
                check("batch_put_from_multi_buffers", next((r for r in rcs if r != 0), 0))
            for c in chunks:
                got = timed(get_ns, store.batch_get_into_multi_buffers, [keys[i] for i in c],
                            [multi_parts(dst, i % slots, slots, size, args.parts) for i in c],
                            [[size // args.parts] * args.parts for _ in c])
                ok &= all(n == size for n in got)
        else:
            raise SystemExit(f"store_bench: unknown api {api!r}")
        if api in ("zerocopy", "batch_zc"):
            ok &= reg[half:half + size].tobytes() == value
        if api == "batch_multi":
            part = size // args.parts
            back = b"".join(reg[a - reg.ctypes.data:a - reg.ctypes.data + part].tobytes()
                            for a in multi_parts(dst, 0, slots, size, args.parts))
            ok &= back == value
        keys_done += per_round
        store.remove_all(True)
        if sum(put_ns) / 1e9 >= args.duration:
            break
    return {"api": api, "size": size, "verified": bool(ok),
            "put": summary(put_ns, keys_done, size), "get": summary(get_ns, keys_done, size)}


def client(args):
    import numpy as np

    segment = args.segment_mib * MIB if args.scenario == "local" else 0
    store = open_store(args, segment, args.local_buf_mib * MIB)
    reg = np.zeros(args.reg_mib * MIB, dtype=np.uint8)
    check("register_buffer", store.register_buffer(reg.ctypes.data, reg.nbytes))
    rows = []
    for api in args.apis.split(","):
        for size in args.sizes:
            row = {"scenario": args.scenario, **measure(store, api, size, reg, args)}
            rows.append(row)
            p, g = row["put"], row["get"]
            print(f"[{args.scenario}] {api:11} {size:>9} B  put {p['GBps']:7.3f} GB/s p50 "
                  f"{p['lat_p50_us']:9.1f} us | get {g['GBps']:7.3f} GB/s p50 {g['lat_p50_us']:9.1f} us"
                  f"  verified={row['verified']}", file=sys.stderr, flush=True)
    store.unregister_buffer(reg.ctypes.data)
    store.close()
    print(json.dumps(rows), flush=True)
    return 0


def child_argv(args, role, master, metadata):
    argv = [sys.executable, os.path.abspath(__file__), role, "--master", master, "--metadata", metadata]
    for name in ("segment_mib", "local_buf_mib", "reg_mib", "duration", "max_rounds", "keys_cap",
                 "round_mib", "batch", "apis", "parts"):
        argv += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return argv + ["--sizes", ",".join(map(str, args.sizes))]


def stop(proc, close_stdin):
    if close_stdin:
        proc.stdin.close()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args):
    import mooncake

    master_bin = find_master(args)
    print(f"store_bench: master {master_bin}", file=sys.stderr)
    result = {"master": master_bin, "mooncake_path": os.path.dirname(mooncake.__file__),
              "args": vars(args), "rows": []}
    with open(args.log or os.devnull, "a") as log:
        for scenario in args.scenarios.split(","):
            rpc, http, metrics = free_port(), free_port(), free_port()
            master = subprocess.Popen([master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                                       "--metrics_host=127.0.0.1", f"--metrics_port={metrics}",
                                       "--enable_http_metadata_server=true",
                                       "--http_metadata_server_host=127.0.0.1",
                                       f"--http_metadata_server_port={http}"], stdout=log, stderr=log)
            own = None
            try:
                wait_port(rpc, master)
                wait_port(http, master)
                addr, url = f"127.0.0.1:{rpc}", f"http://127.0.0.1:{http}/metadata"
                if scenario == "remote":
                    own = subprocess.Popen(child_argv(args, "owner", addr, url), stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=log, text=True)
                    if not own.stdout.readline().startswith("OWNER READY"):
                        raise SystemExit("store_bench: the owner process exited before it was ready")
                elif scenario != "local":
                    raise SystemExit(f"store_bench: unknown scenario {scenario!r}")
                out = subprocess.run(child_argv(args, "client", addr, url) + ["--scenario", scenario],
                                     stdout=subprocess.PIPE, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"store_bench: the {scenario} client exited with {out.returncode}")
                result["rows"] += json.loads(out.stdout.strip().splitlines()[-1])
            finally:
                if own is not None:
                    stop(own, close_stdin=True)
                stop(master, close_stdin=False)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if all(r["verified"] for r in result["rows"]) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", nargs="?", default="run", choices=["run", "owner", "client"])
    ap.add_argument("--scenarios", default="remote,local", help="run: remote, local or both")
    ap.add_argument("--scenario", default="remote", help="client: remote (no own segment) or local")
    ap.add_argument("--master-bin", help="run: the mooncake_master to start")
    ap.add_argument("--master", help="owner/client: the master's host:port")
    ap.add_argument("--metadata", help="owner/client: the metadata server URL")
    ap.add_argument("--segment-mib", type=int, default=2048, help="segment of the owner (MiB)")
    ap.add_argument("--local-buf-mib", type=int, default=512, help="client's local_buffer_size (MiB)")
    ap.add_argument("--reg-mib", type=int, default=512, help="registered buffer of the zero-copy APIs")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                    default="4096,65536,1048576,16777216", help="value sizes in bytes")
    ap.add_argument("--apis", default="bytes,zerocopy,batch_bytes,batch_zc")
    ap.add_argument("--batch", type=int, default=32, help="keys per batched call")
    ap.add_argument("--parts", type=int, default=32, help="batch_multi: parts per value")
    ap.add_argument("--duration", type=float, default=1.0, help="seconds of put time per point")
    ap.add_argument("--keys-cap", type=int, default=512)
    ap.add_argument("--round-mib", type=int, default=256)
    ap.add_argument("--max-rounds", type=int, default=200)
    ap.add_argument("--log", help="run: append the master's and the owner's output here")
    ap.add_argument("--out", help="run: also write the JSON document here")
    args = ap.parse_args()
    return {"run": run, "owner": owner, "client": client}[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
