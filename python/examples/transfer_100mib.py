#!/usr/bin/env python3
"""Two processes move 100 MiB through mooncake.engine.TransferEngine and check every byte.

Run: `python transfer_100mib.py` (the standard library and an installed `mooncake` only). The
script starts itself again as the target: that process registers a 100 MiB buffer and prints its
session name and address; this one writes the data in 1 MiB blocks, reads it back into a second
buffer, compares both with SHA-256 (and the target compares its own copy), and exits 0 on
success.
"""

import ctypes
import hashlib
import json
import mmap
import os
import subprocess
import sys
import time

from mooncake.engine import TransferEngine

SIZE = 100 << 20
BLOCK = 1 << 20


def buffer(size):
    m = mmap.mmap(-1, size)
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m))


def engine():
    e = TransferEngine()
    if e.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") != 0:
        sys.exit("initialize failed")
    return e


def target():
    e = engine()
    mem, addr = buffer(SIZE)
    assert e.register_memory(addr, SIZE) == 0
    print(json.dumps({"session": f"127.0.0.1:{e.get_rpc_port()}", "addr": addr}), flush=True)
    expected = sys.stdin.readline().strip()  # the initiator sends the digest when done
    got = hashlib.sha256(mem[:]).hexdigest()
    print(json.dumps({"target_ok": got == expected}), flush=True)
    return 0 if got == expected else 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--target":
        return target()
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--target"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        hello = json.loads(child.stdout.readline())
        e = engine()
        src, src_addr = buffer(SIZE)
        back, back_addr = buffer(SIZE)
        src[:] = os.urandom(SIZE)
        assert e.register_memory(src_addr, SIZE) == 0 and e.register_memory(back_addr, SIZE) == 0
        offsets = list(range(0, SIZE, BLOCK))
        t = time.perf_counter()
        rc = e.batch_transfer_sync_write(hello["session"], [src_addr + o for o in offsets],
                                         [hello["addr"] + o for o in offsets], [BLOCK] * len(offsets))
        assert rc == 0, f"write failed: {rc}"
        rc = e.batch_transfer_sync_read(hello["session"], [back_addr + o for o in offsets],
                                        [hello["addr"] + o for o in offsets], [BLOCK] * len(offsets))
        assert rc == 0, f"read failed: {rc}"
        secs = time.perf_counter() - t
        digest = hashlib.sha256(src[:]).hexdigest()
        assert hashlib.sha256(back[:]).hexdigest() == digest, "read-back differs"
        child.stdin.write(digest + "\n")
        child.stdin.flush()
        verdict = json.loads(child.stdout.readline())
        assert verdict["target_ok"], "the target's copy differs"
        print(f"100 MiB written and read back, verified on both sides, in {secs:.2f} s")
        return 0
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    sys.exit(main())
