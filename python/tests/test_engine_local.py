"""One engine per implementation: module attributes, initialize, registration codes, managed
buffers, topology, argument checking. Expected values are those of Mooncake's wheel
(mooncake-transfer-engine-non-cuda 0.3.13.post1, transfer_engine_py.cpp)."""
import json
import os

import pytest

from harness import BYTES, A

# Mooncake's engine codes (mooncake-transfer-engine/include/error.h)
ERR_INVALID_ARGUMENT = -1
ERR_ADDRESS_NOT_REGISTERED = -3
ERR_ADDRESS_OVERLAPPED = -7


def test_implementation_identity(engine):
    mod = engine.hello["module_file"] or ""
    if engine.impl == "ours":
        assert mod.endswith(".py"), mod
    else:
        assert not mod.endswith(".py"), mod


def test_module_attributes(engine):
    f = engine.cmd("module")
    assert f["SUPPORT_CUDA"] is False and f["SUPPORT_CUDA_type"] == "bool"
    for name in ("TransferEngine", "TransferOpcode", "TransferNotify", "SUPPORT_CUDA", "Read", "Write"):
        assert name in f["attrs"], f"mooncake.engine.{name} missing"
    assert (f["Read"], f["Write"]) == (0, 1)
    # py::enum_(...).export_values(): mooncake.engine.Read / .Write are the members
    assert f["module_Read_is_member"] and f["module_Write_is_member"]
    # adaptor_cls.attr("TransferOpcode") = transfer_opcode
    assert f["engine_TransferOpcode_is_module_enum"]
    # (In the wheel `TransferOpcode.Read == 0` is False: pybind enums only compare equal to
    # members; int(member) gives the value. Not asserted: an IntEnum is a compatible superset.)
    assert f["notify_attrs"] == ["c", "d"]  # read-write attributes
    assert f["notify_kw"] == ["x", "y"]  # py::arg("name"), py::arg("msg")
    assert f["notify_default"] == ["", ""]  # py::init<>()


def test_initialize_and_rpc_port(engine):
    # Default MC_MIN_RPC_PORT..MC_MAX_RPC_PORT is 15000..17000
    assert isinstance(engine.port, int)
    assert 15000 <= engine.port <= 17000
    assert engine.session == f"127.0.0.1:{engine.port}"
    assert engine.call("get_rpc_port") == engine.port


def test_rpc_port_range_env(make_peer, impl):
    p = make_peer(impl, env={"MC_MIN_RPC_PORT": "16400", "MC_MAX_RPC_PORT": "16420"})
    assert 16400 <= p.port <= 16420


def test_get_local_topology(engine):
    for args in ((), ("",), (None,)):
        raw = engine.cmd("call", method="get_local_topology", args=list(args))
        assert raw["type"] == "str"
        topo = json.loads(raw["result"])
        assert isinstance(topo, dict) and topo, topo
        # Mooncake's format: {"cpu:<numa>": [[preferred HCAs], [available HCAs]], ...}
        for k, v in topo.items():
            assert isinstance(k, str)
            assert isinstance(v, list) and len(v) == 2 and all(isinstance(x, list) for x in v), topo


def sysfs_numa_nodes():
    """``cpu:<n>`` for each ``nodeN`` directory of sysfs: what Mooncake's discovery lists."""
    try:
        names = os.listdir("/sys/devices/system/node")
    except OSError:
        return set()
    return {f"cpu:{n[4:]}" for n in names if n.startswith("node") and n[4:].isdigit()}


def test_get_local_topology_lists_this_hosts_numa_nodes(engine):
    topo = json.loads(engine.call("get_local_topology"))
    assert set(topo) == sysfs_numa_nodes(), topo
    # A device list no device matches leaves every node without devices.
    topo = json.loads(engine.call("get_local_topology", "no_such_device"))
    assert set(topo) == sysfs_numa_nodes() and all(v == [[], []] for v in topo.values()), topo


@pytest.mark.parametrize("custom", [None, {"cpu:0": [["mlx5_1"], ["mlx5_0", "rxe0"]], "cuda:0": [[], ["mlx5_0"]]}])
def test_get_local_topology_text_is_the_wheels(make_peer, tmp_path, custom):
    """Byte for byte the text of Mooncake's wheel, discovered or from MC_CUSTOM_TOPO_JSON."""
    env = {}
    if custom is not None:
        path = tmp_path / "topo.json"
        path.write_text(json.dumps(custom))
        env["MC_CUSTOM_TOPO_JSON"] = str(path)
    # Not initialized: get_local_topology needs no engine (the wheel's initialize would try RDMA
    # with the file's devices and fail where they do not exist).
    texts = {}
    for impl in ("wheel", "ours"):
        texts[impl] = make_peer(impl, label=f"topo-{impl}", env=env, init=False).call("get_local_topology")
    assert texts["ours"] == texts["wheel"], texts
    if custom is not None:
        # the locations of the file; devices this host cannot open are dropped (disableDevice)
        assert set(json.loads(texts["ours"])) == set(custom)


