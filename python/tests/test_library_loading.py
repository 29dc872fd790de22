"""How our package finds libmooncake.so: the bundled copy, then MOONCAKE_LIB, then the system
loader; a missing library or one of another version raises an ImportError that says how to fix
it. Runs the package's Python files from a copy without the bundled library."""
import os
import shutil
import subprocess

import pytest

from conftest import python_of



def package_dir(python):
    out = subprocess.run([python, "-c", "import mooncake, os; print(os.path.dirname(mooncake.__file__))"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def copy_without_library(src, dst):
    pkg = os.path.join(dst, "mooncake")
    os.makedirs(pkg)
    for name in os.listdir(src):
        if name.endswith(".py"):
            shutil.copy(os.path.join(src, name), pkg)
    return dst


def try_import(python, path, env_lib):
    env = {k: v for k, v in os.environ.items() if k != "MOONCAKE_LIB"}
    env["PYTHONPATH"] = path
    if env_lib is not None:
        env["MOONCAKE_LIB"] = env_lib
    env["LD_LIBRARY_PATH"] = ""
    return subprocess.run([python, "-c", "import mooncake.engine as m; print(m._lib.LIB._name)"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=path)


def declared_symbols(pkg):
    src = open(os.path.join(pkg, "_lib.py")).read()
    start = src.index("_PROTOTYPES = {")
    body = src[start:src.index("\n}\n", start)]
    return [line.split('"')[1] for line in body.splitlines()[1:] if line.strip().startswith('"')]


def test_missing_and_mismatched_libraries_raise_import_errors(tmp_path):
    python = python_of("ours")
    src = package_dir(python)
    bundled = [f for f in os.listdir(src) if f.startswith("_libmooncake") and f.endswith(".so")]
    assert bundled, f"no bundled library in {src}"
    path = copy_without_library(src, str(tmp_path / "pkg"))

    # nothing to load: the message says how to fix it
    res = try_import(python, path, "/nonexistent/libmooncake.so")
    assert res.returncode != 0 and "ImportError" in res.stderr, res.stderr
    assert "pip install ./python" in res.stderr and "MOONCAKE_LIB" in res.stderr, res.stderr

    # MOONCAKE_LIB is used when there is no bundled copy
    lib = os.path.join(src, bundled[0])
    res = try_import(python, path, lib)
    assert res.returncode == 0 and res.stdout.strip() == lib, res.stderr

    # a library of another version is refused, naming both versions
    if not shutil.which("cc"):
        pytest.skip("no C compiler for the fake library")
    names = declared_symbols(os.path.join(path, "mooncake"))
    csrc = tmp_path / "fake.c"
    body = ['const char *mooncake_version(void) { return "9.9.9"; }']
    body += [f"void {n}(void) {{}}" for n in names if n != "mooncake_version"]
    csrc.write_text("\n".join(body) + "\n")
    fake = tmp_path / "libfake.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(fake), str(csrc)], check=True, timeout=60)
    res = try_import(python, path, str(fake))
    assert res.returncode != 0 and "ImportError" in res.stderr, res.stderr
    assert "9.9.9" in res.stderr and "0.1.0" in res.stderr, res.stderr
