"""Extra segments and copy/move tasks of our MooncakeDistributedStore against Mooncake's wheel:
the pybind signatures of the seven methods, the module's TaskStatus/TaskType/QueryTaskResponse
and their constants, and one script of calls run under each implementation against its own
`mooncake_master` (the wheel's next to its interpreter, ours from the build), whose answers
(return shapes, codes, task states, allocated sizes) must be equal."""
import os
import subprocess
from pathlib import Path

import pytest

from store_support import master_or_skip, python_or_skip, run_python
from test_signatures import POSITIONAL, parse_pybind_doc
from test_store_dummy import free_port, stop, wait_port

METHODS = ["mount_segment", "unmount_segment", "allocate_and_mount_segment", "unmount_and_free_segment",
           "create_copy_task", "create_move_task", "query_task"]

DUMP = r"""
import inspect, json
import mooncake.store as s
C = s.MooncakeDistributedStore
out = {"methods": {}, "module": sorted(n for n in dir(s) if not n.startswith("_"))}
for name in %r:
    attr = getattr(C, name, None)
    if attr is None:
        continue
    doc = (attr.__doc__ or "").strip().splitlines()
    try:
        params = [[p.name, p.kind.name, None if p.default is p.empty else repr(p.default)]
                  for p in inspect.signature(attr).parameters.values()]
    except (TypeError, ValueError):
        params = None
    out["methods"][name] = {"doc": doc[0] if doc else "", "params": params}
out["enums"] = {e: {m: int(getattr(getattr(s, e), m)) for m in ms}
                for e, ms in (("TaskStatus", ["PENDING", "PROCESSING", "FAILED", "SUCCESS"]),
                              ("TaskType", ["REPLICA_COPY", "REPLICA_MOVE"]))}
out["constants"] = {n: [type(getattr(s, n)).__name__, int(getattr(s, n)), str(getattr(s, n))]
                    for n in ("PENDING", "PROCESSING", "SUCCESS", "FAILED", "REPLICA_COPY", "REPLICA_MOVE")}
r = s.QueryTaskResponse()
out["default_response"] = [r.id, int(r.type), int(r.status), r.created_at_ms_epoch, r.last_updated_at_ms_epoch,
                           r.assigned_client, r.message, repr(r)]
print(json.dumps(out))
"""

# The same calls under either implementation; ids, hostnames and times are replaced by shapes.
SCRIPT = r"""
import json, os, re, time
import mooncake.store as s
st = s.MooncakeDistributedStore()
out = {}
out["setup"] = st.setup("127.0.0.1", "%(metadata)s", 16 << 20, 16 << 20, "tcp", "", "%(master)s")
h = st.get_hostname()
ID = re.compile(r"^[0-9]+-[0-9]+$")
def shape_ids(ids):
    assert all(ID.match(i) for i in ids), ids
    return len(ids)
def task(r):
    tid, code = r
    assert isinstance(tid, tuple) and len(tid) == 2 and all(isinstance(x, int) for x in tid), r
    return [tid != (0, 0), code]
out["copy_missing"] = task(st.create_copy_task("nokey", ["x"]))
out["copy_no_target"] = task(st.create_copy_task("nokey", []))
out["put"] = st.put("k", b"hello")
out["copy_empty"] = task(st.create_copy_task("k", []))
out["copy_unknown"] = task(st.create_copy_task("k", ["127.0.0.1:1"]))
out["move_same"] = task(st.create_move_task("k", h, h))
out["move_unknown_target"] = task(st.create_move_task("k", h, "127.0.0.1:1"))
out["move_missing"] = task(st.create_move_task("nokey", h, "127.0.0.1:1"))
q = st.query_task((1, 2))
out["query_unknown"] = [q[0] is None, q[1]]
out["query_list"] = st.query_task([1, 2])[1]
tid, code = st.create_copy_task("k", [h])
first = st.query_task(tid)[0]
out["first_state"] = [int(first.status), int(first.type), first.id == tid, first.message]
deadline = time.monotonic() + 20
while True:
    r, code = st.query_task(tid)
    if int(r.status) in (2, 3) or time.monotonic() > deadline:
        break
    time.sleep(0.05)
out["final"] = [code, int(r.status), int(r.type), r.message, r.assigned_client != (0, 0),
                r.last_updated_at_ms_epoch >= r.created_at_ms_epoch > 0,
                re.sub(r"[0-9]+", "N", repr(r))]
out["get_after_copy"] = st.get("k").decode()
path = "/dev/shm/mooncake-tasks-%%d" %% os.getpid()
with open(path, "wb") as f:
    f.truncate(8 << 20)
m = st.mount_segment(path, 4 << 20)
out["mount"] = [sorted(m), m["ret"], shape_ids(m["segment_ids"])]
out["mount_offset"] = st.mount_segment(path, 4096, 100)
out["mount_too_big"] = st.mount_segment(path, 8 << 20, 4096)
out["mount_missing"] = st.mount_segment("/nonexistent/mooncake", 4096)
out["mount_zero"] = st.mount_segment(path, 0)
out["unmount_bad"] = [st.unmount_segment(["x"]), st.unmount_segment(["1-2"])]
out["unmount"] = st.unmount_segment(m["segment_ids"])
out["unmount_again"] = st.unmount_segment(m["segment_ids"])
a = st.allocate_and_mount_segment(5 << 20)
out["alloc"] = [sorted(a), a["ret"], shape_ids(a["segment_ids"]), a["allocated_size"]]
out["alloc_zero"] = st.allocate_and_mount_segment(0)
out["unmount_wrong_kind"] = [st.unmount_segment(a["segment_ids"]), st.unmount_and_free_segment(m["segment_ids"])]
out["free_grace"] = st.unmount_and_free_segment(a["segment_ids"], 1)
out["free_again"] = st.unmount_and_free_segment(a["segment_ids"])
out["close"] = st.close()
os.remove(path)
st2 = s.MooncakeDistributedStore()
out["unset"] = [st2.mount_segment(path, 4096), st2.unmount_segment(["1-2"]), st2.allocate_and_mount_segment(4096),
                st2.unmount_and_free_segment(["1-2"])]
print(json.dumps(out))
"""


