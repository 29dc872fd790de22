"""Our MooncakeDistributedStore's methods against the wheel's pybind signatures (as
test_signatures.py does for the engine): for every method the spec lists, the same positional
parameters, the wheel's names where it has real names, and a default exactly where the wheel
has one (pybind prints a ReplicateConfig default as an object repr: ours must be None, which
means the same default config). Also the module's names and ReplicateConfig's fields."""
import re

import pytest

from store_support import python_or_skip, run_python
from test_signatures import POSITIONAL, parse_pybind_doc

# The methods of Mooncake's MooncakeDistributedStore that this package implements.
METHODS = [
    "init_all", "health_check", "close", "get_hostname", "put", "get", "put_batch", "get_batch",
    "register_buffer", "unregister_buffer", "put_from", "get_into", "batch_put_from", "batch_get_into",
    "is_exist", "batch_is_exist", "get_size", "remove", "remove_by_regex", "remove_all", "setup_dummy",
    "upsert", "upsert_from", "batch_upsert_from", "upsert_batch", "get_into_ranges", "batch_get_buffer",
    "get_buffer", "alloc_from_mem_pool",
]
VARARGS = ["put_parts", "upsert_parts"]  # key, *parts, config=...

DUMP = r"""
import inspect, json, sys
import mooncake.store as s
C = s.MooncakeDistributedStore
out = {"module": sorted(n for n in dir(s) if not n.startswith("_")), "methods": {}}
for name in %r:
    attr = getattr(C, name, None)
    if attr is None:
        continue
    doc = (attr.__doc__ or "").strip().splitlines()
    try:
        sig = inspect.signature(attr)
        params = [[p.name, p.kind.name, None if p.default is p.empty else repr(p.default)]
                  for p in sig.parameters.values()]
    except (TypeError, ValueError):
        params = None
    out["methods"][name] = {"doc": doc[0] if doc else "", "params": params}
cfg = s.ReplicateConfig()
out["config_fields"] = sorted(n for n in dir(cfg) if not n.startswith("_"))
print(json.dumps(out))
"""


def dump(impl):
    return run_python(python_or_skip(impl), DUMP % (METHODS + VARARGS + ["setup"],), timeout=120, impl=impl)


def config_default(d):
    return d is not None and d.startswith("<mooncake.store.ReplicateConfig object")


def compare(wheel, ours):
    bad = []
    for name in METHODS:
        _, wparams = parse_pybind_doc(wheel[name]["doc"])
        if name not in ours:
            bad.append(f"{name}: missing")
            continue
        oparams = [p for p in ours[name]["params"] if p[0] != "self"]
        opos = [p for p in oparams if p[1] in POSITIONAL]
        if len(opos) != len(wparams):
            bad.append(f"{name}: {len(opos)} positional parameters, wheel has {len(wparams)} ({wheel[name]['doc']})")
            continue
        for (wn, wd), (on, _, od) in zip(wparams, opos):
            if not re.fullmatch(r"arg\d+", wn) and on != wn:
                bad.append(f"{name}: parameter {on!r}, the wheel calls it {wn!r}")
            if config_default(wd):
                if od != "None":
                    bad.append(f"{name}: {wn} default {od}, expected None (the default config)")
            elif wd is not None and od != wd:
                bad.append(f"{name}: {wn} default {od}, wheel {wd}")
            elif wd is None and od is not None:
                bad.append(f"{name}: {wn} has a default {od}; the wheel requires it")
    for name in VARARGS:
        kinds = [(p[0], p[1]) for p in ours[name]["params"] if p[0] != "self"]
        if kinds != [("key", "POSITIONAL_OR_KEYWORD"), ("args", "VAR_POSITIONAL"), ("config", "KEYWORD_ONLY")]:
            bad.append(f"{name}: {kinds} is not (key, *args, config=None)")
    return bad


@pytest.fixture(scope="module")
def both():
    return dump("wheel"), dump("ours")


def test_methods_match_the_wheel(both):
    wheel, ours = both
    bad = compare(wheel["methods"], ours["methods"])
    assert not bad, "\n".join(bad)


def test_setup_takes_the_wheels_arguments_and_a_dict(both):
    wheel, ours = both
    doc = wheel["methods"]["setup"]["doc"]
    assert doc.startswith("setup(*args, **kwargs)"), doc  # pybind overloads
    names = [p[0] for p in ours["methods"]["setup"]["params"]][1:]
    assert names[:7] == ["local_hostname", "metadata_server", "global_segment_size", "local_buffer_size",
                         "protocol", "rdma_devices", "master_server_addr"]


def test_module_and_config_names(both):
    wheel, ours = both
    for name in ("MooncakeDistributedStore", "ReplicateConfig", "SoftPinAction", "BufferHandle"):
        assert name in wheel["module"] and name in ours["module"], name
    for field in ("replica_num", "with_hard_pin", "soft_pin_action", "soft_pin_ttl_ms", "preferred_segment",
                  "preferred_segments", "group_ids"):
        assert field in wheel["config_fields"] and field in ours["config_fields"], field


def test_the_comparison_catches_a_difference(both):
    wheel, ours = both
    broken = {k: dict(v) for k, v in ours["methods"].items()}
    broken["remove"] = dict(broken["remove"], params=[["self", "POSITIONAL_OR_KEYWORD", None],
                                                      ["name", "POSITIONAL_OR_KEYWORD", None],
                                                      ["force", "POSITIONAL_OR_KEYWORD", "True"]])
    del broken["get_size"]
    bad = compare(wheel["methods"], broken)
    assert any(b.startswith("remove: parameter 'name'") for b in bad)
    assert any(b.startswith("remove: force default True") for b in bad)
    assert "get_size: missing" in bad
