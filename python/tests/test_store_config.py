"""The pure-Python parts of the store package, each against the wheel's where the wheel has it:
MooncakeConfig (from a file, from the environment, size and bool parsing), ReplicateConfig and
SoftPinAction, `setup(dict)` size strings, and KVBootstrapServer (the HTTP metadata protocol and
its `.store`)."""

import pytest

from store_support import python_or_skip, run_python

CONFIG_CASES = r"""
import json, os, tempfile
from mooncake.mooncake_config import MooncakeConfig
out = {}
def attempt(name, fn):
    try:
        c = fn()
        out[name] = {k: getattr(c, k) for k in ("local_hostname", "metadata_server", "global_segment_size",
            "local_buffer_size", "protocol", "device_name", "master_server_address", "enable_ssd_offload",
            "ssd_offload_path", "tenant_id", "enable_client_http_server", "client_http_port")}
    except Exception as e:
        out[name] = {"raises": type(e).__name__}
def from_json(d):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(d, f); f.close()
    return lambda: MooncakeConfig.from_file(f.name)
base = {"local_hostname": "node1", "metadata_server": "P2PHANDSHAKE", "master_server_address": "m:50051"}
attempt("minimal", from_json(base))
for i, size in enumerate(["16MB", "16 mb", "1.5g", "4GB", "100", 3355443200, "2t", "512k", "8b"]):
    attempt(f"size_{i}", from_json(dict(base, global_segment_size=size, local_buffer_size=size)))
for i, bad in enumerate(["", "50%", "MB", "16 MiB", "-1"]):
    attempt(f"bad_size_{i}", from_json(dict(base, global_segment_size=bad)))
attempt("protocol_upper", from_json(dict(base, protocol="RDMA", device_name="mlx5_0")))
attempt("protocol_unknown", from_json(dict(base, protocol="carrier-pigeon")))
attempt("protocol_empty", from_json(dict(base, protocol="")))
attempt("missing_master", from_json({"local_hostname": "a", "metadata_server": "b"}))
attempt("empty_hostname", from_json(dict(base, local_hostname="  ")))
for i, b in enumerate(["true", "no", "On", 1, "maybe"]):
    attempt(f"bool_{i}", from_json(dict(base, enable_ssd_offload=b)))
attempt("options", from_json(dict(base, ssd_offload_path="/nvme", tenant_id="t1", client_http_port="9400",
                                  enable_client_http_server="yes")))
for k in [k for k in os.environ if k.startswith("MOONCAKE_")]:
    del os.environ[k]
attempt("env_nothing", MooncakeConfig.load_from_env)
os.environ.update({"MOONCAKE_MASTER": "10.0.0.1:50051", "MOONCAKE_PROTOCOL": "TCP",
                   "MOONCAKE_GLOBAL_SEGMENT_SIZE": "4gb", "MOONCAKE_LOCAL_BUFFER_SIZE": "64 MB",
                   "MOONCAKE_TE_META_DATA_SERVER": "http://h:8080/metadata", "MOONCAKE_DEVICE": "d",
                   "MOONCAKE_OFFLOAD_ENABLED": "1", "MOONCAKE_TENANT_ID": "x"})
attempt("env_vars", MooncakeConfig.load_from_env)
f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
json.dump(dict(base, local_hostname="from-file"), f)
f.close()
os.environ["MOONCAKE_CONFIG_PATH"] = f.name
attempt("env_file_wins", MooncakeConfig.load_from_env)
print(json.dumps(out))
"""


def test_mooncake_config_reads_what_the_wheel_reads():
    wheel = run_python(python_or_skip("wheel"), CONFIG_CASES, impl="wheel")
    ours = run_python(python_or_skip("ours"), CONFIG_CASES)
    assert ours["minimal"]["global_segment_size"] == 3355443200
    assert ours["size_1"]["global_segment_size"] == 16 << 20
    assert ours["env_vars"]["protocol"] == "tcp" and ours["env_file_wins"]["local_hostname"] == "from-file"
    diffs = [f"{k}: ours {ours.get(k)}, wheel {wheel[k]}" for k in wheel if ours.get(k) != wheel[k]]
    assert not diffs, "\n".join(diffs)


