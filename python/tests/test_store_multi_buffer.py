"""Multi-buffer puts and gets through `mooncake.store`, as vLLM's store connector
(`MooncakeStoreWorker`) makes them: each process sets up a store, registers its whole KV cache
with `register_buffer`, asks `batch_is_exist`, then stores one block spread over every layer's
K and V regions with `batch_put_from_multi_buffers(keys, addrs, sizes)` and loads it into
another block of another process's cache with `batch_get_into_multi_buffers(keys, addrs,
sizes)`. The producer owns the only segment, so the bytes cross processes. Bad input is
answered as Mooncake's wheel answers it (run live against the wheel when it is installed).
Every process is stopped by its PID; every wait is bounded."""
import json
import os
import select
import subprocess
import sys
from pathlib import Path

from store_support import master_or_skip, python_or_skip, run_python
from test_store_dummy import free_port, stop, wait_port, wait_ready

LAYERS = 4
BLOCKS = 8
BLOCK_LEN = 32 << 10  # bytes of one block in one layer's K (or V) region

# What both processes share: the KV cache layout (per layer a K region then a V region, each
# BLOCKS * BLOCK_LEN bytes, all in one registered allocation, as a torch storage would be),
# the block's key and its expected bytes.
COMMON = r"""
import ctypes, json, sys, zlib
import mooncake.store as s
LAYERS, BLOCKS, BLOCK_LEN = %(layers)d, %(blocks)d, %(block_len)d
REGION = BLOCKS * BLOCK_LEN
cache = (ctypes.c_char * (2 * LAYERS * REGION))()
base = ctypes.addressof(cache)
bases = [base + i * REGION for i in range(2 * LAYERS)]  # K0, V0, K1, V1, ...
key = "model@tp_rank:0@pcp0@dcp0@pp_rank:0@" + "ab" * 16

def block_parts(block):
    return [b + block * BLOCK_LEN for b in bases], [BLOCK_LEN] * len(bases)

def expected(part):
    return bytes((part * 31 + i * 7 + 1) %% 251 for i in range(BLOCK_LEN))

store = s.MooncakeDistributedStore()
rc = store.setup("127.0.0.1", "%(metadata)s", %(segment)d, 16 << 20, "tcp", "", "127.0.0.1:%(rpc)d")
assert rc == 0, rc
# vLLM registers its cache; Mooncake's store also takes memory nobody registered.
out = {"register": store.register_buffer(base, ctypes.sizeof(cache)) if %(register)s else "skipped"}
"""

PRODUCER = COMMON + r"""
addrs, sizes = block_parts(2)
for j, a in enumerate(addrs):
    ctypes.memmove(a, expected(j), BLOCK_LEN)
out["exist_before"] = store.batch_is_exist([key])
out["put"] = store.batch_put_from_multi_buffers([key], [addrs], [sizes])
out["exist_after"] = store.batch_is_exist([key])
out["put_again"] = store.batch_put_from_multi_buffers([key], [addrs], [sizes])
print("producer ready " + json.dumps(out), flush=True)
sys.stdin.readline()  # the consumer is done
store.close()
"""

CONSUMER = COMMON + r"""
ctypes.memset(base, 0xEE, ctypes.sizeof(cache))
out["exist"] = store.batch_is_exist([key, key + "-missing"])
addrs, sizes = block_parts(5)
out["get"] = store.batch_get_into_multi_buffers([key], [addrs], [sizes])
out["bytes_ok"] = all(ctypes.string_at(a, BLOCK_LEN) == expected(j) for j, a in enumerate(addrs))
others = bytearray(ctypes.string_at(base, ctypes.sizeof(cache)))
for a in addrs:
    others[a - base:a - base + BLOCK_LEN] = b"\xee" * BLOCK_LEN
out["nothing_else_written"] = others == b"\xee" * len(others)
# The load path rotates its lists; several keys in one call, one of them missing.
a2, s2 = block_parts(6)
out["get_two"] = store.batch_get_into_multi_buffers([key + "-missing", key], [a2, addrs], [s2, sizes])
out["block6_untouched"] = all(ctypes.string_at(a, BLOCK_LEN) == b"\xee" * BLOCK_LEN for a in a2)
out["bytes_ok_again"] = all(ctypes.string_at(a, BLOCK_LEN) == expected(j) for j, a in enumerate(addrs))
store.close()
print(json.dumps(out))
"""