def dump(impl):
    return run_python(python_or_skip(impl), DUMP % (METHODS,), timeout=120, impl=impl)


@pytest.fixture(scope="module")
def both():
    return dump("wheel"), dump("ours")


def test_signatures_match_the_wheel(both):
    wheel, ours = both
    bad = []
    for name in METHODS:
        _, wparams = parse_pybind_doc(wheel["methods"][name]["doc"])
        if name not in ours["methods"]:
            bad.append(f"{name}: missing")
            continue
        opos = [p for p in ours["methods"][name]["params"] if p[0] != "self" and p[1] in POSITIONAL]
        if [(n, d) for n, _, d in opos] != [(n, d) for n, d in wparams]:
            bad.append(f"{name}: {opos} vs the wheel's {wparams}")
    assert not bad, "\n".join(bad)


def test_task_types_and_constants_match_the_wheel(both):
    wheel, ours = both
    for name in ("TaskStatus", "TaskType", "QueryTaskResponse", "PENDING", "PROCESSING", "SUCCESS", "FAILED",
                 "REPLICA_COPY", "REPLICA_MOVE"):
        assert name in wheel["module"] and name in ours["module"], name
    assert ours["enums"] == wheel["enums"]
    assert ours["constants"] == wheel["constants"]
    assert ours["default_response"] == wheel["default_response"]


def run_script(impl, master_bin):
    python = python_or_skip(impl)
    rpc, http, metrics = free_port(), free_port(), free_port()
    # The wheel's mooncake_master is a console script of its package: never ours on PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if not (impl == "wheel" and k == "PYTHONPATH")}
    master = subprocess.Popen([master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                               f"--metrics_port={metrics}",
                               "--enable_http_metadata_server=true", "--http_metadata_server_host=127.0.0.1",
                               f"--http_metadata_server_port={http}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(rpc, master, "mooncake_master")
        wait_port(http, master, "the master's metadata server")
        code = SCRIPT % {"metadata": f"http://127.0.0.1:{http}/metadata", "master": f"127.0.0.1:{rpc}"}
        return run_python(python, code, timeout=180, impl=impl, env={"MC_TCP_BIND_ADDRESS": "127.0.0.1"})
    finally:
        stop(master)


@pytest.fixture(scope="module")
def answers():
    wheel_python = python_or_skip("wheel")
    wheel_master = Path(wheel_python).parent / "mooncake_master"
    if not wheel_master.exists():
        pytest.skip(f"the wheel's mooncake_master is not at {wheel_master}")
    return run_script("wheel", str(wheel_master)), run_script("ours", master_or_skip())


def test_calls_answer_as_the_wheels(answers):
    wheel, ours = answers
    assert sorted(ours) == sorted(wheel)
    different = {k: (wheel[k], ours[k]) for k in wheel if wheel[k] != ours[k]}
    assert not different, different


def test_a_copy_task_runs_to_success(answers):
    _, ours = answers
    assert ours["first_state"][0] == 0, "a new task is PENDING"
    assert ours["final"][:4] == [0, 3, 0, "Task completed successfully"]
    assert ours["get_after_copy"] == "hello"
