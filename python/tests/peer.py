#!/usr/bin/env python3
"""One `mooncake.engine.TransferEngine`, driven by JSON lines on stdin, for the test suite.

The test process never imports `mooncake`: it starts this script with the interpreter of the
implementation under test (Mooncake's wheel, or our ctypes package) and sends it commands, so the
same test runs wheel<->wheel, ours<->ours, ours->wheel and wheel->ours. Standard library only
(numpy is used if present, for `alloc` kind "numpy").

Start-up: the script creates `TransferEngine()` (not initialized) and prints one line
    {"ready": true, "pid": ..., "python": ..., "module_file": ...}
Then each command is one JSON object per line; each answer is one JSON line. An answer has
"ok": true, or "ok": false with "exc" (exception class name) and "msg".

Values in "args"/"kwargs" of `call` are JSON, plus these tagged objects:
    {"$addr": [name, offset]}   address of byte `offset` of buffer `name` (see `alloc`)
    {"$opcode": "Read"|"Write"} mooncake.engine.TransferOpcode member
    {"$notify": [name, msg]}    mooncake.engine.TransferNotify(name, msg)
    {"$bytes": hex}             a bytes object
Results are encoded as JSON with "type" (the Python type name of the result); bytes come back as
{"$bytes": hex}, TransferNotify objects as {"$notify": [name, msg]}, enums as {"$enum": [str, int]}.

Commands:
  {"op": "init", "host": h, "metadata": m, "protocol": p, "device": d}
        -> {"rc": initialize(...), "port": get_rpc_port(), "session": "<host>:<port>"}
  {"op": "alloc", "name": n, "len": L, "guard": g, "fill": b, "kind": "mmap"|"numpy"}
        -> {"addr": a}; L bytes set to `fill`, g guard bytes of 0xEE on each side (not part of L)
  {"op": "register", "name": n, "location": loc?}    -> {"rc": register_memory(addr, L[, loc])}
  {"op": "fill", "name": n, "blocks": [[off, len], ...], "seed": s}
        -> {"sha256": digest of the blocks, concatenated in order}; pseudo-random bytes
  {"op": "digest", "name": n, "blocks": [[off, len], ...]}   -> {"sha256": ...}
  {"op": "peek", "name": n, "off": o, "len": l}   -> {"hex": ...}
  {"op": "poke", "name": n, "off": o, "hex": h}   -> {}
  {"op": "guards", "name": n}                     -> {"intact": bool}
  {"op": "call", "method": m, "args": [...], "kwargs": {...}}
        -> {"result": ..., "type": ..., "seconds": wall time of the call}
  {"op": "poll", "batch_id": b, "timeout": s}
        -> transfer_check_status(b) until it is non-zero or `timeout` s pass:
           {"result": last value, "polls": count, "seconds": ...}
  {"op": "parallel", "calls": [{"method": m, "args": [...], "kwargs": {...}}, ...], "join_timeout": s}
        -> the calls run at once, one thread each: {"results": [{"ok", "result"|"exc"}...],
           "seconds": ..., "unfinished": threads still running after join_timeout}
  {"op": "module"}      -> facts about the module (attributes, enum values, TransferNotify)
  {"op": "describe"}    -> {"methods": {name: {"doc": first doc line, "signature": str or None,
                            "params": [[name, kind, default_repr or null], ...] or None}}}
  {"op": "quit"}        -> exits (answer {"bye": true})
`python peer.py --describe` prints the "describe" answer and exits (used for the snapshot of the
wheel's signatures, data/wheel_signatures.json).
Only 127.0.0.1 is used by the tests.
"""
import ctypes
import hashlib
import inspect
import json
import mmap
import os
import random
import sys
import threading
import time
import traceback

import mooncake.engine as me
from mooncake.engine import TransferEngine

try:  # optional
    import numpy as np
except Exception:  # pragma: no cover
    np = None

BUFS = {}  # name -> dict(obj, full, addr, len, guard)
ENG = TransferEngine()


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _view(name):
    b = BUFS[name]
    return b["view"], b["guard"], b["len"]


