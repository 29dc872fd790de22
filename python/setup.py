"""Build of the `libmooncake` Python package: the Rust crate one folder up is built with cargo
(release) and bundled as `mooncake/_libmooncake*.so` (the library ctypes loads) and
`mooncake/mooncake_bench` (the executable behind the console scripts)."""

import os

from setuptools import setup
from setuptools_rust import Binding, RustExtension

CARGO_TOML = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "Cargo.toml")

setup(
    rust_extensions=[
        RustExtension("mooncake._libmooncake", path=CARGO_TOML, binding=Binding.NoBinding),
        RustExtension(
            {"mooncake-bench": "mooncake.mooncake_bench"},
            path=CARGO_TOML,
            binding=Binding.Exec,
            args=["--bin", "mooncake-bench"],
        ),
    ],
)
