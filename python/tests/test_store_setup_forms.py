"""`setup` as real callers call it, across two processes against our master: vLLM's
`MooncakeStoreWorker` (the config dict) holds a value; SGLang HiCache's `MooncakeStore` (seven
positional arguments, the engine of an initialized `TransferEngine`, keyword arguments, and its
retry that drops the keyword a `TypeError` names) reads it through the shared engine, puts and
checks its warm-up key, and after `close` the engine it shared still runs."""
import json
import os
import select
import subprocess

from store_support import master_or_skip, python_or_skip, run_python
from test_store_surface import free_port, start_master, stop

VLLM = r"""
import json, sys
import mooncake.store as s
store = s.MooncakeDistributedStore()
rc = store.setup({"local_hostname": "127.0.0.1", "metadata_server": "P2PHANDSHAKE",
                  "global_segment_size": "32MB", "local_buffer_size": 16 << 20, "protocol": "tcp",
                  "device_name": "", "master_server_addr": "127.0.0.1:%(rpc)d"})
put = store.put("vllm-block", b"V" * 100000)
print(json.dumps({"setup": rc, "put": put}), flush=True)
sys.stdin.readline()
store.close()
"""

SGLANG = r"""
import json
import mooncake.store as s
from mooncake.engine import TransferEngine
out = {}
te = TransferEngine()
out["te_init"] = te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "")
session = "127.0.0.1:%%d" %% te.get_rpc_port()
store = s.MooncakeDistributedStore()
setup_kwargs = {"enable_client_http_server": True, "client_http_port": %(http)d, "a_newer_option": 1}
dropped = []
for _ in range(5):
    try:
        out["setup"] = store.setup(session, "P2PHANDSHAKE", 32 << 20, 16 << 20, "tcp", "", "127.0.0.1:%(rpc)d",
                                   te, **setup_kwargs)
        break
    except TypeError as e:
        unsupported = [k for k in list(setup_kwargs) if k in str(e)]
        assert unsupported, str(e)
        dropped += unsupported
        for k in unsupported:
            setup_kwargs.pop(k)
out["dropped"] = dropped
out["hostname_is_engine_session"] = store.get_hostname() == session
out["get_vllm"] = store.get("vllm-block") == b"V" * 100000
out["warmup_put"] = store.put("sglang_mooncake_store_warmup_key", bytes(4096))
out["warmup_exist"] = store.is_exist("sglang_mooncake_store_warmup_key")
out["warmup_get"] = store.get("sglang_mooncake_store_warmup_key") == bytes(4096)
out["close"] = store.close()
import ctypes
buf = ctypes.create_string_buffer(4096)
out["engine_alive_after_close"] = te.register_memory(ctypes.addressof(buf), 4096)
print(json.dumps(out))
"""


def test_vllm_dict_and_sglang_engine_setups_across_processes():
    binary = master_or_skip()
    python = python_or_skip("ours")
    proc, rpc = start_master(binary, True)
    env = dict(os.environ, MC_TCP_BIND_ADDRESS="127.0.0.1")
    vllm = subprocess.Popen([python, "-c", VLLM % {"rpc": rpc}], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        ready, _, _ = select.select([vllm.stdout], [], [], 60)
        assert ready, "the vLLM-like process said nothing within 60 s"
        first = json.loads(vllm.stdout.readline().decode())
        assert first == {"setup": 0, "put": 0}
        out = run_python(python, SGLANG % {"rpc": rpc, "http": free_port()}, timeout=120, env=env)
    finally:
        if vllm.poll() is None:
            try:
                vllm.stdin.write(b"\n")
                vllm.stdin.flush()
                vllm.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                vllm.kill()
                vllm.wait(timeout=10)
        stop(proc)
    assert out == {
        "te_init": 0, "setup": 0, "dropped": ["a_newer_option"], "hostname_is_engine_session": True,
        "get_vllm": True, "warmup_put": 0, "warmup_exist": 1, "warmup_get": True, "close": 0,
        "engine_alive_after_close": 0,
    }
