#!/usr/bin/env python3
"""512 Python threads sharing one `mooncake.engine.TransferEngine` and one
`mooncake.store.MooncakeDistributedStore` (issue 18, reliability suite). Runs unchanged under
Mooncake's wheel and under our package; standard library only.

    python reliability_threads.py MASTER_RPC METADATA [THREADS] [ROUNDS]

The process holds two engines: A (shared by every thread, the initiator) and B (the target, its
buffer registered), and one store set up against the master at MASTER_RPC with the metadata
service METADATA. Every thread, released together by a barrier, runs ROUNDS rounds of:
  engine: batch_transfer_sync_write of two 8 KiB blocks of its own slot from A to B, then
          transfer_sync_read of them back into A's read-back buffer, compared byte for byte;
  store:  put / get, put_batch / get_batch, batch_put_from / batch_get_into (registered
          buffers), is_exist, batch_is_exist, remove; every value compared.
Threads are joined against one deadline; the answer is one JSON line:
  {"threads", "rounds", "ok": threads that finished with no error, "errors": first few,
   "unfinished": threads still running at the deadline, "seconds", "os_threads_peak",
   "os_threads_before", "maxrss_mib"}
A thread still running at the deadline makes the script leave with os._exit (no hang at exit).
"""
import ctypes
import json
import os
import resource
import sys
import threading
import time

import mooncake.engine as me
import mooncake.store as ms

BLOCK = 8 << 10
VALUE = 4 << 10
DEADLINE_S = float(os.environ.get("RELIABILITY_THREADS_DEADLINE_S", "240"))


def os_threads():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def value(t, r, j):
    seed = (t * 131 + r * 17 + j * 7 + 1) & 0xFF
    return bytes((seed + i * 13) & 0xFF for i in range(VALUE))


def main():
    master, metadata = sys.argv[1], sys.argv[2]
    nthreads = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    before = os_threads()
    slot = 2 * BLOCK
    span = nthreads * slot

    a, b = me.TransferEngine(), me.TransferEngine()
    assert a.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    assert b.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    src = (ctypes.c_char * span)()
    back = (ctypes.c_char * span)()
    dst = (ctypes.c_char * span)()
    for buf in (src, back, dst):
        eng = b if buf is dst else a
        assert eng.register_memory(ctypes.addressof(buf), span) == 0
    session = f"127.0.0.1:{b.get_rpc_port()}"
    base_src, base_back, base_dst = ctypes.addressof(src), ctypes.addressof(back), ctypes.addressof(dst)

    store = ms.MooncakeDistributedStore()
    rc = store.setup("127.0.0.1", metadata, 512 << 20, 64 << 20, "tcp", "", master)
    assert rc == 0, f"store.setup returned {rc}"
    sbuf_len = nthreads * 2 * VALUE
    sput = (ctypes.c_char * sbuf_len)()
    sget = (ctypes.c_char * sbuf_len)()
    assert store.register_buffer(ctypes.addressof(sput), sbuf_len) == 0
    assert store.register_buffer(ctypes.addressof(sget), sbuf_len) == 0

    barrier = threading.Barrier(nthreads)
    errors = []
    done = [False] * nthreads
    lock = threading.Lock()

    def fail(t, what):
        with lock:
            if len(errors) < 20:
                errors.append(f"thread {t}: {what}")

    def work(t):
        try:
            barrier.wait(timeout=120)
            ok = True
            for r in range(rounds):
                # engine: two blocks of this thread's slot, written and read back
                o = t * slot
                payload = bytes(((t + r + i) * 29) & 0xFF for i in range(2 * BLOCK))
                ctypes.memmove(base_src + o, payload, 2 * BLOCK)
                rc = a.batch_transfer_sync_write(session, [base_src + o, base_src + o + BLOCK],
                                                 [base_dst + o, base_dst + o + BLOCK], [BLOCK, BLOCK])
                if rc != 0:
                    fail(t, f"batch_transfer_sync_write returned {rc}")
                    ok = False
                ctypes.memset(base_back + o, 0, 2 * BLOCK)
                rc = a.transfer_sync_read(session, base_back + o, base_dst + o, 2 * BLOCK)
                if rc != 0:
                    fail(t, f"transfer_sync_read returned {rc}")
                    ok = False
                elif ctypes.string_at(base_back + o, 2 * BLOCK) != payload:
                    fail(t, "read-back bytes differ")
                    ok = False
                # store: single, batch, buffer-based
                k = f"rel-{t}-{r}"
                v0, v1, v2 = value(t, r, 0), value(t, r, 1), value(t, r, 2)
                if store.put(k, v0) != 0 or store.get(k) != v0:
                    fail(t, "put/get")
                    ok = False
                keys = [k + "-b0", k + "-b1"]
                if store.put_batch(keys, [v1, v2]) != 0 or list(store.get_batch(keys)) != [v1, v2]:
                    fail(t, "put_batch/get_batch")
                    ok = False
                p, g = ctypes.addressof(sput) + t * 2 * VALUE, ctypes.addressof(sget) + t * 2 * VALUE
                ctypes.memmove(p, v2 + v1, 2 * VALUE)
                fk = [k + "-f0", k + "-f1"]
                put = store.batch_put_from(fk, [p, p + VALUE], [VALUE, VALUE])
                got = store.batch_get_into(fk, [g + VALUE, g], [VALUE, VALUE])
                if list(put) != [0, 0] or list(got) != [VALUE, VALUE] or \
                        ctypes.string_at(g, 2 * VALUE) != v1 + v2:
                    fail(t, f"batch_put_from {list(put)} / batch_get_into {list(got)}")
                    ok = False
                if store.is_exist(k) != 1 or list(store.batch_is_exist(keys + [k + "-none"])) != [1, 1, 0]:
                    fail(t, "is_exist/batch_is_exist")
                    ok = False
                for key in [k] + keys + fk:
                    if store.remove(key, force=True) != 0:  # a get leaves a lease
                        fail(t, f"remove {key}")
                        ok = False
            done[t] = ok
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            fail(t, f"{type(exc).__name__}: {exc}")

    peak = [os_threads()]
    stop_sampler = threading.Event()

    def sample():
        while not stop_sampler.wait(0.05):
            peak[0] = max(peak[0], os_threads())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(nthreads)]
    for th in threads:
        th.start()
    deadline = t0 + DEADLINE_S
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    seconds = time.monotonic() - t0
    stop_sampler.set()
    unfinished = sum(th.is_alive() for th in threads)
    out = {"threads": nthreads, "rounds": rounds, "ok": sum(done), "errors": errors,
           "unfinished": unfinished, "seconds": round(seconds, 2), "os_threads_before": before,
           "os_threads_peak": peak[0],
           "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    print(json.dumps(out), flush=True)
    if unfinished:
        os._exit(3)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
