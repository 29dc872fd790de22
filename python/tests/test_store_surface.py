"""`mooncake.store` beyond put/get, method by method as the wheel answers: `batch_remove`,
`get_replica_desc` / `batch_get_replica_desc` and the descriptor types, `put_from_with_metadata`,
put and get sessions, `ReplicateConfig.data_type` and the module's enum constants, `setup`'s
unknown keyword. The same script runs under our package against our master and under Mooncake's
wheel against its own master (where the wheel is installed); both must give EXPECTED."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from store_support import master_or_skip, python_or_skip, run_python

SCRIPT = r'''
import ctypes
import json
import sys

import mooncake.store as s
rpc = int(sys.argv[1])
out = {}
a = s.MooncakeDistributedStore()
b = s.MooncakeDistributedStore()
out["setup"] = a.setup("127.0.0.1", "P2PHANDSHAKE", 32 << 20, 16 << 20, "tcp", "", f"127.0.0.1:{rpc}")
out["setup_b"] = b.setup({"local_hostname": "127.0.0.1", "metadata_server": "P2PHANDSHAKE",
                          "global_segment_size": 32 << 20, "local_buffer_size": 16 << 20, "protocol": "tcp",
                          "master_server_addr": f"127.0.0.1:{rpc}"})
try:
    a.setup("127.0.0.1", "P2PHANDSHAKE", 0, 16 << 20, "tcp", "", f"127.0.0.1:{rpc}", None, no_such_option=1)
    out["unknown_kw"] = "no error"
except TypeError as e:
    out["unknown_kw"] = "no_such_option" in str(e)
for k in ("k1", "k2", "k3"):
    a.put(k, b"v-" + k.encode())
out["batch_remove"] = a.batch_remove(["k1", "missing", "k2"], force=True)
out["batch_remove_empty"] = a.batch_remove([])
a.put("d1", b"x" * 1000)
desc = a.get_replica_desc("d1")
out["desc_len"] = len(desc)
r = desc[0]
out["desc_types"] = [type(r).__name__, r.is_memory_replica(), r.is_disk_replica(), str(r.status)]
m = r.get_memory_descriptor().buffer_descriptor
out["desc_fields"] = [m.size, m.transport_endpoint.startswith("127.0.0.1:"), m.buffer_address != 0]
out["desc_missing"] = a.get_replica_desc("missing")
bd = a.batch_get_replica_desc(["d1", "missing"])
out["batch_desc"] = sorted(bd.keys()), type(bd).__name__
out["batch_desc_empty"] = a.batch_get_replica_desc([])
data = ctypes.create_string_buffer(b"D" * 300, 300)
meta = ctypes.create_string_buffer(b"M" * 20, 20)
out["pfwm"] = a.put_from_with_metadata("m1", ctypes.addressof(data), ctypes.addressof(meta), 300, 20)
out["pfwm_get"] = a.get("m1") == b"M" * 20 + b"D" * 300
out["pfwm_zero"] = a.put_from_with_metadata("m0", ctypes.addressof(data), ctypes.addressof(meta), 0, 20)
out["pfwm_zero_exists"] = a.is_exist("m0")
out["ps_start"] = a.batch_put_session_start(["s1", "s2", "d1"], [100, 200, 10])
out["ps_start_again"] = a.batch_put_session_start(["s1"], [100])
out["ps_mismatch"] = a.batch_put_session_start(["x1", "x2"], [1])
out["ps_end"] = a.batch_put_session_end(["s1", "nosession"])
out["ps_end_size"] = a.get_size("s1")
out["ps_revoke"] = a.batch_put_session_revoke(["s2", "s2"])
out["ps_revoked_exists"] = a.is_exist("s2")
out["gs_start"] = a.batch_get_session_start(["d1", "missing"])
out["gs_start_empty"] = a.batch_get_session_start([])
out["gs_end"] = a.batch_get_session_end(["d1", "missing"])
rc = s.ReplicateConfig()
out["data_type"] = [str(rc.data_type), int(rc.data_type)]
rc.data_type = s.ObjectDataType.KVCACHE
out["data_type_set"] = str(rc.data_type)
names = ("UNDEFINED", "COMPLETE", "REMOVED", "INITIALIZED", "KVCACHE", "GENERAL", "UNKNOWN")
out["consts"] = [int(getattr(s, n)) for n in names]
try:
    s.ReplicaDescriptor()
    out["ctor"] = "constructed"
except TypeError as e:
    out["ctor"] = "TypeError"
b.close()
a.close()
print(json.dumps(out))
'''

EXPECTED = {
    "setup": 0, "setup_b": 0, "unknown_kw": True,
    "batch_remove": [0, -704, 0], "batch_remove_empty": [],
    "desc_len": 1, "desc_types": ["ReplicaDescriptor", True, False, "ReplicaStatus.COMPLETE"],
    "desc_fields": [1000, True, True], "desc_missing": [],
    "batch_desc": [["d1"], "dict"], "batch_desc_empty": {},
    "pfwm": 0, "pfwm_get": True, "pfwm_zero": 0, "pfwm_zero_exists": 0,
    "ps_start": [0, 0, -705], "ps_start_again": [-600], "ps_mismatch": [-600, -600],
    "ps_end": [0, -600], "ps_end_size": 100, "ps_revoke": [0, 0], "ps_revoked_exists": 0,
    "gs_start": [0, -704], "gs_start_empty": [], "gs_end": 0,
    "data_type": ["ObjectDataType.UNKNOWN", 0], "data_type_set": "ObjectDataType.KVCACHE",
    "consts": [0, 3, 4, 1, 1, 9, 0], "ctor": "TypeError",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_master(binary, ours):
    rpc, metrics = free_port(), free_port()
    bind = ["--rpc_address=127.0.0.1"] if ours else []  # the wheel's master has no such flag
    # The wheel's master is a script of the wheel's package: it must not see our PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if ours or k != "PYTHONPATH"}
    proc = subprocess.Popen([binary, *bind, f"--rpc_port={rpc}", f"--metrics_port={metrics}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", rpc), timeout=1).close()
            return proc, rpc
        except OSError:
            assert proc.poll() is None, f"{binary} exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"{binary} did not listen on {rpc}"
            time.sleep(0.05)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("impl", ["ours", "wheel"])
def test_surface_answers_as_the_wheel(impl, tmp_path):
    python = python_or_skip(impl)
    if impl == "ours":
        binary = master_or_skip()
    else:
        binary = str(Path(python).parent / "mooncake_master")
        if not Path(binary).exists():
            pytest.skip(f"the wheel's mooncake_master is not next to {python}")
    script = tmp_path / "surface.py"
    script.write_text(SCRIPT)
    proc, rpc = start_master(binary, impl == "ours")
    try:
        out = run_python(python, f"import sys; sys.argv = ['surface', '{rpc}']; exec(open({str(script)!r}).read())",
                         timeout=180, env={"MC_TCP_BIND_ADDRESS": "127.0.0.1"}, impl=impl)
    finally:
        stop(proc)
    assert out == EXPECTED


def test_signatures_match_the_wheel():
    import inspect

    import mooncake.store as s
    sig = inspect.signature
    D = s.MooncakeDistributedStore
    assert list(sig(D.batch_remove).parameters) == ["self", "keys", "force"]
    assert sig(D.batch_remove).parameters["force"].default is False
    assert list(sig(D.get_replica_desc).parameters) == ["self", "key"]
    assert list(sig(D.batch_get_replica_desc).parameters) == ["self", "keys"]
    assert list(sig(D.put_from_with_metadata).parameters) == [
        "self", "key", "buffer_ptr", "metadata_buffer_ptr", "size", "metadata_size", "config"]
    assert list(sig(D.batch_put_session_start).parameters) == ["self", "keys", "sizes", "config"]
    for name in ("batch_put_session_end", "batch_put_session_revoke", "batch_get_session_start",
                 "batch_get_session_end"):
        assert list(sig(getattr(D, name)).parameters) == ["self", "keys"], name
    assert list(sig(D.setup).parameters)[:9] == [
        "self", "local_hostname", "metadata_server", "global_segment_size", "local_buffer_size", "protocol",
        "rdma_devices", "master_server_addr", "engine"]
    assert {m.name: int(m) for m in s.ReplicaStatus} == {
        "UNDEFINED": 0, "INITIALIZED": 1, "PROCESSING": 2, "COMPLETE": 3, "REMOVED": 4, "FAILED": 5}
    assert [m.name for m in s.ObjectDataType] == [
        "UNKNOWN", "KVCACHE", "TENSOR", "WEIGHT", "SAMPLE", "ACTIVATION", "GRADIENT", "OPTIMIZER_STATE",
        "METADATA", "GENERAL"]
    for name in ("is_memory_replica", "is_disk_replica", "is_local_disk_replica", "get_memory_descriptor",
                 "get_disk_descriptor"):
        assert callable(getattr(s.ReplicaDescriptor, name)), name
    assert "status" in s.ReplicaDescriptor.__annotations__
    assert {"buffer_address", "size", "transport_endpoint"} <= set(s.Descriptor.__annotations__)
    assert "buffer_descriptor" in s.MemoryDescriptor.__annotations__
    assert {"file_path", "object_size"} <= set(s.DiskDescriptor.__annotations__)
