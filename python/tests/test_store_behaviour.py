"""Our `mooncake.store` against the wheel's answers, case by case.

wheel_store_survey.py runs ~170 edge cases (puts of existing keys, misses, leases, zero copy,
batches, ranges, upsert and TTL rules, setup dicts, close, a master that dies) against a
`mooncake_master`. The wheel's answers are the snapshot data/wheel_store_behaviour.json
(`<wheel python> wheel_store_survey.py` regenerates it; MOONCAKE_STORE_SURVEY_LIVE=1 makes this
test run the wheel live instead). Here the same script runs under our interpreter against our
`mooncake_master`, and every answer must equal the wheel's, except the few listed in DIFFERENT
with the reason.
"""
import json
import os
import re

from store_support import SNAPSHOT, master_or_skip, python_or_skip, run_survey

HOSTNAME = re.compile(r"^127\.0\.0\.1:(\d+)$")

# Calls that crash the wheel's process (SIGSEGV): ours must answer instead.
CRASHES_IN_WHEEL = {
    "get_hostname_before_setup": "",
    "put_before_setup": -600,
    "put_after_close": -600,
    "get_after_close": {"bytes_len": 0, "head": ""},
    "is_exist_after_close": -600,
    "get_size_after_close": -600,
    "remove_after_close": -600,
    "get_hostname_after_close": None,  # ours still knows its name: any host:port
}

# Where ours answers differently on purpose (or by a documented limit), with what it answers.
DIFFERENT = {
    # Values larger than local_buffer_size: the wheel refuses them (-600, its staging buffer is
    # too small); ours moves them in pieces. What follows in the same segment differs too.
    "put_20MiB_local_buffer_16MiB": 0,
    "get_20MiB": 20 << 20,
    "put_80MiB_segment_64MiB": -200,           # no space, said as such
    "put_from_60MiB_segment_64MiB": -200,      # 20 MiB of the segment hold big20
    "put_from_20MiB_when_segment_full": 0,
    "get_into_60MiB": -704,
    "remove_big60": -704,
    # A master that is down: the wheel says -1, ours RPC_FAIL.
    "setup_master_down": -900,
    # A 1 KiB segment: the wheel's minimum is larger; ours takes it.
    "setup_dict_small_segment": 0,
    # Counts that depend on what the cases before left (the size cases above).
    "remove_all_with_leased_key": None,
}

# Pybind's TypeError text differs from ours; the exception type must match.
TYPE_ERRORS = {"put_str_value", "ttl_negative", "ttl_too_large", "replica_num_negative"}
# Time measurements: compared with a tolerance.
TIMES = {"default_lease_ttl_seconds_measured": 1.5}
# Fields that only the other side has, or that are timing only.
IGNORED = {"put_master_gone_seconds"}


def load_wheel(tmp_path):
    if os.environ.get("MOONCAKE_STORE_SURVEY_LIVE") == "1":
        wheel = python_or_skip("wheel")
        from store_support import SURVEY, run_bounded  # noqa: F401 - live run of the wheel
        env = dict(os.environ)
        env.pop("MOONCAKE_SURVEY_MASTER", None)
        env.pop("PYTHONPATH", None)
        rc, out, err = run_bounded([wheel, str(SURVEY), str(tmp_path / "wheel.json")], timeout=900, env=env)
        assert rc == 0, err.decode()[-3000:]
        return json.loads((tmp_path / "wheel.json").read_text())
    return json.loads(SNAPSHOT.read_text())


def compare(wheel, ours):
    problems = []
    for name in sorted(set(wheel) | set(ours)):
        if name.startswith("_") or name in IGNORED:
            continue
        w, o = wheel.get(name, "<absent>"), ours.get(name, "<absent>")
        if isinstance(w, str) and HOSTNAME.match(w):  # a name picked with a random port
            if not (isinstance(o, str) and HOSTNAME.match(o)):
                problems.append(f"{name}: ours {o!r} is not 127.0.0.1:<port>")
            elif not 12300 <= int(HOSTNAME.match(o).group(1)) <= 14300:
                problems.append(f"{name}: ours {o!r}: the port is not in 12300..14300")
            continue
        if name == "setup_hostname_with_port":
            if not (o.get("rc") == 0 and o.get("hostname") == f"127.0.0.1:{o.get('port')}"):
                problems.append(f"{name}: ours {o!r} does not keep the given port")
            continue
        if name in CRASHES_IN_WHEEL:
            want = CRASHES_IN_WHEEL[name]
            if want is None:
                ok = isinstance(o, str) and HOSTNAME.match(o)
            else:
                ok = o == want
            if not ok:
                problems.append(f"{name}: ours {o!r}, expected {want!r} (the wheel crashes here)")
            continue
        if name in DIFFERENT:
            want = DIFFERENT[name]
            if want is not None and o not in (want, w):
                problems.append(f"{name}: ours {o!r}; wheel {w!r}, documented ours {want!r}")
            continue
        if name in TYPE_ERRORS:
            if not (isinstance(o, dict) and o.get("raises") == w.get("raises")):
                problems.append(f"{name}: ours {o!r}, wheel raises {w.get('raises')}")
            continue
        if name in TIMES:
            if not (isinstance(o, (int, float)) and isinstance(w, (int, float)) and abs(o - w) <= TIMES[name]):
                problems.append(f"{name}: ours {o!r}, wheel {w!r} (tolerance {TIMES[name]})")
            continue
        if w == "<absent>":
            continue  # a case added after the snapshot
        if o != w:
            problems.append(f"{name}: ours {json.dumps(o)[:200]}, wheel {json.dumps(w)[:200]}")
    return problems


def test_the_comparison_catches_a_difference():
    wheel = json.loads(SNAPSHOT.read_text())
    same = dict(wheel)
    for name, want in CRASHES_IN_WHEEL.items():
        same[name] = want if want is not None else "127.0.0.1:12345"
    assert compare(wheel, same) == []
    wrong = dict(same)
    wrong["put_existing"] = -705
    wrong["get_hostname"] = "node:1"
    wrong["put_before_setup"] = {"crashes": "..."}
    assert len(compare(wheel, wrong)) == 3


def test_ours_answers_every_case_as_the_wheel_does(tmp_path):
    ours_python = python_or_skip("ours")
    master = master_or_skip()
    ours = run_survey(ours_python, master, tmp_path / "ours.json")
    assert ours.get("_crashes") == {}, f"our process died in: {ours.get('_crashes')}"
    assert ours["_meta"]["wheel_module"].endswith(".py"), "the survey did not import our package"
    wheel = load_wheel(tmp_path)
    problems = compare(wheel, ours)
    assert not problems, "\n".join(problems)
