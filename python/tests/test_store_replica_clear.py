"""`MooncakeDistributedStore.batch_replica_clear` against Mooncake's wheel: its pybind signature,
and one script of calls (whole objects, one segment's replicas, and the keys Mooncake skips:
empty, unknown, repeated, another client's, leased, no replica on the segment, an unknown
segment) run under each implementation against its own `mooncake_master`, whose answers must
be equal."""
import os
import subprocess
from pathlib import Path

import pytest

from store_support import master_or_skip, python_or_skip, run_python
from test_signatures import POSITIONAL, parse_pybind_doc
from test_store_dummy import free_port, stop, wait_port

LEASE_MS = 500

DUMP = r"""
import inspect, json
import mooncake.store as s
attr = s.MooncakeDistributedStore.batch_replica_clear
doc = (attr.__doc__ or "").strip().splitlines()
try:
    params = [[p.name, p.kind.name, None if p.default is p.empty else repr(p.default)]
              for p in inspect.signature(attr).parameters.values()]
except (TypeError, ValueError):
    params = None
print(json.dumps({"doc": doc[0] if doc else "", "params": params}))
"""

SCRIPT = r"""
import json, time
import mooncake.store as s
lease = %(lease)f
out = {}
a, b = s.MooncakeDistributedStore(), s.MooncakeDistributedStore()
out["unset"] = a.batch_replica_clear(["k"])
out["setup"] = [st.setup("127.0.0.1", "%(metadata)s", 32 << 20, 16 << 20, "tcp", "", "%(master)s") for st in (a, b)]
rc = s.ReplicateConfig()
rc.replica_num = 2
for k in ("c1", "c2", "c3"):
    a.put(k, b"value", rc)
b.put("others", b"value")
out["empty"] = a.batch_replica_clear([])
try:
    a.batch_replica_clear(["k"], 5)
    out["bad_segment_type"] = "accepted"
except TypeError:
    out["bad_segment_type"] = "TypeError"
time.sleep(lease + 0.3)
a.put("fresh", b"value")
out["right_after_put"] = a.batch_replica_clear(["fresh"])
out["is_exist"] = a.is_exist("c3")
out["after_is_exist"] = a.batch_replica_clear(["c3"])
out["mixed"] = a.batch_replica_clear(["c1", "missing", "", "others", "c1"])
out["c1_get"] = a.get("c1").decode()
out["unknown_segment"] = a.batch_replica_clear(["c2"], "nonexistent_host:99999")
out["own_segment"] = a.batch_replica_clear(["c2"], a.get_hostname())
out["c2_from_b"] = b.get("c2").decode()
time.sleep(lease + 0.3)
out["own_segment_again"] = a.batch_replica_clear(["c2"], a.get_hostname())
out["last_segment"] = a.batch_replica_clear(["c2"], segment_name=b.get_hostname())
out["c2_exists"] = a.is_exist("c2")
out["by_another_client"] = b.batch_replica_clear(["c3"])
out["others_exists"] = a.is_exist("others")
out["keywords"] = a.batch_replica_clear(keys=["c3", "nothing"], segment_name="")
b.close()
a.close()
print(json.dumps(out))
"""


def test_signature_matches_the_wheel():
    wheel = run_python(python_or_skip("wheel"), DUMP, impl="wheel")
    ours = run_python(python_or_skip("ours"), DUMP, impl="ours")
    _, wparams = parse_pybind_doc(wheel["doc"])
    opos = [p for p in ours["params"] if p[0] != "self" and p[1] in POSITIONAL]
    assert [(n, d) for n, _, d in opos] == [(n, d) for n, d in wparams]


def run_script(impl, master_bin):
    python = python_or_skip(impl)
    rpc, http, metrics = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not (impl == "wheel" and k == "PYTHONPATH")}
    master = subprocess.Popen([master_bin, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                               f"--metrics_port={metrics}", f"--default_kv_lease_ttl={LEASE_MS}",
                               "--enable_http_metadata_server=true", "--http_metadata_server_host=127.0.0.1",
                               f"--http_metadata_server_port={http}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(rpc, master, "mooncake_master")
        wait_port(http, master, "the master's metadata server")
        code = SCRIPT % {"metadata": f"http://127.0.0.1:{http}/metadata", "master": f"127.0.0.1:{rpc}",
                         "lease": LEASE_MS / 1000}
        return run_python(python, code, timeout=120, impl=impl, env={"MC_TCP_BIND_ADDRESS": "127.0.0.1"})
    finally:
        stop(master)


def test_calls_answer_as_the_wheels():
    wheel_python = python_or_skip("wheel")
    wheel_master = Path(wheel_python).parent / "mooncake_master"
    if not wheel_master.exists():
        pytest.skip(f"the wheel's mooncake_master is not at {wheel_master}")
    wheel = run_script("wheel", str(wheel_master))
    ours = run_script("ours", master_or_skip())
    assert wheel["mixed"] == ["c1"] and wheel["own_segment"] == ["c2"], wheel
    assert sorted(ours) == sorted(wheel)
    different = {k: (wheel[k], ours[k]) for k in wheel if wheel[k] != ours[k]}
    assert not different, different