def alloc(name, length, guard=0, fill=0, kind="mmap"):
    total = length + 2 * guard
    if kind == "numpy":
        if np is None:
            raise RuntimeError("numpy is not installed in this interpreter")
        arr = np.empty(total, dtype=np.uint8)
        arr[:] = 0xEE
        arr[guard:guard + length] = fill
        view = memoryview(arr).cast("B")
        base = int(arr.ctypes.data)
        keep = arr
    else:
        mm = mmap.mmap(-1, max(total, 1))
        mm[:guard] = b"\xee" * guard
        mm[guard + length:total] = b"\xee" * guard
        if fill:
            chunk = bytes([fill]) * min(length, 1 << 20)
            o = 0
            while o < length:
                n = min(len(chunk), length - o)
                mm[guard + o:guard + o + n] = chunk[:n]
                o += n
        anchor = ctypes.c_char.from_buffer(mm)
        base = ctypes.addressof(anchor)
        view = memoryview(mm)
        keep = (mm, anchor)
    BUFS[name] = {"keep": keep, "view": view, "addr": base + guard, "len": length, "guard": guard}
    return base + guard


def pattern(n, seed):
    return random.Random(seed).randbytes(n)


def decode(v):
    if isinstance(v, list):
        return [decode(x) for x in v]
    if isinstance(v, dict):
        if "$addr" in v:
            name, off = v["$addr"]
            return BUFS[name]["addr"] + off
        if "$opcode" in v:
            return getattr(me.TransferOpcode, v["$opcode"])
        if "$notify" in v:
            return me.TransferNotify(*v["$notify"])
        if "$bytes" in v:
            return bytes.fromhex(v["$bytes"])
        return {k: decode(x) for k, x in v.items()}
    return v


def encode(v):
    if v is None or isinstance(v, (bool, str, float)):
        return v
    if isinstance(v, int) and type(v) is int:
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    if hasattr(v, "name") and hasattr(v, "msg"):
        return {"$notify": [v.name, v.msg]}
    try:
        return {"$enum": [str(v), int(v)]}
    except Exception:
        return {"$repr": repr(v)}