STORE_OBJECTS = r"""
import json
import mooncake.store as s
out = {}
c = s.ReplicateConfig()
out["default"] = str(c)
c.replica_num = 2; c.with_hard_pin = True; c.soft_pin_action = s.SoftPinAction.ENABLE; c.soft_pin_ttl_ms = 7
c.preferred_segments = ["a:1"]
out["set"] = str(c)
for name, value in [("soft_pin_ttl_ms", -1), ("soft_pin_ttl_ms", 1 << 64), ("replica_num", -2),
                    ("soft_pin_ttl_ms", "5"), ("replica_num", 1.5)]:
    try:
        setattr(s.ReplicateConfig(), name, value); out[f"{name}={value!r}"] = "ok"
    except TypeError:
        out[f"{name}={value!r}"] = "TypeError"
c2 = s.ReplicateConfig(); c2.soft_pin_ttl_ms = (1 << 64) - 1; c2.soft_pin_ttl_ms = None
out["ttl_none"] = c2.soft_pin_ttl_ms
out["actions"] = [[str(a), int(a)] for a in (s.SoftPinAction.PRESERVE, s.SoftPinAction.ENABLE, s.SoftPinAction.DISABLE)]
out["action_from_int"] = str(s.SoftPinAction(1))
st = s.MooncakeDistributedStore()
out["health_before_setup"] = st.health_check()
out["get_before_setup"] = st.get("k").hex()
out["close_before_setup"] = st.close()
out["dict_percent"] = st.setup({"local_hostname": "127.0.0.1", "metadata_server": "P2PHANDSHAKE",
                                "global_segment_size": "50%"})
out["dict_no_metadata"] = st.setup({"local_hostname": "127.0.0.1"})
out["put_tensor_hasattr"] = None
try:
    import torch  # noqa: F401
    out["torch"] = True
except Exception:
    out["torch"] = False
    try:
        st.put_tensor
        out["put_tensor_access"] = "no error"
    except ImportError as e:
        out["put_tensor_access"] = "ImportError: " + str(e)
print(json.dumps(out))
"""


def test_replicate_config_and_soft_pin_action_behave_as_the_wheels():
    wheel = run_python(python_or_skip("wheel"), STORE_OBJECTS, impl="wheel")
    ours = run_python(python_or_skip("ours"), STORE_OBJECTS)
    for key in ("default", "set", "ttl_none", "actions", "action_from_int", "health_before_setup",
                "get_before_setup", "close_before_setup", "dict_percent", "dict_no_metadata",
                "soft_pin_ttl_ms=-1", "soft_pin_ttl_ms=18446744073709551616", "replica_num=-2",
                "soft_pin_ttl_ms='5'", "replica_num=1.5"):
        assert ours[key] == wheel[key], f"{key}: ours {ours[key]!r}, wheel {wheel[key]!r}"
    if not ours["torch"]:
        assert ours["put_tensor_access"].startswith("ImportError: ") and "torch" in ours["put_tensor_access"]


SIZES = r"""
import json
from mooncake.store import parse_size
cases = ["16MB", "16 MB", "4GB", "16mb", "1.5 G", "1048576", " 0 ", "infinite", "2TB", "8K", "8 kb",
         "", "GB", "50%", "-1MB", "1 KiB", "16MiB", "3 parsecs", 4096, -1, True]
print(json.dumps({repr(c): parse_size(c) for c in cases}))
"""


def test_setup_dict_sizes_parse_as_mooncake_parses_them():
    got = run_python(python_or_skip("ours"), SIZES)
    mib = 1 << 20
    want = {"'16MB'": 16 * mib, "'16 MB'": 16 * mib, "'4GB'": 4 << 30, "'16mb'": 16 * mib,
            "'1.5 G'": 3 << 29, "'1048576'": mib, "' 0 '": 0, "'infinite'": (1 << 64) - 1, "'2TB'": 2 << 40,
            "'8K'": 8192, "'8 kb'": 8192, "''": None, "'GB'": None, "'50%'": None, "'-1MB'": None,
            "'1 KiB'": None, "'16MiB'": None, "'3 parsecs'": None, "4096": 4096, "-1": None, "True": None}
    assert got == want


