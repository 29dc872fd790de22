#!/usr/bin/env python3
"""A Mooncake (PyPI wheel) engine that finds its peers through an HTTP metadata server, driven
over stdin/stdout JSON lines, for tests/http_metadata_server.rs.

Start: `python http_meta_peer.py --name 127.0.0.1:N --metadata http://127.0.0.1:P/metadata`
(env MC_TCP_BIND_ADDRESS=127.0.0.1, so that the published address is loopback).
It initializes TransferEngine(name, metadata, "tcp", ""), registers one zeroed buffer of --buf
bytes and prints {"rc": 0, "session": name, "addr": ..., "len": ...}. Then, one JSON object a
line, each answered with one JSON line:
  {"op": "fill", "offset": o, "len": n, "seed": s}   -> {"ok": true}
  {"op": "bytes", "offset": o, "len": n}             -> {"hex": ...}
  {"op": "write"|"read", "target": name, "local": [offsets], "remote": [addrs], "len": [n]}
                                                     -> {"rc": int}
  {"op": "quit"}                                     (the engine is destroyed, which withdraws
                                                      its keys, before the process exits)
Only 127.0.0.1 is used.
"""
import argparse
import gc
import json
import sys

import numpy as np
from mooncake.engine import TransferEngine


def pattern(n, seed):
    i = np.arange(n, dtype=np.uint64)
    return ((i * np.uint64(2654435761) + np.uint64(seed)) >> np.uint64(7)).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--buf", type=int, default=4 << 20)
    args = ap.parse_args()
    eng = TransferEngine()
    rc = eng.initialize(args.name, args.metadata, "tcp", "")
    if rc != 0:
        print(json.dumps({"rc": rc, "error": f"initialize rc={rc}"}), flush=True)
        return 1
    buf = np.zeros(args.buf, dtype=np.uint8)
    rc = eng.register_memory(buf.ctypes.data, buf.nbytes)
    base = buf.ctypes.data
    print(json.dumps({"rc": rc, "session": args.name, "addr": base, "len": buf.nbytes}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        if op == "fill":
            o, n = cmd["offset"], cmd["len"]
            buf[o:o + n] = pattern(n, cmd["seed"])
            out = {"ok": True}
        elif op == "bytes":
            o, n = cmd["offset"], cmd["len"]
            out = {"hex": buf[o:o + n].tobytes().hex()}
        elif op in ("write", "read"):
            locals_ = [base + o for o in cmd["local"]]
            fn = eng.batch_transfer_sync_write if op == "write" else eng.batch_transfer_sync_read
            out = {"rc": fn(cmd["target"], locals_, cmd["remote"], cmd["len"])}
        else:
            out = {"error": f"unknown op {op}"}
        print(json.dumps(out), flush=True)
    eng.unregister_memory(base)
    del eng
    gc.collect()
    print(json.dumps({"bye": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