def param_list(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, None
    params = []
    for p in sig.parameters.values():
        d = None if p.default is inspect.Parameter.empty else repr(p.default)
        params.append([p.name, p.kind.name, d])
    return str(sig), params


def describe():
    methods = {}
    for name in dir(TransferEngine):
        if name.startswith("_") and name != "__init__":
            continue
        attr = getattr(TransferEngine, name)
        if not callable(attr) or isinstance(attr, type):
            continue
        doc = (getattr(attr, "__doc__", None) or "").strip().splitlines()
        sig, params = param_list(attr)
        methods[name] = {"doc": doc[0] if doc else "", "signature": sig, "params": params}
    return {"methods": methods}


def module_facts():
    op = me.TransferOpcode
    n = me.TransferNotify("a", "b")
    n.name, n.msg = "c", "d"  # attributes are read-write in Mooncake
    facts = {
        "attrs": sorted(a for a in dir(me) if not a.startswith("__")),
        "SUPPORT_CUDA": encode(getattr(me, "SUPPORT_CUDA", "<missing>")),
        "SUPPORT_CUDA_type": type(getattr(me, "SUPPORT_CUDA", None)).__name__,
        "Read": int(op.Read), "Write": int(op.Write),
        "module_Read_is_member": getattr(me, "Read", None) == op.Read,
        "module_Write_is_member": getattr(me, "Write", None) == op.Write,
        "engine_TransferOpcode_is_module_enum": getattr(TransferEngine, "TransferOpcode", None) is op,
        "opcode_eq_int": [op.Read == 0, op.Write == 1],
        "notify_attrs": [n.name, n.msg],
        "notify_kw": [me.TransferNotify(name="x", msg="y").name, me.TransferNotify(name="x", msg="y").msg],
    }
    try:
        e = me.TransferNotify()
        facts["notify_default"] = [e.name, e.msg]
    except Exception as exc:  # pragma: no cover
        facts["notify_default"] = f"{type(exc).__name__}: {exc}"
    return facts


def handle(cmd):
    op = cmd["op"]
    if op == "init":
        rc = ENG.initialize(cmd.get("host", "127.0.0.1"), cmd.get("metadata", "P2PHANDSHAKE"),
                            cmd.get("protocol", "tcp"), cmd.get("device", ""))
        port = ENG.get_rpc_port() if rc == 0 else None
        if cmd.get("metadata", "P2PHANDSHAKE") == "P2PHANDSHAKE":
            session = f"{cmd.get('host', '127.0.0.1').split(':')[0]}:{port}"
        else:  # with a metadata server, peers open the engine by the name it was given
            session = cmd["host"]
        return {"rc": rc, "port": port, "session": session}
    if op == "alloc":
        return {"addr": alloc(cmd["name"], cmd["len"], cmd.get("guard", 0), cmd.get("fill", 0),
                              cmd.get("kind", "mmap"))}
    if op == "register":
        b = BUFS[cmd["name"]]
        if "location" in cmd:
            return {"rc": ENG.register_memory(b["addr"], b["len"], cmd["location"])}
        return {"rc": ENG.register_memory(b["addr"], b["len"])}
    if op == "fill":
        view, g, _ = _view(cmd["name"])
        h = hashlib.sha256()
        rng = random.Random(cmd.get("seed", 1))
        for off, n in cmd["blocks"]:
            data = rng.randbytes(n)
            view[g + off:g + off + n] = data
            h.update(data)
        return {"sha256": h.hexdigest()}
    if op == "digest":
        view, g, _ = _view(cmd["name"])
        h = hashlib.sha256()
        for off, n in cmd["blocks"]:
            h.update(view[g + off:g + off + n])
        return {"sha256": h.hexdigest()}
    if op == "peek":
        view, g, _ = _view(cmd["name"])
        return {"hex": bytes(view[g + cmd["off"]:g + cmd["off"] + cmd["len"]]).hex()}
    if op == "poke":
        view, g, _ = _view(cmd["name"])
        data = bytes.fromhex(cmd["hex"])
        view[g + cmd["off"]:g + cmd["off"] + len(data)] = data
        return {}
    if op == "guards":
        view, g, n = _view(cmd["name"])
        intact = bytes(view[:g]) == b"\xee" * g and bytes(view[g + n:g + n + g]) == b"\xee" * g
        return {"intact": intact}
    if op == "call":
        fn = getattr(ENG, cmd["method"])
        args = decode(cmd.get("args", []))
        kwargs = decode(cmd.get("kwargs", {}))
        t0 = time.monotonic()
        r = fn(*args, **kwargs)
        return {"result": encode(r), "type": type(r).__name__, "seconds": time.monotonic() - t0}
    if op == "parallel":
        calls = cmd["calls"]
        results = [None] * len(calls)

        def run(i, c):
            try:
                r = getattr(ENG, c["method"])(*decode(c.get("args", [])), **decode(c.get("kwargs", {})))
                results[i] = {"ok": True, "result": encode(r)}
            except Exception as exc:
                results[i] = {"ok": False, "exc": type(exc).__name__, "msg": str(exc)}
        t0 = time.monotonic()
        threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        deadline = t0 + cmd.get("join_timeout", 60)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return {"results": results, "seconds": time.monotonic() - t0,
                "unfinished": sum(t.is_alive() for t in threads)}
    if op == "poll":
        t0 = time.monotonic()
        deadline = t0 + cmd.get("timeout", 20)
        polls = 0
        while True:
            r = ENG.transfer_check_status(cmd["batch_id"])
            polls += 1
            if r != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        return {"result": r, "type": type(r).__name__, "polls": polls,
                "seconds": time.monotonic() - t0}
    if op == "module":
        return module_facts()
    if op == "describe":
        return describe()
    raise ValueError(f"unknown op {op!r}")


def main():
    if sys.argv[1:] == ["--describe"]:
        out(describe())
        return 0
    out({"ready": True, "pid": os.getpid(), "python": sys.executable,
         "module_file": getattr(me, "__file__", None)})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            out({"ok": True, "bye": True})
            break
        try:
            res = handle(cmd)
            res["ok"] = True
        except Exception as exc:
            res = {"ok": False, "exc": type(exc).__name__, "msg": str(exc),
                   "trace": traceback.format_exc(limit=3)}
        out(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