METADATA = r"""
import json, urllib.request, urllib.error
from mooncake.http_metadata_server import KVBootstrapServer, KVPoll
srv = KVBootstrapServer(0, "127.0.0.1")
out = {"poll_before": srv.poll().name}
srv.run()
base = f"http://127.0.0.1:{srv.port}/metadata"
def call(method, key, body=None):
    url = base if key is None else base + "?key=" + urllib.parse.quote(key, safe="")
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
out["get_missing"] = call("GET", "mooncake/ram/a")
out["put"] = call("PUT", "mooncake/ram/a:1", b'{"x": 1}')
out["get"] = call("GET", "mooncake/ram/a:1")
out["store"] = {k: v.decode() for k, v in srv.store.items()}
out["put_rpc"] = call("PUT", "mooncake/rpc_meta/a:1", b"1")
out["put_rpc_again"] = call("PUT", "mooncake/rpc_meta/a:1", b"2")
out["put_ram_again"] = call("PUT", "mooncake/ram/a:1", b"2")
out["no_key"] = call("GET", None)
out["delete"] = call("DELETE", "mooncake/ram/a:1")
out["delete_missing"] = call("DELETE", "mooncake/ram/a:1")
srv.store["set/by/python"] = b"v"
out["get_set_by_python"] = call("GET", "set/by/python")
out["poll_running"] = srv.poll().name
srv.close()
out["poll_after"] = srv.poll().name
print(json.dumps(out))
"""


def test_kv_bootstrap_server_speaks_the_metadata_protocol():
    out = run_python(python_or_skip("ours"), METADATA, timeout=60)
    assert out["poll_before"] == "Failed" and out["poll_running"] == "Success" and out["poll_after"] == "Failed"
    assert out["get_missing"][0] == 404
    assert out["put"][0] == 200 and out["get"] == [200, '{"x": 1}']
    assert out["store"] == {"mooncake/ram/a:1": '{"x": 1}'}
    assert out["put_rpc"][0] == 200 and out["put_rpc_again"][0] == 400, "duplicate rpc_meta is refused"
    assert out["put_ram_again"][0] == 200, "other keys may be replaced"
    assert out["no_key"][0] == 400
    assert out["delete"][0] == 200 and out["delete_missing"][0] == 404
    assert out["get_set_by_python"] == [200, "v"], ".store is the served data"


ENGINE_ON_METADATA = r"""
import json, sys
from mooncake.engine import TransferEngine
e = TransferEngine()
rc = e.initialize("kv-bootstrap-engine", sys.argv[1], "tcp", "")
print(json.dumps({"rc": rc}))
"""


@pytest.mark.parametrize("impl", ["ours", "wheel"])
def test_an_engine_publishes_itself_through_kv_bootstrap_server(impl):
    """Our server in its own process (`python -m mooncake.http_metadata_server`), an engine of
    either implementation in another (the wheel's blocks holding the GIL, so it cannot share a
    process with a Python server); the engine's keys must appear."""
    import socket
    import subprocess
    import time
    import urllib.request

    ours = python_or_skip("ours")
    engine_python = python_or_skip(impl)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([ours, "-m", "mooncake.http_metadata_server", "--port", str(port),
                               "--host", "127.0.0.1", "--log-level", "WARNING"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/metadata"
        code = ENGINE_ON_METADATA.replace("sys.argv[1]", repr(url))
        out = run_python(engine_python, code, timeout=60, impl=impl)
        assert out["rc"] == 0, out
        # the engine exited: it withdrew its keys, or left them; either way it published them
        # while alive, which the server's log of PUTs would show. Check it is still serving:
        with urllib.request.urlopen(urllib.request.Request(url + "?key=probe", data=b"1", method="PUT"),
                                    timeout=10) as r:
            assert r.status == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    assert server.returncode == 0, f"the server exited with {server.returncode} on SIGTERM"
