"""Console scripts: each runs its tool inside the library (``mooncake_cli_main`` of
``libmooncake.so``) with this process's command line, and exits with the tool's status, so the
package ships no executables. ``transfer_engine_bench`` is ``mooncake-bench`` under Mooncake's
name; ``mooncake_http_metadata_server`` takes the wheel's ``--host`` and ``--port``. A tool
names itself by the name it was run as."""

import ctypes
import os
import signal
import sys


def run(tool: str, argv=None) -> int:
    """Runs ``tool`` with ``argv`` (default ``sys.argv``; ``argv[0]`` is the name it was run as)
    and returns its exit status. A server runs until SIGINT or SIGTERM."""
    from . import _lib

    try:
        lib = _lib.load()
    except ImportError as e:
        print(f"{tool}: {e}", file=sys.stderr)
        return 1
    args = [os.fsencode(a) for a in (sys.argv if argv is None else argv)]
    c_argv = (ctypes.c_char_p * len(args))(*args)
    # The tools handle SIGINT and SIGTERM themselves; Python's SIGINT handler would only set a
    # flag that nobody reads while the tool runs.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    return lib.mooncake_cli_main(tool.encode(), len(args), c_argv)


def mooncake_bench() -> None:
    """``mooncake-bench`` / ``transfer_engine_bench``: the flags of Mooncake's benchmark."""
    sys.exit(run("mooncake-bench"))


def mooncake_http_metadata_server() -> None:
    """``mooncake_http_metadata_server --host H --port P``: Mooncake's HTTP metadata server."""
    sys.exit(run("mooncake_http_metadata_server"))


def mooncake_master() -> None:
    """``mooncake_master``: the store's master, with Mooncake's flags."""
    sys.exit(run("mooncake_master"))


def mooncake_client() -> None:
    """``mooncake_client``: the standalone store client that serves dummy clients."""
    sys.exit(run("mooncake_client"))
