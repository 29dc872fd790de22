"""Dummy clients through `mooncake.store`: `setup_dummy` attaches to our `mooncake_client`
(which owns the segment and the engine), then the same API works through it: put/get, zero
copy over `alloc_from_mem_pool` memory, queries, removal. A real client of the same master sees
the dummy's objects. Every process is stopped by its PID."""
import json
import select
import socket
import subprocess
import time

from store_support import master_or_skip, python_or_skip, run_python


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, f"{what} exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"{what} did not listen on {port}"
            time.sleep(0.05)


def wait_ready(proc, what, timeout=30):
    """Waits (bounded) for `proc`'s first stdout line, which must say `ready`."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"{what} printed nothing within {timeout} s"
    line = proc.stdout.readline().decode()
    assert " ready" in line, f"{what} exited or said {line!r} (rc={proc.poll()})"


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


DUMMY = r"""
import json
import mooncake.store as s
out = {}
d = s.MooncakeDistributedStore()
out["setup_dummy"] = d.setup_dummy(64 << 20, 16 << 20, "127.0.0.1:%(client)d")
out["health"] = d.health_check()
out["put"] = d.put("dummy-key", b"dummy-value")
out["put_existing"] = d.put("dummy-key", b"other")
out["get"] = d.get("dummy-key").decode()
out["get_missing"] = d.get("missing").decode()
a = d.alloc_from_mem_pool(1 << 20)
out["alloc_nonzero"] = a != 0
out["register"] = d.register_buffer(a, 1 << 20)
import ctypes
ctypes.memmove(a, b"Z" * 100, 100)
out["put_from"] = d.put_from("dummy-zc", a, 100)
out["get_into"] = d.get_into("dummy-zc", a + 4096, 4096)
out["bytes"] = ctypes.string_at(a + 4096, 100) == b"Z" * 100
out["is_exist"] = d.batch_is_exist(["dummy-key", "missing"])
out["remove_leased"] = d.remove("dummy-zc")
out["remove_forced"] = d.remove("dummy-zc", True)
real = s.MooncakeDistributedStore()
out["real_setup"] = real.setup("127.0.0.1", "%(metadata)s", 0, 16 << 20, "tcp", "", "127.0.0.1:%(rpc)d")
out["real_sees_dummy_put"] = real.get("dummy-key").decode()
out["real_alloc"] = real.alloc_from_mem_pool(4096)
real.close()
out["close"] = d.close()
out["health_after_close"] = d.health_check()
print(json.dumps(out))
"""


def test_a_dummy_client_works_through_mooncake_client():
    master_bin = master_or_skip()
    client_bin = master_or_skip("mooncake_client", "MOONCAKE_TEST_CLIENT")
    ours = python_or_skip("ours")
    rpc, http, metrics, client_port = free_port(), free_port(), free_port(), free_port()
    master = subprocess.Popen([master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                               "--metrics_host=127.0.0.1", f"--metrics_port={metrics}",
                               "--enable_http_metadata_server=true", "--http_metadata_server_host=127.0.0.1",
                               f"--http_metadata_server_port={http}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        wait_port(rpc, master, "mooncake_master")
        wait_port(http, master, "the master's metadata server")
        metadata = f"http://127.0.0.1:{http}/metadata"
        client = subprocess.Popen([client_bin, f"--master_server_address=127.0.0.1:{rpc}", "--host=127.0.0.1",
                                   f"--port={client_port}", f"--metadata_server={metadata}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # Its one stdout line, `mooncake_client ready: …`, comes once its socket is up (the
        # console script starts slower than the executable did).
        wait_ready(client, "mooncake_client")
        deadline = time.monotonic() + 20
        out = None
        while out is None or out["setup_dummy"] != 0:  # the client's socket may not be up yet
            out = run_python(ours, DUMMY % {"client": client_port, "metadata": metadata, "rpc": rpc}, timeout=120)
            if out["setup_dummy"] != 0:
                assert client.poll() is None, f"mooncake_client exited with {client.returncode}"
                assert time.monotonic() < deadline, f"setup_dummy kept failing: {json.dumps(out)}"
                time.sleep(0.2)
    finally:
        if client is not None:
            stop(client)
        stop(master)
    assert out["health"] == 0
    assert (out["put"], out["put_existing"], out["get"], out["get_missing"]) == (0, 0, "dummy-value", "")
    assert out["alloc_nonzero"] and out["register"] == 0
    assert (out["put_from"], out["get_into"], out["bytes"]) == (0, 100, True)
    assert out["is_exist"] == [1, 0]
    assert (out["remove_leased"], out["remove_forced"]) == (-706, 0)
    assert out["real_setup"] == 0 and out["real_sees_dummy_put"] == "dummy-value"
    assert out["real_alloc"] == 0, "alloc_from_mem_pool is for dummy clients"
    assert (out["close"], out["health_after_close"]) == (0, 1)
