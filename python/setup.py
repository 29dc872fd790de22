"""Build of the `libmooncake` Python package: the Rust crate one folder up is built with cargo
(release, with the `etcd` and `redis` metadata backends, as Mooncake's wheel ships etcd) and
bundled as `mooncake/_libmooncake*.so` (the library ctypes loads) and the executables behind
the console scripts (`mooncake/mooncake_bench`, `mooncake/mooncake_http_metadata_server`,
`mooncake/mooncake_master`, `mooncake/mooncake_client`; store_bench.py finds the master there).

etcd-client's build compiles .proto files, so it needs `protoc` and the well-known .proto
includes. Unless PROTOC and PROTOC_INCLUDE are set, the vendored protoc of
`tools/protoc-vendored` (the `protoc-bin-vendored` crate) is used: `pip install` needs no
system package."""

import os
import subprocess

from setuptools import setup
from setuptools_rust import Binding, RustExtension

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
CARGO_TOML = os.path.join(ROOT, "Cargo.toml")
FEATURES = ["etcd", "redis"]


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


_vendored_protoc()


def _rdma_buildable() -> bool:
    """The rdma feature (on by default) needs libibverbs' and librdmacm's headers (and libclang)
    at build time; without them, or with MOONCAKE_RDMA=0, the library is built without it."""
    if os.environ.get("MOONCAKE_RDMA") == "0":
        return False
    try:
        return subprocess.run(["pkg-config", "--exists", "libibverbs", "librdmacm"]).returncode == 0
    except FileNotFoundError:
        return False


# setuptools-rust passes `args` to cargo: without the headers, build without default features.
NO_RDMA_ARGS = [] if _rdma_buildable() else ["--no-default-features"]
if NO_RDMA_ARGS:
    print("libmooncake: libibverbs/librdmacm headers not found; building without RDMA")

setup(
    rust_extensions=[
        RustExtension("mooncake._libmooncake", path=CARGO_TOML, binding=Binding.NoBinding, features=FEATURES,
                      args=NO_RDMA_ARGS),
    ]
    + [
        RustExtension(
            {script: f"mooncake.{binary}"},
            path=CARGO_TOML,
            binding=Binding.Exec,
            args=["--bin", script] + NO_RDMA_ARGS,
            features=FEATURES,
        )
        for script, binary in [
            ("mooncake-bench", "mooncake_bench"),
            ("mooncake_master", "mooncake_master"),
            ("mooncake_client", "mooncake_client"),
            ("mooncake_http_metadata_server", "mooncake_http_metadata_server"),
        ]
    ],
)
