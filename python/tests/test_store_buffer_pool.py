"""Our `mooncake.BufferPool` (pure Python, python/mooncake/buffer_pool.py) against our
`mooncake_master`: leases, reuse, zero copy through a lease, overflow buffers, waits with a
bound, exhaustion, close with active leases. The expectations are those of Mooncake's wheel
(its mooncake-wheel/tests/test_buffer_pool_native.py and buffer_pool.cpp).

One script runs every case under our interpreter (MOONCAKE_TEST_PYTHON_OURS, as the other store
tests) with one store, and prints each case's outcome; each test below checks one case.
"""
import subprocess

import pytest

from store_support import master_or_skip, python_or_skip, run_python
from test_store_dummy import free_port, stop, wait_port

SCRIPT = r"""
import ctypes, gc, json, os, threading, time, traceback
import mooncake, mooncake.buffer_pool, mooncake.store as s

MIB = 1 << 20
store = s.MooncakeDistributedStore()
rc = store.setup("127.0.0.1", "%(metadata)s", 64 * MIB, 16 * MIB, "tcp", "", "%(master)s")
assert rc == 0, rc
cases, out = [], {}

def case(f):
    cases.append(f)
    return f

def raises(fn, text):
    try:
        fn()
    except RuntimeError as e:
        assert text in str(e), (text, str(e))
        return
    raise AssertionError(f"no RuntimeError({text!r})")

def one_region_pool(**kw):
    return mooncake.BufferPool(store, min_size_class=4096, max_size_class=4096, alignment=4096,
                               max_regions=1, **kw)

@case
def aliases():
    assert mooncake.BufferPool is mooncake.RegisteredBufferPool
    assert mooncake.BufferPool is s.BufferPool is s.RegisteredBufferPool is mooncake.buffer_pool.BufferPool
    assert s.BufferLease is s.RegisteredBufferLease
    assert s.__file__.endswith(".py") and mooncake.buffer_pool.__file__.endswith(".py")  # ours

@case
def acquire_release_reuse():
    pool = mooncake.BufferPool(store, min_size_class=4096, alignment=4096)
    lease = pool.acquire(1234)
    assert isinstance(lease, s.BufferLease) and lease.size == 1234 and len(lease.buffer) == 1234
    ptr = lease.ptr
    assert ptr %% 64 == 0
    lease.release()
    lease.release()  # a second release does nothing
    raises(lambda: lease.ptr, "closed")
    again = pool.buffer(2048)
    assert again.ptr == ptr and again.size == 2048  # the released memory is handed out again
    other = pool.acquire(100)
    assert other.ptr != again.ptr
    again.release(); other.release()
    pool.close()

@case
def buffer_writes_visible_at_ptr():
    pool = mooncake.BufferPool(store)
    lease = pool.acquire(4096)
    view = lease.buffer
    assert not view.readonly and view.format == "B" and view.nbytes == 4096
    view[:5] = b"hello"
    assert ctypes.string_at(lease.ptr, 5) == b"hello"
    ctypes.memmove(lease.ptr + 100, b"world", 5)
    assert bytes(view[100:105]) == b"world"
    del view
    lease.release()
    pool.close()

def roundtrip(pool, n, key):
    data = os.urandom(n)
    with pool.acquire(n) as src:
        src.buffer[:] = data
        rc = store.put_from(key, src.ptr, n)
        assert rc == 0, rc
    with pool.acquire(n) as dst:
        dst.buffer[:] = b"\0" * n
        got = store.get_into(key, dst.ptr, n)
        assert got == n, got
        assert ctypes.string_at(dst.ptr, n) == data
    assert store.remove(key, True) == 0

@case
def put_from_get_into_through_a_lease():
    pool = mooncake.BufferPool(store)
    roundtrip(pool, 1 * MIB + 3, "bp-local")
    pool.close()

@case
def overflow_buffer_when_local_region_full():
    pool = mooncake.BufferPool(store)  # max_bytes 0: twice the 16 MiB local region
    local = pool.acquire(16 * MIB)
    over = pool.acquire(1024, block=False)
    assert over.size == 1024
    assert not (local.ptr <= over.ptr < local.ptr + 16 * MIB)
    assert over.ptr %% (8 * MIB) == 0  # the default alignment
    roundtrip(pool, 2 * MIB, "bp-overflow")  # overflow memory is registered too
    over.release(); local.release()
    pool.close()

@case
def registers_and_unregisters_every_buffer():
    calls = []
    class Recorder:
        def register_buffer(self, ptr, size):
            calls.append(("reg", ptr)); return store.register_buffer(ptr, size)
        def unregister_buffer(self, ptr):
            calls.append(("unreg", ptr)); return store.unregister_buffer(ptr)
    pool = mooncake.BufferPool(Recorder(), alignment=4096)
    local = pool.acquire(16 * MIB)
    over = pool.acquire(10, block=False)
    over_ptr = over.ptr
    assert ("reg", over_ptr) in calls
    over.release()
    assert calls[-1] == ("unreg", over_ptr)  # an overflow buffer goes with its lease
    local.release()
    pool.close()
    regs = sorted(p for k, p in calls if k == "reg")
    assert len(regs) == 2 and regs == sorted(p for k, p in calls if k == "unreg"), calls

@case
def blocking_acquire_times_out():
    pool = one_region_pool()
    lease = pool.acquire(1)
    t0 = time.monotonic()
    raises(lambda: pool.acquire(1, timeout=0.2), "timed out waiting for buffer")
    assert 0.15 <= time.monotonic() - t0 < 5
    raises(lambda: pool.acquire(1, timeout=0), "timed out")
    raises(lambda: pool.acquire(1, timeout=-1), "non-negative")
    lease.release()
    pool.close()
    pool = one_region_pool(default_timeout=0.1)
    lease = pool.acquire(1)
    raises(lambda: pool.acquire(1), "timed out")
    lease.release()
    pool.close()

@case
def blocking_acquire_wakes_on_release():
    pool = one_region_pool()
    lease = pool.acquire(1)
    got = []
    thread = threading.Thread(target=lambda: got.append(pool.acquire(1, timeout=10)))
    thread.start()
    time.sleep(0.1)
    assert not got
    lease.release()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(got) == 1
    got[0].release()
    pool.close()

@case
def nonblocking_exhaustion_raises():
    pool = one_region_pool(block_on_exhaustion=False)
    lease = pool.acquire(1)
    raises(lambda: pool.acquire(1), "buffer pool is exhausted")
    lease.release()
    pool.acquire(1).release()
    pool.close()
    pool = one_region_pool()  # blocking by default, block=False per call
    lease = pool.acquire(1)
    raises(lambda: pool.acquire(1, block=False), "exhausted")
    lease.release()
    pool.close()
    pool = mooncake.BufferPool(store, alignment=4096)  # 32 MiB in all: local 16 + overflow 16
    a, b = pool.acquire(16 * MIB), pool.acquire(16 * MIB, block=False)
    raises(lambda: pool.acquire(1, block=False), "exhausted")
    a.release(); b.release()
    pool.close()

@case
def request_beyond_capacity_raises():
    pool = mooncake.BufferPool(store, 1 * MIB)  # raised to the 16 MiB local region
    raises(lambda: pool.acquire(16 * MIB + 1), "exceeds pool capacity")
    raises(lambda: pool.acquire((1 << 64) - 1), "capacity")
    pool.acquire(16 * MIB).release()
    pool.close()
    pool = mooncake.BufferPool(store)  # max_bytes 0: twice the local region
    raises(lambda: pool.acquire(32 * MIB + 1), "exceeds pool capacity")
    pool.acquire(20 * MIB).release()  # larger than the local region: an overflow buffer
    pool.close()

@case
def close_with_active_lease_raises():
    pool = mooncake.BufferPool(store, min_size_class=4096, alignment=4096)
    lease = pool.acquire(1)
    raises(pool.close, "cannot close buffer pool with active leases")
    assert lease.ptr  # still usable
    lease.release()
    pool.close()
    pool.close()  # again: nothing
    raises(lambda: pool.acquire(1), "buffer pool is closed")

@case
def context_manager_releases():
    pool = one_region_pool()
    with pool.acquire(100) as lease:
        assert lease.size == 100
        lease.buffer[:3] = b"abc"
    raises(lambda: lease.ptr, "closed")
    try:
        with pool.acquire(100) as lease2:
            raise KeyError("inside")
    except KeyError:
        pass
    raises(lambda: lease2.ptr, "closed")
    pool.acquire(1, block=False).release()  # the one region is free again
    pool.close()

@case
def exported_views_block_release():
    pool = mooncake.BufferPool(store, 4096, min_size_class=4096, alignment=4096)
    lease = pool.acquire(4)
    view = lease.buffer
    view[:] = b"test"
    part = view[1:3]
    del view
    raises(lease.release, "cannot release buffer while exported views exist")
    assert bytes(part) == b"es"
    del part
    gc.collect()
    lease.release()
    pool.close()

@case
def released_when_garbage_collected():
    pool = mooncake.BufferPool(store, 4096, min_size_class=4096, alignment=4096)
    lease = pool.acquire(1)
    view = lease.buffer
    del lease
    gc.collect()
    raises(pool.close, "active leases")  # the view keeps its lease
    del view
    gc.collect()
    pool.close()

@case
def arbitrary_sizes():
    pool = mooncake.BufferPool(store, MIB, max_size_class=128 * 1024, alignment=4096)
    for size in (0, 1, 128 * 1024 + 1):
        lease = pool.acquire(size)
        assert lease.size == size and len(lease.buffer) == size
        lease.release()
    pool.close()

@case
def prewarm_is_accepted():
    pool = mooncake.BufferPool(store, MIB, min_size_class=4096, alignment=4096,
                               prewarm_size=1024, prewarm_count=2)
    pool.prewarm(4096, 3)
    a, b = pool.acquire(1024), pool.acquire(1024)
    a.release(); b.release()
    pool.close()

@case
def invalid_arguments():
    raises(lambda: mooncake.BufferPool(store, MIB, alignment=12345), "alignment")
    raises(lambda: mooncake.BufferPool(store, alignment=4), "alignment")
    raises(lambda: mooncake.BufferPool(store, min_size_class=0), "positive")
    raises(lambda: mooncake.BufferPool(None), "not initialized")
    raises(lambda: mooncake.BufferPool(s.MooncakeDistributedStore()), "set up")  # no setup
    pool = mooncake.BufferPool(store)
    for bad in (-1, 1.5, "1"):
        try:
            pool.acquire(bad)
        except TypeError:
            continue
        raise AssertionError(f"acquire({bad!r}) did not raise TypeError")
    pool.close()

for f in cases:
    try:
        f()
        out[f.__name__] = "ok"
    except BaseException:
        out[f.__name__] = traceback.format_exc()[-3000:]
gc.collect()
store.close()
print(json.dumps(out))
"""

