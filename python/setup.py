"""Build of the `libmooncake` Python package: Mooncake's Python API over `libmooncake.so`,
loaded with ctypes (`mooncake/_libmooncake*.so`). The console scripts (`mooncake_master`,
`mooncake_client`, `mooncake-bench`, `transfer_engine_bench`, `mooncake_http_metadata_server`)
run the tools inside that library (`mooncake/cli.py`), so the package has no executables.

Two ways to build (docs/PACKAGING.md):

* From source (`pip install ./python`): the Rust crate one folder up is built with cargo
  (release, `--lib` only, features `etcd` and `redis`, as Mooncake's wheel ships etcd).
  etcd-client's build compiles .proto files, so it needs `protoc` and the well-known .proto
  includes; unless PROTOC and PROTOC_INCLUDE are set, the vendored protoc of
  `tools/protoc-vendored` is used.
* Prebuilt (`MOONCAKE_PREBUILT_LIB=path/to/libmooncake.so`, what `ci/build-wheel.sh` does):
  no cargo; the library is packaged as is, the wheel is tagged
  `py3-none-$MOONCAKE_WHEEL_PLAT` (default `manylinux_2_28_x86_64`), and it requires the
  metadata-only wheels `mooncake-transfer-engine` and `mooncake-transfer-engine-non-cuda` at
  `<MOONCAKE_API_VERSION>+libmooncake.<version>`, which replace Mooncake's own wheels of those
  names (see docs/PACKAGING.md for why).

The version is the crate's (Cargo.toml `version`, the one source): the distribution's, and
`mooncake/_version.py`'s, written into the built package (a checkout's `mooncake/__init__.py`
reads Cargo.toml instead); the Mooncake API level served is
Cargo.toml's `[package.metadata.mooncake] api-version`."""

import os
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
# ci/build-wheel.sh builds from a copy of python/ and names the manifest explicitly.
CARGO_TOML = os.environ.get("MOONCAKE_CARGO_TOML") or os.path.join(ROOT, "Cargo.toml")
FEATURES = ["etcd", "redis"]
PREBUILT = os.environ.get("MOONCAKE_PREBUILT_LIB")
#: The names of Mooncake's own wheels that ours replaces (metadata-only wheels of these names
#: are built by ci/build-wheel.sh and required by the prebuilt wheel).
ALIASES = ["mooncake-transfer-engine", "mooncake-transfer-engine-non-cuda"]


def _cargo_field(section: str, key: str) -> str:
    """`key = "value"` of `[section]` in Cargo.toml (no toml parser before Python 3.11)."""
    with open(CARGO_TOML) as f:
        text = f.read()
    body = re.search(r"^\[" + re.escape(section) + r"\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    value = body and re.search(r"^" + re.escape(key) + r'\s*=\s*"([^"]+)"', body.group(1), re.M)
    if not value:
        raise RuntimeError(f"Cargo.toml has no [{section}] {key}")
    return value.group(1)


VERSION = _cargo_field("package", "version")
API_VERSION = _cargo_field("package.metadata.mooncake", "api-version")


class BinaryDistribution(Distribution):
    """The package carries a native library: a platform wheel, not a pure one."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """`py3-none-<platform>`: the package is pure ctypes, any Python 3 can load the library."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        if PREBUILT:
            plat = os.environ.get("MOONCAKE_WHEEL_PLAT", "manylinux_2_28_x86_64")
        return "py3", "none", plat


class BuildPyWithLib(build_py):
    """Writes `mooncake/_version.py` (the version, from Cargo.toml: `mooncake.__version__` and
    the library version the package requires) and copies the prebuilt library into the package
    as `_libmooncake.so`."""

    def run(self):
        super().run()
        version_py = os.path.join(self.build_lib, "mooncake", "_version.py")
        self.mkpath(os.path.dirname(version_py))
        with open(version_py, "w") as f:
            f.write(f'"""Written by python/setup.py from Cargo.toml."""\n\nVERSION = "{VERSION}"\n')
        if PREBUILT:
            dest = os.path.join(self.build_lib, "mooncake", "_libmooncake.so")
            self.mkpath(os.path.dirname(dest))
            shutil.copyfile(PREBUILT, dest)


def _vendored_protoc() -> None:
    if os.environ.get("PROTOC") and os.environ.get("PROTOC_INCLUDE"):
        return
    out = subprocess.run(
        [
            "cargo", "run", "-q", "--release",
            "--manifest-path", os.path.join(ROOT, "tools", "protoc-vendored", "Cargo.toml"),
            "--target-dir", os.path.join(ROOT, "target", "protoc-vendored"),
        ],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name in ("PROTOC", "PROTOC_INCLUDE") and value:
            os.environ[name] = value


def _rust_extensions():
    if PREBUILT:
        if not os.path.isfile(PREBUILT):
            raise RuntimeError(f"MOONCAKE_PREBUILT_LIB={PREBUILT}: no such file")
        return []
    from setuptools_rust import Binding, RustExtension, Strip

    _vendored_protoc()
    # One extension: setuptools-rust builds it with `cargo rustc --lib`, the library alone (the
    # console scripts run the tools inside it).
    return [RustExtension("mooncake._libmooncake", path=CARGO_TOML, binding=Binding.NoBinding,
                          features=FEATURES, strip=Strip.All)]


setup(
    version=VERSION,
    # Only the prebuilt wheel replaces Mooncake's distributions: its aliases exist only next to
    # it (ci/build-wheel.sh), and a source install has none to depend on.
    install_requires=[f"{name}=={API_VERSION}+libmooncake.{VERSION}" for name in ALIASES] if PREBUILT else [],
    rust_extensions=_rust_extensions(),
    distclass=BinaryDistribution,
    cmdclass={"bdist_wheel": PlatformWheel, "build_py": BuildPyWithLib},
)
