#!/usr/bin/env python3
"""Drive Mooncake's Python wheel (mooncake-transfer-engine-non-cuda) as an RDMA peer.

Meant for the soft-RoCE guest of tools/rdma-vm; run it with the wheel venv's python,
e.g. ~/.cache/mooncake-anchor/venv/bin/python tests/rdma/wheel_peer.py serve --size 65536 --pattern 7

Pattern (shared with the Rust tests): byte at absolute index i for seed S is

    pattern(S, i) = (i * 31 + S) & 0xff

It has period 256, so any region is a slice of a repeated 256-byte block.

Modes
  serve --size N --pattern SEED
      Starts a wheel engine in P2P mode (metadata "P2PHANDSHAKE", protocol "rdma"), registers an
      N-byte page-aligned buffer with buffer[i] = pattern(SEED, i), prints ONE JSON line
      {"segment": "<host:rpc_port>", "addr": <buffer address>, "len": N} to stdout, then reads
      commands from stdin, one per line, answering one line each:
        check SEED2 OFFSET LEN  -> "ok" if buffer[OFFSET+k] == pattern(SEED2, OFFSET+k) for all
                                   k < LEN, else "mismatch at K" (K relative to OFFSET,
                                   followed by " got G want W")
        fill SEED2 OFFSET LEN   -> writes buffer[OFFSET+k] = pattern(SEED2, OFFSET+k); "ok"
        descriptor              -> its own segment descriptor (type-1 reply), one JSON line
        write NAME ADDR OFFSET LEN
                                -> transfer_sync_write()s buffer[OFFSET, OFFSET+LEN) to ADDR in
                                   segment NAME (the serving engine as the initiator); "ok", or
                                   "error: ..." with the wheel's return code
        read NAME ADDR OFFSET LEN
                                -> transfer_sync_read()s LEN bytes at ADDR of segment NAME into
                                   buffer[OFFSET, ...); "ok" or "error: ..." (check the bytes
                                   with "check" afterwards)
        ping                    -> "ok"
        quit (or EOF)           -> "bye", exits 0
      Bad commands answer "error: ...". serve fails unless the wheel's descriptor says protocol
      "rdma" (the wheel silently falls back to tcp without RDMA devices); --allow-tcp skips that.
  write --target NAME --remote-addr A --len N --seed S [--index-base B]
      Registers a local N-byte buffer with local[k] = pattern(S, B+k) and transfer_sync_write()s
      it to A in segment NAME. Prints "ok" (exit 0) or "error: ..." (exit 1).
  read  --target NAME --remote-addr A --len N --seed S [--index-base B]
      transfer_sync_read()s N bytes from A into a registered local buffer and verifies
      local[k] == pattern(S, B+k). Prints "ok" or "mismatch at K ..." / "error: ..." (exit 1).
      B defaults to 0; to address serve's buffer at offset OFF use A = addr+OFF and B = OFF.

Common options: --host (local hostname given to initialize, default 127.0.0.1), --device
(device_name for initialize, default "" = all devices the wheel discovers), --timeout SECONDS
(whole-process watchdog; default 300 for write/read, 3600 for serve; on expiry prints
"error: timeout after ..." and exits 3, or is killed by SIGALRM 10 s later if the wheel holds
the GIL).
MC_GID_INDEX defaults to $RDMA_VM_GID_INDEX (the guest's RoCE v2 IPv4 GID) when unset.
All wheel logging goes to stderr; stdout carries only the lines documented above.
"""
import argparse
import ctypes
import json
import mmap
import os
import signal
import socket
import struct
import sys
import threading
import time

_OUT = None  # file object on the real stdout; fd 1 points to stderr while the wheel runs


def say(line):
    _OUT.write(line + "\n")
    _OUT.flush()


def log(msg):
    sys.stderr.write("wheel_peer: %s\n" % msg)
    sys.stderr.flush()


