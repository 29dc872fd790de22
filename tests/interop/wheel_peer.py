#!/usr/bin/env python3
"""A Mooncake (PyPI wheel) engine driven over stdin/stdout JSON lines, for interop tests.

Start: `python wheel_peer.py` (env as the test wants: MC_TCP_PROTO, MC_TCP_ENABLE_CONNECTION_POOL).
It initializes TransferEngine(--name, --metadata, "tcp", "") (default "127.0.0.1",
"P2PHANDSHAKE"), registers one buffer of
--buf bytes (filled with --fill), and prints {"session": ..., "addr": ..., "len": ...}.
Then it reads commands, one JSON object per line, and answers each with one JSON line:
  {"op": "fill", "offset": o, "len": n, "seed": s}         -> {"ok": true}
  {"op": "digest", "offset": o, "len": n}                  -> {"sha256": hex}
  {"op": "bytes", "offset": o, "len": n}                   -> {"hex": ...}
  {"op": "write"|"read", "target": session, "local": [offsets], "remote": [addrs], "len": [n]}
                                                           -> {"rc": int}
  {"op": "register", "len": n}  (a second buffer)          -> {"addr": a, "rc": rc}
  {"op": "guards"}  (with --guard)                         -> {"intact": bool}
  {"op": "notifies"}                                       -> {"notifies": [[name, msg], ...]}
  {"op": "quit"}
Only 127.0.0.1 is used.
"""
import argparse
import hashlib
import json
import sys

import numpy as np
from mooncake.engine import TransferEngine


def pattern(n, seed):
    i = np.arange(n, dtype=np.uint64)
    return ((i * np.uint64(2654435761) + np.uint64(seed)) >> np.uint64(7)).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--buf", type=int, default=64 << 20)
    ap.add_argument("--fill", type=int, default=0)
    ap.add_argument("--guard", type=int, default=0, help="unregistered guard bytes (0xEE) on each side")
    ap.add_argument("--split", action="store_true", help="register the buffer as two adjacent halves")
    ap.add_argument("--metadata", default="P2PHANDSHAKE", help="metadata connection string")
    ap.add_argument("--name", default="127.0.0.1", help="local_hostname (the segment name with a server)")
    args = ap.parse_args()
    eng = TransferEngine()
    rc = eng.initialize(args.name, args.metadata, "tcp", "")
    if rc != 0:
        print(json.dumps({"error": f"initialize rc={rc}"}), flush=True)
        return 1
    full = np.full(args.buf + 2 * args.guard, 0xEE, dtype=np.uint8)
    buf = full[args.guard:args.guard + args.buf]
    buf[:] = args.fill
    extra = []
    if args.split:
        half = args.buf // 2
        rc = eng.register_memory(buf.ctypes.data, half) or eng.register_memory(buf.ctypes.data + half, args.buf - half)
    else:
        rc = eng.register_memory(buf.ctypes.data, buf.nbytes)
    base = buf.ctypes.data
    session = f"127.0.0.1:{eng.get_rpc_port()}" if args.metadata == "P2PHANDSHAKE" else args.name
    print(json.dumps({"session": session, "addr": base, "len": buf.nbytes, "rc": rc}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        if op == "fill":
            o, n = cmd["offset"], cmd["len"]
            buf[o:o + n] = pattern(n, cmd["seed"])
            out = {"ok": True}
        elif op == "digest":
            o, n = cmd["offset"], cmd["len"]
            out = {"sha256": hashlib.sha256(buf[o:o + n].tobytes()).hexdigest()}
        elif op == "bytes":
            o, n = cmd["offset"], cmd["len"]
            out = {"hex": buf[o:o + n].tobytes().hex()}
        elif op in ("write", "read"):
            locals_ = [base + o for o in cmd["local"]]
            fn = eng.batch_transfer_sync_write if op == "write" else eng.batch_transfer_sync_read
            out = {"rc": fn(cmd["target"], locals_, cmd["remote"], cmd["len"])}
        elif op == "register":
            b = np.zeros(cmd["len"], dtype=np.uint8)
            extra.append(b)
            out = {"addr": b.ctypes.data, "rc": eng.register_memory(b.ctypes.data, b.nbytes)}
        elif op == "guards":
            g = args.guard
            out = {"intact": bool((full[:g] == 0xEE).all() and (full[g + args.buf:] == 0xEE).all())}
        elif op == "notifies":
            out = {"notifies": [[n.name, n.msg] if hasattr(n, "name") else list(n) for n in eng.get_notifies()]}
        else:
            out = {"error": f"unknown op {op}"}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