CASES = ["aliases", "acquire_release_reuse", "buffer_writes_visible_at_ptr",
         "put_from_get_into_through_a_lease", "overflow_buffer_when_local_region_full",
         "registers_and_unregisters_every_buffer", "blocking_acquire_times_out",
         "blocking_acquire_wakes_on_release", "nonblocking_exhaustion_raises",
         "request_beyond_capacity_raises", "close_with_active_lease_raises",
         "context_manager_releases", "exported_views_block_release",
         "released_when_garbage_collected", "arbitrary_sizes", "prewarm_is_accepted",
         "invalid_arguments"]


@pytest.fixture(scope="module")
def outcomes():
    master_bin = master_or_skip()
    ours = python_or_skip("ours")
    rpc, http, metrics = free_port(), free_port(), free_port()
    master = subprocess.Popen([master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                               "--metrics_host=127.0.0.1", f"--metrics_port={metrics}",
                               "--enable_http_metadata_server=true", "--http_metadata_server_host=127.0.0.1",
                               f"--http_metadata_server_port={http}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(rpc, master, "mooncake_master")
        wait_port(http, master, "the master's metadata server")
        code = SCRIPT % {"metadata": f"http://127.0.0.1:{http}/metadata", "master": f"127.0.0.1:{rpc}"}
        return run_python(ours, code, timeout=180)
    finally:
        stop(master)


def test_every_case_reports(outcomes):
    assert sorted(outcomes) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_buffer_pool(outcomes, name):
    assert outcomes.get(name) == "ok", outcomes.get(name, "<not run>")