def pattern_bytes(seed, start, length):
    block = bytes(((i * 31 + seed) & 0xFF) for i in range(256))
    first = start % 256
    reps = (first + length + 255) // 256
    return (block * reps)[first:first + length]


class Buf:
    """Anonymous page-aligned mapping with its address."""

    def __init__(self, size):
        self.size = size
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._c = ctypes.c_char.from_buffer(self.map)
        self.addr = ctypes.addressof(self._c)

    def fill(self, seed, offset, length, index_base=None):
        base = offset if index_base is None else index_base
        ctypes.memmove(self.addr + offset, pattern_bytes(seed, base, length), length)

    def check(self, seed, offset, length, index_base=None):
        base = offset if index_base is None else index_base
        got = ctypes.string_at(self.addr + offset, length)
        want = pattern_bytes(seed, base, length)
        if got == want:
            return None
        k = next(i for i in range(length) if got[i] != want[i])
        return "mismatch at %d got %d want %d" % (k, got[k], want[k])


def handshake(target, ftype, body, timeout=60.0):
    """One request on a Mooncake handshake port (u64 LE length, u8 type, JSON); returns the
    reply's (type, JSON text)."""
    host, port = target.rsplit(":", 1)
    payload = bytes([ftype]) + body.encode()
    with socket.create_connection((host, int(port)), timeout=timeout) as c:
        c.sendall(struct.pack("<Q", len(payload)) + payload)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 8 and len(data) >= 8 + struct.unpack("<Q", data[:8])[0]:
                break
    if len(data) < 9:
        raise RuntimeError("short handshake reply from %s: %r" % (target, data))
    n = struct.unpack("<Q", data[:8])[0]
    return data[8], data[9:8 + n].decode()


def start_engine(args):
    if "MC_GID_INDEX" not in os.environ and os.environ.get("RDMA_VM_GID_INDEX"):
        os.environ["MC_GID_INDEX"] = os.environ["RDMA_VM_GID_INDEX"]
    t0 = time.monotonic()
    from mooncake.engine import TransferEngine  # noqa: E402 (slow under TCG)

    t1 = time.monotonic()
    te = TransferEngine()
    rc = te.initialize(args.host, "P2PHANDSHAKE", "rdma", args.device)
    t2 = time.monotonic()
    log("import %.2fs initialize %.2fs rc=%s" % (t1 - t0, t2 - t1, rc))
    if rc != 0:
        raise RuntimeError("initialize(%r, P2PHANDSHAKE, rdma, %r) returned %s" % (args.host, args.device, rc))
    return te


def register(te, buf):
    rc = te.register_memory(buf.addr, buf.size)
    if rc != 0:
        raise RuntimeError("register_memory(%#x, %d) returned %s" % (buf.addr, buf.size, rc))


def serve(args):
    te = start_engine(args)
    buf = Buf(args.size)
    buf.fill(args.pattern, 0, args.size)
    register(te, buf)
    segment = "%s:%d" % (args.host, te.get_rpc_port())
    if not args.allow_tcp:
        _, text = handshake(segment, 1, "{}")
        proto = json.loads(text).get("protocol")
        if proto != "rdma":
            raise RuntimeError("the wheel installed protocol %r, not rdma (no usable RDMA device?)" % proto)
    say(json.dumps({"segment": segment, "addr": buf.addr, "len": args.size}))
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        if cmd == "quit":
            break
        if cmd == "descriptor":
            say(handshake(segment, 1, "{}")[1].strip())
            continue
        if cmd == "ping":
            say("ok")
            continue
        if cmd in ("write", "read") and len(parts) == 5:
            try:
                remote, off, ln = (int(p, 0) for p in parts[2:])
            except ValueError:
                say("error: bad numbers in %r" % line.strip())
                continue
            if off < 0 or ln <= 0 or off + ln > buf.size:
                say("error: range %d+%d outside buffer of %d" % (off, ln, buf.size))
                continue
            fn = te.transfer_sync_write if cmd == "write" else te.transfer_sync_read
            t0 = time.monotonic()
            rc = fn(parts[1], buf.addr + off, remote, ln)
            log("%s %d bytes to %s rc=%s in %.2fs" % (cmd, ln, parts[1], rc, time.monotonic() - t0))
            say("ok" if rc == 0 else "error: transfer_sync_%s returned %s" % (cmd, rc))
            continue
        if cmd in ("check", "fill") and len(parts) == 4:
            try:
                seed, off, ln = (int(p, 0) for p in parts[1:])
            except ValueError:
                say("error: bad numbers in %r" % line.strip())
                continue
            if off < 0 or ln < 0 or off + ln > buf.size:
                say("error: range %d+%d outside buffer of %d" % (off, ln, buf.size))
                continue
            if cmd == "fill":
                buf.fill(seed, off, ln)
                say("ok")
            else:
                say(buf.check(seed, off, ln) or "ok")
            continue
        say("error: unknown command %r" % line.strip())
    say("bye")
    # Exit without tearing down the engine's threads (their destructors can be slow or hang).
    os._exit(0)


