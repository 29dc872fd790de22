"""How our package finds libmooncake.so: the bundled copy, then MOONCAKE_LIB, then the system
loader; a missing library or one of another version raises an ImportError that says how to fix
it. Runs the package's Python files from a copy without the bundled library. The package's
version is Cargo.toml's, installed or run from the checkout."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import python_of

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))


def cargo_version():
    """Cargo.toml's `[package] version`: the one source of the package's version."""
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        section = re.search(r"^\[package\]\n(.*?)(?=^\[|\Z)", f.read(), re.M | re.S)
    return re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M).group(1)


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
    assert "9.9.9" in res.stderr and cargo_version() in res.stderr, res.stderr


def test_the_version_is_cargo_tomls_installed_and_from_the_checkout():
    version = cargo_version()
    python = python_of("ours")
    code = "import mooncake, mooncake._version as v; print(mooncake.__version__, v.VERSION)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [version, version]
    # python/ on PYTHONPATH (no _version.py there): read from the checkout's Cargo.toml
    assert not os.path.exists(os.path.join(ROOT, "python", "mooncake", "_version.py"))
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    out = subprocess.run([sys.executable, "-c", "import mooncake; print(mooncake.__file__, mooncake.__version__)"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [os.path.join(ROOT, "python", "mooncake", "__init__.py"), version]