def test_engine_handles(engine):
    ptr = engine.call("get_engine_ptr")
    assert isinstance(ptr, int) and ptr != 0
    assert engine.call("warmup_efa_segment", engine.session) == 0
    assert engine.call("warmup_efa_segment", segment_name=engine.session) == 0
    res = engine.call_raw("get_engine")
    assert res["ok"] and res["result"] is not None


def test_register_unregister_codes(engine):
    n = 1 << 20
    a = engine.alloc("reg_a", n, register=False)
    engine.alloc("reg_b", n, register=False)
    assert engine.call("register_memory", a, n) == 0
    assert engine.call("register_memory", a, n) == ERR_ADDRESS_OVERLAPPED  # same region twice
    assert engine.call("register_memory", a + 4096, 4096) == ERR_ADDRESS_OVERLAPPED  # inside it
    assert engine.call("register_memory", A("reg_b"), n, "cpu:0") == 0  # explicit location
    assert engine.call("unregister_memory", A("reg_b")) == 0
    assert engine.call("register_memory", buffer_addr=A("reg_b"), capacity=n, location="*") == 0
    assert engine.call("unregister_memory", A("reg_b")) == 0
    assert engine.call("unregister_memory", A("reg_b")) == ERR_ADDRESS_NOT_REGISTERED
    assert engine.call("unregister_memory", 12345) == ERR_ADDRESS_NOT_REGISTERED
    assert engine.call("unregister_memory", a) == 0
    assert engine.call("register_memory", a, n) == 0  # again after unregister
    assert engine.call("unregister_memory", a) == 0


def test_register_zero_length(engine):
    engine.alloc("reg_zero", 4096, register=False)
    assert engine.call("register_memory", A("reg_zero"), 0) == ERR_INVALID_ARGUMENT


def test_batch_register_unregister(engine):
    n = 256 << 10
    addrs = [engine.alloc(f"breg{i}", n, register=False) for i in range(4)]
    assert engine.call("batch_register_memory", addrs, [n] * 4) == 0
    assert engine.call("register_memory", addrs[2], n) == ERR_ADDRESS_OVERLAPPED
    assert engine.call("batch_unregister_memory", addrs) == 0
    assert engine.call("batch_unregister_memory", addrs) == ERR_ADDRESS_NOT_REGISTERED
    assert engine.call("batch_register_memory", buffer_addresses=addrs, capacities=[n] * 4,
                       location="cpu:0") == 0
    assert engine.call("batch_unregister_memory", addrs) == 0
    assert engine.call("batch_register_memory", [], []) == 0
    assert engine.call("batch_unregister_memory", []) == 0


def test_managed_buffers_local(engine):
    sizes = [1, 4096, 16 << 10, 1 << 20, 8 << 20]
    addrs = []
    for s in sizes:
        res = engine.cmd("call", method="allocate_managed_buffer", args=[s])
        assert res["type"] == "int"
        a = res["result"]
        assert a != 0, f"allocate_managed_buffer({s}) failed"
        addrs.append((a, s))
    spans = sorted(addrs)
    for (a, s), (b, _) in zip(spans, spans[1:]):
        assert a + s <= b, f"managed buffers overlap: {spans}"
    for i, (a, s) in enumerate(addrs):
        data = bytes((i * 7 + j) & 0xFF for j in range(min(s, 64)))
        assert engine.call("write_bytes_to_buffer", a, BYTES(data), len(data)) == 0
        got = engine.cmd("call", method="read_bytes_from_buffer", args=[a, len(data)])
        assert got["type"] == "bytes"
        assert bytes.fromhex(got["result"]["$bytes"]) == data
    # str argument: pybind's `char *` accepts str (UTF-8) as well as bytes
    a0 = addrs[1][0]
    assert engine.call("write_bytes_to_buffer", a0, "hello", 5) == 0
    assert engine.call("read_bytes_from_buffer", a0, 5) == b"hello"
    assert engine.call("read_bytes_from_buffer", a0, 0) == b""
    # managed memory is registered: a second registration of it overlaps
    assert engine.call("register_memory", a0, 16) == ERR_ADDRESS_OVERLAPPED
    # the engine's own segment has a buffer now
    assert engine.call("get_first_buffer_address", engine.session) != 0
    for a, s in addrs:
        assert engine.call("free_managed_buffer", a, s) == 0