def transfer(args, is_write):
    te = start_engine(args)
    buf = Buf(args.len)
    if is_write:
        buf.fill(args.seed, 0, args.len, index_base=args.index_base)
    register(te, buf)
    t0 = time.monotonic()
    fn = te.transfer_sync_write if is_write else te.transfer_sync_read
    rc = fn(args.target, buf.addr, args.remote_addr, args.len)
    log("%s %d bytes rc=%s in %.2fs" % ("write" if is_write else "read", args.len, rc, time.monotonic() - t0))
    if rc != 0:
        say("error: transfer_sync_%s returned %s" % ("write" if is_write else "read", rc))
        return 1
    if not is_write:
        bad = buf.check(args.seed, 0, args.len, index_base=args.index_base)
        if bad:
            say(bad)
            return 1
    say("ok")
    return 0


def main():
    global _OUT
    # Keep stdout for our protocol lines only: the wheel's C++ code may print to fd 1.
    _OUT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--device", default="")
    common.add_argument("--timeout", type=float, default=None)
    s = sub.add_parser("serve", parents=[common])
    s.add_argument("--size", type=lambda v: int(v, 0), required=True)
    s.add_argument("--pattern", type=lambda v: int(v, 0), required=True)
    s.add_argument("--allow-tcp", action="store_true")
    for name in ("write", "read"):
        t = sub.add_parser(name, parents=[common])
        t.add_argument("--target", required=True)
        t.add_argument("--remote-addr", type=lambda v: int(v, 0), required=True)
        t.add_argument("--len", type=lambda v: int(v, 0), required=True)
        t.add_argument("--seed", type=lambda v: int(v, 0), required=True)
        t.add_argument("--index-base", type=lambda v: int(v, 0), default=0)
    args = p.parse_args()

    timeout = args.timeout if args.timeout is not None else (3600 if args.mode == "serve" else 300)

    def on_timeout():
        say("error: timeout after %gs" % timeout)
        log("timeout after %gs in mode %s" % (timeout, args.mode))
        os._exit(3)

    # A watchdog thread (runs whenever the wheel releases the GIL, which its transfer calls do),
    # backed by a plain SIGALRM (default action: the kernel kills us) 10 s later in case the GIL
    # stays held.
    dog = threading.Timer(timeout, on_timeout)
    dog.daemon = True
    dog.start()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(timeout)) + 10)
    try:
        if args.mode == "serve":
            if args.size <= 0:
                raise RuntimeError("--size must be positive")
            serve(args)
            rc = 0
        else:
            if args.len <= 0:
                raise RuntimeError("--len must be positive")
            rc = transfer(args, args.mode == "write")
    except Exception as e:  # report every failure on one line
        log("%s: %s" % (type(e).__name__, e))
        say("error: %s" % e)
        rc = 1
    _OUT.flush()
    os._exit(rc)


if __name__ == "__main__":
    main()
