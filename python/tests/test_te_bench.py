"""benches/te_bench.py, run UNCHANGED under each implementation's interpreter (short points).

$MOONCAKE_TE_BENCH names another copy of the script; te_bench.py needs numpy in that interpreter.
"""
import glob
import json
import os
from pathlib import Path

import pytest

from harness import run_bounded, truthy

TE_BENCH = Path(__file__).resolve().parents[2] / "benches" / "te_bench.py"
SIZES = (4096, 65536)
SCENARIOS = ("remote", "local")


def test_te_bench_unchanged(impl, log_dir, tmp_path):
    from conftest import python_of
    python = python_of(impl)
    bench = os.environ.get("MOONCAKE_TE_BENCH") or str(TE_BENCH)
    rc, _, err = run_bounded([python, "-c", "import numpy"], timeout=60)
    if rc != 0:
        msg = f"numpy is not importable in {python} (te_bench.py needs it)"
        if impl == "ours" and truthy("MOONCAKE_REQUIRE_OURS"):
            pytest.fail(msg)
        pytest.skip(msg)
    out_json = tmp_path / "te.json"
    target_log = log_dir / f"te_bench-target-{impl}.log"
    argv = [python, bench, "--duration", "0.2", "--max-ops", "3000", "--sizes",
            ",".join(map(str, SIZES)), "--scenarios", ",".join(SCENARIOS), "--buf-mib", "64",
            "--batch", "32", "--target-log", str(target_log), "--out", str(out_json)]
    env = dict(os.environ)
    if impl == "wheel":
        env.pop("PYTHONPATH", None)  # as for wheel peers: a checkout of ours must not hide the wheel
    rc, _, err = run_bounded(argv, timeout=150, env=env, cwd=str(tmp_path))
    (log_dir / f"te_bench-{impl}.stderr").write_bytes(err)
    tail = err.decode("utf-8", "replace")[-3000:]
    assert rc is not None, f"te_bench.py timed out:\n{tail}"
    assert rc == 0, f"te_bench.py exited {rc}:\n{tail}"
    res = json.loads(out_json.read_text())
    assert res["verify"] == {s: True for s in SCENARIOS}, res["verify"]
    rows = res["rows"]
    assert len(rows) == len(SCENARIOS) * 2 * len(SIZES) * 2, rows
    for r in rows:
        assert r["GBps"] > 0 and r["ops_per_s"] > 0, r
    seen = {(r["scenario"], r["mode"], r["op"], r["block"]) for r in rows}
    assert seen == {(s, m, o, b) for s in SCENARIOS for m in ("single", "batch")
                    for o in ("write", "read") for b in SIZES}
    compiled = glob.glob(os.path.join(res["mooncake_path"], "engine*.so"))
    if impl == "ours":
        assert not compiled, f"te_bench.py imported a compiled mooncake.engine: {compiled}"
    else:
        assert compiled, f"te_bench.py did not import the wheel's engine: {res['mooncake_path']}"
