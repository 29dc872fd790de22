"""Helpers of the store tests: where our `mooncake_master` is, and running a script under one
implementation's interpreter (standard library only)."""
import json
import os
from pathlib import Path

import pytest

from harness import interpreter_for, required, run_bounded  # noqa: F401 - run_bounded is re-exported

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SURVEY = HERE / "wheel_store_survey.py"
SNAPSHOT = HERE / "data" / "wheel_store_behaviour.json"


def our_binary(name, env_var):
    """Path of our `name` binary: $env_var, else the same directory as MOONCAKE_TEST_MASTER,
    else the usual cargo target dirs."""
    env = os.environ.get(env_var)
    if env:
        return env if os.access(env, os.X_OK) else None
    dirs = []
    if os.environ.get("MOONCAKE_TEST_MASTER"):
        dirs.append(Path(os.environ["MOONCAKE_TEST_MASTER"]).parent)
    for d in filter(None, [os.environ.get("CARGO_TARGET_DIR"), ROOT / "target" / "features", ROOT / "target"]):
        dirs += [Path(d) / "release", Path(d) / "debug"]
    for d in dirs:
        if os.access(d / name, os.X_OK):
            return str(d / name)
    return None


def our_master():
    return our_binary("mooncake_master", "MOONCAKE_TEST_MASTER")


def python_or_skip(impl):
    path, reason = interpreter_for(impl)
    if path is None:
        if required(impl):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def master_or_skip(name="mooncake_master", env_var="MOONCAKE_TEST_MASTER"):
    """Our master (or another binary), or a skip (a failure with MOONCAKE_REQUIRE_MASTER=1)."""
    m = our_binary(name, env_var)
    if m is None:
        reason = (f"our {name} is not built (cargo build --release --bin {name}, or set "
                  f"{env_var}; MOONCAKE_REQUIRE_MASTER=1 makes this an error)")
        if os.environ.get("MOONCAKE_REQUIRE_MASTER", "") not in ("", "0"):
            pytest.fail(reason)
        pytest.skip(reason)
    return m


def run_python(python, code, timeout=120, env=None, impl="ours"):
    """Runs `code` under `python`; returns its last stdout line parsed as JSON. The wheel's
    interpreter never sees PYTHONPATH (it must import Mooncake's module, not a checkout)."""
    full_env = dict(os.environ)
    if impl == "wheel":
        full_env.pop("PYTHONPATH", None)
    if env:
        full_env.update(env)
    rc, out, err = run_bounded([python, "-c", code], timeout=timeout, env=full_env)
    assert rc == 0, f"{python} failed (rc={rc}):\n{err.decode()[-4000:]}"
    return json.loads(out.decode().strip().splitlines()[-1])


def run_survey(python, master, out_path, timeout=600):
    """The survey's cases under `python` against the master binary `master`."""
    env = dict(os.environ)
    env["MOONCAKE_SURVEY_MASTER"] = master
    rc, out, err = run_bounded([python, str(SURVEY), str(out_path)], timeout=timeout, env=env)
    assert rc == 0, f"survey under {python} failed (rc={rc}):\n{out.decode()[-2000:]}\n{err.decode()[-4000:]}"
    return json.loads(Path(out_path).read_text())