def _start_master(master_bin, impl="ours"):
    rpc, http, metrics = free_port(), free_port(), free_port()
    # The wheel's console script must import the wheel's package, not a checkout.
    env = {k: v for k, v in os.environ.items() if not (impl == "wheel" and k == "PYTHONPATH")}
    # The flags both masters (ours and the wheel's) accept.
    master = subprocess.Popen([master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                               f"--metrics_port={metrics}", "--enable_http_metadata_server=true",
                               f"--http_metadata_server_port={http}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_port(rpc, master, "mooncake_master")
    wait_port(http, master, "the master's metadata server")
    return master, rpc, f"http://127.0.0.1:{http}/metadata"


def _producer_and_consumer(python, master_bin, impl, register):
    """The producer's and the consumer's answers (the producer keeps the only segment until
    the consumer is done)."""
    master, rpc, metadata = _start_master(master_bin, impl)
    env = {k: v for k, v in os.environ.items() if not (impl == "wheel" and k == "PYTHONPATH")}
    producer = None
    try:
        args = {"layers": LAYERS, "blocks": BLOCKS, "block_len": BLOCK_LEN, "metadata": metadata, "rpc": rpc,
                "register": register}
        producer = subprocess.Popen([python, "-c", PRODUCER % dict(args, segment=64 << 20)], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([producer.stdout], [], [], 60)
        assert ready, "the producer printed nothing within 60 s"
        line = producer.stdout.readline().decode()
        assert line.startswith("producer ready "), f"producer said {line!r}: {producer.stderr.read().decode()}"
        put = json.loads(line[len("producer ready "):])
        got = run_python(python, CONSUMER % dict(args, segment=0), timeout=120, impl=impl)
        producer.stdin.write(b"done\n")
        producer.stdin.flush()
        assert producer.wait(timeout=30) == 0
    finally:
        if producer is not None:
            stop(producer)
        stop(master)
    return put, got


def _check_pair(put, got, register):
    assert put == {"register": register, "exist_before": [0], "put": [0], "exist_after": [1], "put_again": [0]}
    size = 2 * LAYERS * BLOCK_LEN
    assert got["register"] == register
    assert got["exist"] == [1, 0]
    assert got["get"] == [size]
    assert got["bytes_ok"] and got["nothing_else_written"]
    assert got["get_two"] == [-704, size]
    assert got["block6_untouched"] and got["bytes_ok_again"]


def test_vllm_store_worker_calls_move_one_block_across_layers_between_processes():
    put, got = _producer_and_consumer(python_or_skip("ours"), master_or_skip(), "ours", True)
    _check_pair(put, got, 0)


def test_unregistered_parts_move_between_processes_as_the_wheels():
    """The same calls on ctypes buffers that neither process registered: both the put and the
    get copy the parts (Mooncake's wheel answers the same, checked live when installed)."""
    put, got = _producer_and_consumer(python_or_skip("ours"), master_or_skip(), "ours", False)
    _check_pair(put, got, "skipped")
    wheel = python_or_skip("wheel")
    put, got = _producer_and_consumer(wheel, str(Path(wheel).parent / "mooncake_master"), "wheel", False)
    _check_pair(put, got, "skipped")


# Bad input and edge cases; the same script runs under our package and under the wheel.
EDGES = r"""
import ctypes, json
import mooncake.store as s
out = {}
store = s.MooncakeDistributedStore()
assert store.setup("127.0.0.1", "%(metadata)s", 64 << 20, 16 << 20, "tcp", "", "127.0.0.1:%(rpc)d") == 0
buf = (ctypes.c_char * (1 << 20))()
a = ctypes.addressof(buf)
out["register"] = store.register_buffer(a, 1 << 20)
ctypes.memmove(a, b"abcdefghij", 10)
put = store.batch_put_from_multi_buffers
get = store.batch_get_into_multi_buffers
out["put"] = put(["m1"], [[a, a + 5]], [[3, 4]])
out["get_value"] = store.get("m1").decode()
out["put_existing"] = put(["m1"], [[a]], [[3]])
out["put_keys_vs_lists"] = put(["x1", "x2"], [[a]], [[3]])
out["put_parts_vs_sizes"] = put(["x1", "x2"], [[a], [a]], [[3], [3, 4]])
out["put_no_parts"] = put(["x3"], [[]], [[]])
out["put_empty_part_among_others"] = put(["x4"], [[a, a]], [[0, 3]])
out["put_empty_key"] = put(["", "x5"], [[a], [a]], [[3], [3]])
out["put_nothing"] = put([], [], [])
out["put_keywords"] = put(keys=["kw"], all_buffer_ptrs=[[a]], all_sizes=[[3]], config=s.ReplicateConfig())
out["put_duplicate_keys"] = put(["d1", "d1"], [[a], [a + 1]], [[3], [3]])
out["get_duplicate_value"] = store.get("d1").decode()
g = a + 4096
ctypes.memset(g, 0x2e, 4096)
out["get"] = get(["m1"], [[g, g + 100]], [[2, 5]])
out["get_bytes"] = (ctypes.string_at(g, 3) + ctypes.string_at(g + 100, 6)).decode()
ctypes.memset(g, 0x2e, 4096)
out["get_parts_too_big"] = get(["m1"], [[g, g + 100]], [[5, 5]])
out["get_parts_too_small"] = get(["m1"], [[g, g + 100]], [[2, 4]])
out["untouched"] = ctypes.string_at(g, 4096) == b"." * 4096
out["get_unknown"] = get(["nokey", "m1"], [[g], [g + 200]], [[10], [7]])
out["get_keys_vs_lists"] = get(["m1", "m1"], [[g]], [[10]])
out["get_empty_key"] = get([""], [[g]], [[10]])
out["get_nothing"] = get([], [], [])
out["get_empty_part"] = get(["m1"], [[g, g + 10]], [[0, 7]])
out["get_keywords"] = get(keys=["m1"], all_buffer_ptrs=[[g]], all_sizes=[[7]], prefer_alloc_in_same_node=True)
store.close()
print(json.dumps(out))
"""

def _edges(python, master_bin, impl):
    master, rpc, metadata = _start_master(master_bin, impl)
    try:
        return run_python(python, EDGES % {"metadata": metadata, "rpc": rpc}, timeout=120, impl=impl)
    finally:
        stop(master)


def test_bad_input_gets_the_wheels_codes():
    ours = _edges(python_or_skip("ours"), master_or_skip(), "ours")
    expected = {
        "register": 0, "put": [0], "get_value": "abcfghi", "put_existing": [0],
        "put_keys_vs_lists": [-600, -600], "put_parts_vs_sizes": [-600, -600], "put_no_parts": [-600],
        "put_empty_part_among_others": [0], "put_empty_key": [-600, 0], "put_nothing": [],
        "put_keywords": [0], "put_duplicate_keys": [0, 0], "get_duplicate_value": "abc",
        "get": [7], "get_bytes": "ab.cfghi.", "get_parts_too_big": [-800], "get_parts_too_small": [-600],
        "untouched": True, "get_unknown": [-704, 7], "get_keys_vs_lists": [-600, -600],
        "get_empty_key": [-704], "get_nothing": [], "get_empty_part": [7], "get_keywords": [7],
    }
    assert ours == expected
    wheel = python_or_skip("wheel")
    wheel_master = str(Path(wheel).parent / "mooncake_master")
    assert _edges(wheel, wheel_master, "wheel") == expected


DUMMY = r"""
import ctypes, json
import mooncake.store as s
out = {}
d = s.MooncakeDistributedStore()
out["setup_dummy"] = d.setup_dummy(64 << 20, 16 << 20, "127.0.0.1:%(client)d")
if out["setup_dummy"] == 0:
    a = d.alloc_from_mem_pool(1 << 20)
    ctypes.memmove(a, b"0123456789", 10)
    out["put"] = d.batch_put_from_multi_buffers(["dm"], [[a + 5, a]], [[5, 5]])
    g = a + 65536
    ctypes.memset(g, 0x2e, 4096)
    out["get"] = d.batch_get_into_multi_buffers(["dm"], [[g + 100, g]], [[3, 7]])
    out["bytes"] = (ctypes.string_at(g + 100, 4) + ctypes.string_at(g, 8)).decode()
    private = (ctypes.c_char * 64)()
    out["put_unshared"] = d.batch_put_from_multi_buffers(["du"], [[ctypes.addressof(private)]], [[8]])
    out["get_unshared"] = d.batch_get_into_multi_buffers(["dm"], [[ctypes.addressof(private)]], [[10]])
    out["get_missing"] = d.batch_get_into_multi_buffers(["nokey"], [[g]], [[10]])
    # No sessions on a dummy client, so the ranged calls have nothing to work on.
    out["put_ranges"] = d.batch_put_from_multi_buffer_ranges(["dm"], [[a]], [[1]], [[0]])
    out["get_ranges"] = d.batch_get_into_multi_buffer_ranges(["dm"], [[g]], [[1]], [[0]])
    d.close()
print(json.dumps(out))
"""


def test_a_dummy_client_puts_and_gets_multi_buffers_through_mooncake_client():
    master_bin = master_or_skip()
    client_bin = master_or_skip("mooncake_client", "MOONCAKE_TEST_CLIENT")
    ours = python_or_skip("ours")
    master, rpc, metadata = _start_master(master_bin)
    client = None
    try:
        client_port = free_port()
        client = subprocess.Popen([client_bin, f"--master_server_address=127.0.0.1:{rpc}", "--host=127.0.0.1",
                                   f"--port={client_port}", f"--metadata_server={metadata}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        wait_ready(client, "mooncake_client")
        out = run_python(ours, DUMMY % {"client": client_port}, timeout=120)
    finally:
        if client is not None:
            stop(client)
        stop(master)
    assert out == {"setup_dummy": 0, "put": [0], "get": [10], "bytes": "567.8901234.",
                   "put_unshared": [-600], "get_unshared": [-600], "get_missing": [-704],
                   "put_ranges": [-600], "get_ranges": [-600]}


if __name__ == "__main__":
    sys.exit("run with pytest")
