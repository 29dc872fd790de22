"""Our TransferEngine's methods against the wheel's pybind signatures.

The wheel's pybind11 `__doc__` first line is the signature, e.g.
    register_memory(self: mooncake.engine.TransferEngine, buffer_addr: int, capacity: int, location: str = '*') -> int
Methods bound without py::arg show arg0, arg1, ...: only their number (and positions) is
binding, any name will do. For ours, `inspect.signature` of each method (dumped by
`peer.py --describe` in our interpreter) must have, for every method of the wheel:
  * the same number of positional parameters (after self),
  * the wheel's names where the wheel has real names (keyword calls must work),
  * a default exactly where the wheel has one, with the same value.
The wheel's dump comes from the wheel's interpreter when it is available, else from the
snapshot data/wheel_signatures.json (test_snapshot_is_current keeps the two in step).
"""
import json
import os
import re
import sys

import pytest

from harness import PEER_SCRIPT, interpreter_for, required, run_bounded

SNAPSHOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "wheel_signatures.json")


def describe(python):
    rc, out, err = run_bounded([python, str(PEER_SCRIPT), "--describe"], timeout=60)
    assert rc == 0, f"{python} peer.py --describe failed (rc={rc}):\n{err.decode()[-3000:]}"
    return json.loads(out.decode().strip().splitlines()[-1])["methods"]


def split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_pybind_doc(line):
    """'name(self: T, a: int, b: str = '*') -> int' -> (name, [(a, None), (b, "'*'")])."""
    m = re.match(r"^(\w+)\((.*)\)\s*->\s*.*$", line)
    if not m:
        raise ValueError(f"not a pybind signature: {line!r}")
    name, inner = m.group(1), m.group(2)
    params = []
    for p in split_top(inner):
        pname, _, rest = p.partition(":")
        default = None
        if "=" in rest:
            default = rest.split("=", 1)[1].strip()
        params.append((pname.strip(), default))
    if params and params[0][0] == "self":
        params = params[1:]
    return name, params


def wheel_methods():
    path, reason = interpreter_for("wheel")
    if path is not None:
        return describe(path), "live wheel"
    if required("wheel"):
        pytest.fail(reason)
    with open(SNAPSHOT) as f:
        return json.load(f)["methods"], "snapshot " + SNAPSHOT


def test_parser_on_wheel_docs():
    methods, _ = wheel_methods()
    parsed = {n: parse_pybind_doc(m["doc"]) for n, m in methods.items()}
    assert parsed["register_memory"] == ("register_memory",
                                         [("buffer_addr", None), ("capacity", None), ("location", "'*'")])
    assert parsed["initialize"][1] == [("arg0", None), ("arg1", None), ("arg2", None), ("arg3", None)]
    assert parsed["transfer_sync"][1][4:] == [("opcode", None), ("notify", "None"), ("transport_hint", "''")]
    for must in ("initialize", "initialize_ext", "get_rpc_port", "register_memory", "unregister_memory",
                 "batch_register_memory", "batch_unregister_memory", "allocate_managed_buffer",
                 "free_managed_buffer", "get_first_buffer_address", "write_bytes_to_buffer",
                 "read_bytes_from_buffer", "transfer_sync_write", "transfer_sync_read", "transfer_sync",
                 "batch_transfer_sync_write", "batch_transfer_sync_read", "batch_transfer_sync",
                 "batch_transfer_async_write", "batch_transfer_async_read", "batch_transfer_async",
                 "get_batch_transfer_status", "transfer_submit_write", "transfer_check_status",
                 "get_local_topology", "get_notifies", "send_probe", "get_engine", "get_engine_ptr",
                 "warmup_efa_segment"):
        assert must in parsed, must


def test_snapshot_is_current():
    path, reason = interpreter_for("wheel")
    if path is None:
        if required("wheel"):
            pytest.fail(reason)
        pytest.skip(reason)
    live = {n: m["doc"] for n, m in describe(path).items()}
    with open(SNAPSHOT) as f:
        snap = {n: m["doc"] for n, m in json.load(f)["methods"].items()}
    assert live == snap, "regenerate data/wheel_signatures.json with `<wheel python> peer.py --describe`"


POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")


def compare(wheel, ours):
    """Lists of (method, problem) for failures and for notes (harmless supersets)."""
    bad, notes = [], []
    for name in sorted(wheel):
        if name == "__init__":
            continue
        wname, wparams = parse_pybind_doc(wheel[name]["doc"])
        if name not in ours:
            bad.append((name, "missing"))
            continue
        o = ours[name]
        if o["params"] is None:
            bad.append((name, f"not introspectable with inspect.signature (doc: {o['doc']!r})"))
            continue
        oparams = list(o["params"])
        if oparams and oparams[0][0] == "self":
            oparams = oparams[1:]
        if any(k == "VAR_POSITIONAL" for _, k, _ in oparams):
            bad.append((name, f"takes *args: {o['signature']} (wheel: {wheel[name]['doc']})"))
            continue
        opos = [p for p in oparams if p[1] in POSITIONAL]
        if len(opos) != len(wparams):
            bad.append((name, f"{len(opos)} positional parameters, wheel has {len(wparams)}: "
                              f"ours {o['signature']} / wheel {wheel[name]['doc']}"))
            continue
        for i, ((wn, wd), (on, okind, od)) in enumerate(zip(wparams, opos)):
            real = not re.fullmatch(r"arg\d+", wn)
            if real and on != wn:
                bad.append((name, f"parameter {i} is {on!r}, wheel calls it {wn!r}"))
            if real and okind == "POSITIONAL_ONLY":
                bad.append((name, f"parameter {wn!r} is positional-only; the wheel accepts it by keyword"))
            if wd is not None and od is None:
                bad.append((name, f"parameter {wn!r} has no default; wheel default is {wd}"))
            elif wd is not None and od != wd:
                bad.append((name, f"parameter {wn!r} default is {od}; wheel default is {wd}"))
            elif wd is None and od is not None:
                notes.append((name, f"parameter {wn!r} has default {od}; the wheel requires it"))
        for on, okind, od in oparams:
            if okind == "KEYWORD_ONLY" and od is None:
                bad.append((name, f"extra required keyword-only parameter {on!r}"))
    return bad, notes


def test_signatures_match_wheel(log_dir):
    path, reason = interpreter_for("ours")
    if path is None:
        if required("ours"):
            pytest.fail(reason)
        pytest.skip(reason)
    wheel, source = wheel_methods()
    ours = describe(path)
    bad, notes = compare(wheel, ours)
    report = [f"wheel signatures from {source}; ours from {path}"]
    report += [f"  MISMATCH {m}: {p}" for m, p in bad]
    report += [f"  note     {m}: {p}" for m, p in notes]
    (log_dir / "signature-report.txt").write_text("\n".join(report) + "\n")
    print("\n".join(report), file=sys.stderr)
    assert not bad, "\n".join(report)


def test_compare_flags_differences():
    """The comparison itself: the wheel against itself is clean, and a wrong copy is caught."""
    wheel, _ = wheel_methods()

    def as_ours(doc_line):
        _, ps = parse_pybind_doc(doc_line)
        return {"doc": "", "signature": doc_line,
                "params": [["self", "POSITIONAL_OR_KEYWORD", None]]
                + [[n, "POSITIONAL_OR_KEYWORD", d] for n, d in ps]}
    ours = {n: as_ours(m["doc"]) for n, m in wheel.items()}
    assert compare(wheel, ours) == ([], [])
    ours["register_memory"]["params"][3][2] = "'cpu:0'"
    ours["transfer_sync_write"]["params"][1][0] = "target"
    del ours["send_probe"]
    ours["initialize"]["params"].pop()
    bad, _ = compare(wheel, ours)
    flagged = {m for m, _ in bad}
    assert flagged == {"register_memory", "transfer_sync_write", "send_probe", "initialize"}, bad
