"""Console scripts: thin wrappers that run the executables bundled in this package, as
Mooncake's wheel does (``transfer_engine_bench`` is ``mooncake-bench`` under Mooncake's name;
``mooncake_http_metadata_server`` takes the wheel's ``--host`` and ``--port``)."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _exec(name: str) -> None:
    path = os.path.join(_HERE, name)
    if not os.access(path, os.X_OK):
        sys.exit(f"mooncake: {path} is missing; reinstall the package (pip install ./python)")
    os.execv(path, [path] + sys.argv[1:])


def mooncake_bench() -> None:
    """``mooncake-bench`` / ``transfer_engine_bench``: the flags of Mooncake's benchmark."""
    _exec("mooncake_bench")


def mooncake_http_metadata_server() -> None:
    """``mooncake_http_metadata_server --host H --port P``: Mooncake's HTTP metadata server."""
    _exec("mooncake_http_metadata_server")


def mooncake_master() -> None:
    """``mooncake_master``: the store's master, with Mooncake's flags."""
    _exec("mooncake_master")


def mooncake_client() -> None:
    """``mooncake_client``: the standalone store client that serves dummy clients."""
    _exec("mooncake_client")