def test_local_loopback_transfer(engine):
    """An engine writing to / reading from its own session (te_bench's "local" scenario)."""
    n = 1 << 20
    engine.alloc("loop_src", n)
    dst = engine.alloc("loop_dst", n)
    blocks = [(i * 16384, 16384) for i in range(0, 64, 3)]
    want = engine.fill("loop_src", blocks, seed=11)
    rc = engine.call("batch_transfer_sync_write", engine.session, [A("loop_src", o) for o, _ in blocks],
                     [dst + o for o, _ in blocks], [n_ for _, n_ in blocks])
    assert rc == 0
    assert engine.digest("loop_dst", blocks) == want
    assert engine.call("transfer_sync_read", engine.session, A("loop_src", n // 2), dst, 16384) == 0
    assert engine.digest("loop_src", [(n // 2, 16384)]) == engine.digest("loop_dst", [(0, 16384)])


@pytest.mark.parametrize("args", [
    pytest.param([-1, 4096], id="negative-address"),
    pytest.param(["0x1000", 4096], id="str-address"),
    pytest.param([1.5, 4096], id="float-address"),
    pytest.param([4096, -1], id="negative-length"),
])
def test_register_bad_argument_types(engine, args):
    res = engine.call_raw("register_memory", *args)
    assert not res["ok"] and res["exc"] == "TypeError", res


def test_transfer_bad_argument_types(engine):
    engine.alloc("bad_types", 4096)
    for args in ([engine.session, A("bad_types"), A("bad_types"), 16, "Write"],  # opcode as str
                 [engine.session, A("bad_types"), A("bad_types"), 16, {"$opcode": "Write"}, ["a", "b"]]):
        res = engine.call_raw("transfer_sync", *args)
        assert not res["ok"] and res["exc"] == "TypeError", res
    res = engine.call_raw("batch_transfer_sync_write", engine.session, A("bad_types"), [0], [1])
    assert not res["ok"] and res["exc"] == "TypeError", res  # scalar where a list is expected
    res = engine.call_raw("transfer_sync_write", engine.session, A("bad_types"), 0)
    assert not res["ok"] and res["exc"] == "TypeError", res  # missing argument


def test_notifies_empty(engine):
    res = engine.cmd("call", method="get_notifies")
    assert res["type"] == "list" and res["result"] == []


def test_transport_hint_is_not_validated(engine):
    """The wheel (built without TENT) ignores transport_hint: any string is accepted."""
    engine.alloc("hint", 1 << 16)
    for hint in ("", "tcp", "rdma", "bogus"):
        assert engine.call("transfer_sync_write", engine.session, A("hint"), A("hint", 4096), 16, hint) == 0
        assert engine.call("transfer_sync_read", engine.session, A("hint"), A("hint", 4096), 16,
                           transport_hint=hint) == 0
    bid = engine.call("batch_transfer_async_write", engine.session, [A("hint")], [A("hint", 8192)], [16],
                      "bogus")
    assert bid > 0 and engine.call("get_batch_transfer_status", [bid]) == 0


def test_session_names(engine):
    engine.alloc("names", 1 << 16)
    # "localhost:<port>" reaches the engine as well (resolved locally)
    assert engine.call("transfer_sync_write", f"localhost:{engine.port}", A("names"), A("names", 4096), 16) == 0
    # without a port Mooncake assumes 12001 (MC_HANDSHAKE_PORT): nothing there here
    assert engine.call("transfer_sync_write", "127.0.0.1", A("names"), A("names", 4096), 16) == -1
    assert engine.call("transfer_sync_write", "", A("names"), A("names", 4096), 16) == -1
    assert engine.call("send_probe", "127.0.0.1") == -102
    assert engine.call("get_first_buffer_address", "") == 0


def test_allocate_managed_zero_length(engine):
    a = engine.call("allocate_managed_buffer", 0)
    assert a != 0
    assert engine.call("free_managed_buffer", a, 0) == 0


@pytest.mark.parametrize("how", ["initialize_ext", "rdma-protocol", "host-with-port"])
def test_initialize_variants(make_peer, impl, how):
    p = make_peer(impl, init=False)
    if how == "initialize_ext":
        rc = p.call("initialize_ext", "127.0.0.1", "P2PHANDSHAKE", "tcp", "", "p2p")
    elif how == "rdma-protocol":  # no RDMA device here: the engine still serves TCP
        rc = p.call("initialize", "127.0.0.1", "P2PHANDSHAKE", "rdma", "")
    else:  # with P2PHANDSHAKE the port part of local_hostname is not the RPC port
        rc = p.call("initialize", "127.0.0.1:12345", "P2PHANDSHAKE", "tcp", "")
    assert rc == 0
    port = p.call("get_rpc_port")
    assert 15000 <= port <= 17000
    p.alloc("x", 1 << 16)
    assert p.call("transfer_sync_write", f"127.0.0.1:{port}", A("x"), A("x", 4096), 16) == 0


def test_initialize_unreachable_metadata_server(make_peer, impl):
    from harness import closed_port
    p = make_peer(impl, init=False)
    res = p.call_raw("initialize", "127.0.0.1", f"http://127.0.0.1:{closed_port()}/metadata", "tcp", "")
    assert res["ok"] and res["result"] == -1, res


def test_clean_shutdown(make_peer, impl):
    """An engine that moved data exits promptly (quit -> exit code 0 within 15 s)."""
    a = make_peer(impl, label="shutdown-a")
    b = make_peer(impl, label="shutdown-b")
    dst = b.alloc("d", 1 << 20)
    a.alloc("s", 1 << 20)
    assert a.call("transfer_sync_write", b.session, A("s"), dst, 1 << 20) == 0
    for p in (a, b):
        p.request_quit()
    for p in (a, b):
        assert p.proc.wait(timeout=15) == 0, p.log_tail()
