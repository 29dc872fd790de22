"""Finding and loading ``libmooncake.so``, and the C prototypes this package calls.

Search order: the copy bundled in this package, then ``MOONCAKE_LIB`` (a path to the library),
then the system loader (``libmooncake.so.0`` / ``libmooncake.so`` on the library path). The
library must report the version this package was built for (``mooncake_version()``); anything
else raises an :class:`ImportError` that says how to fix it.
"""

from __future__ import annotations

import ctypes
import glob
import os
from ctypes import POINTER, c_char_p, c_int, c_int32, c_size_t, c_uint64, c_void_p

from . import __version__

#: The library version this package speaks to (the package's own version: Cargo.toml's).
EXPECTED_VERSION = __version__

_HERE = os.path.dirname(os.path.abspath(__file__))


class TransferRequest(ctypes.Structure):
    """``struct transfer_request`` of ``transfer_engine_c.h``."""

    _fields_ = [
        ("opcode", c_int),
        ("source", c_void_p),
        ("target_id", c_int32),
        ("target_offset", c_uint64),
        ("length", c_uint64),
    ]


class NotifyMsg(ctypes.Structure):
    """``notify_msg_t``; the strings are owned by whoever filled it."""

    _fields_ = [("name", c_char_p), ("msg", c_char_p)]


class TransferStatus(ctypes.Structure):
    """``struct transfer_status``."""

    _fields_ = [("status", c_int), ("transferred_bytes", c_uint64)]


class BufferEntry(ctypes.Structure):
    """``buffer_entry_t``."""

    _fields_ = [("addr", c_void_p), ("length", c_size_t)]


# name: (restype, argtypes)
_PROTOTYPES = {
    "mooncake_version": (c_char_p, []),
    "mooncake_last_error": (c_char_p, []),
    "createTransferEngine": (c_void_p, [c_char_p, c_char_p, c_char_p, c_uint64, c_int]),
    "destroyTransferEngine": (None, [c_void_p]),
    "getLocalIpAndPort": (c_int, [c_void_p, c_char_p, c_size_t]),
    "installTransport": (c_void_p, [c_void_p, c_char_p, c_void_p]),
    "uninstallTransport": (c_int, [c_void_p, c_char_p]),
    "openSegment": (c_int32, [c_void_p, c_char_p]),
    "closeSegment": (c_int, [c_void_p, c_int32]),
    "registerLocalMemory": (c_int, [c_void_p, c_void_p, c_size_t, c_char_p, c_int]),
    "unregisterLocalMemory": (c_int, [c_void_p, c_void_p]),
    "registerLocalMemoryBatch": (c_int, [c_void_p, POINTER(BufferEntry), c_size_t, c_char_p]),
    "unregisterLocalMemoryBatch": (c_int, [c_void_p, POINTER(c_void_p), c_size_t]),
    "allocateBatchID": (c_uint64, [c_void_p, c_size_t]),
    "submitTransfer": (c_int, [c_void_p, c_uint64, POINTER(TransferRequest), c_size_t]),
    "getTransferStatus": (c_int, [c_void_p, c_uint64, c_size_t, POINTER(TransferStatus)]),
    "freeBatchID": (c_int, [c_void_p, c_uint64]),
    "getNotifsFromEngine": (POINTER(NotifyMsg), [c_void_p, POINTER(c_int)]),
    "freeNotifsMsgBuf": (c_int, [POINTER(NotifyMsg), c_int]),
    "warmupEfaSegment": (c_int, [c_void_p, c_char_p]),
    "mooncake_wait_batch": (c_int, [c_void_p, c_uint64, c_uint64]),
    "mooncake_release_batch": (c_int, [c_void_p, c_uint64]),
    "mooncake_transfer_sync": (c_int, [c_void_p, POINTER(TransferRequest), c_size_t, POINTER(NotifyMsg), c_uint64]),
    "mooncake_segment_buffers": (c_int, [c_void_p, c_int32, POINTER(BufferEntry), POINTER(c_size_t)]),
    "mooncake_send_probe": (c_int, [c_void_p, c_char_p]),
    "mooncake_local_topology": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "mooncake_cli_main": (c_int, [c_char_p, c_int, POINTER(c_char_p)]),
}


def _candidates():
    """Where to look, in order, with a label for error messages."""
    for path in sorted(glob.glob(os.path.join(_HERE, "_libmooncake*.so"))):
        yield "bundled", path
    env = os.environ.get("MOONCAKE_LIB")
    if env:
        yield "MOONCAKE_LIB", env
    yield "system", "libmooncake.so.0"
    yield "system", "libmooncake.so"


def _declare(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def load() -> ctypes.CDLL:
    """Loads the first library found that reports :data:`EXPECTED_VERSION`."""
    tried = []
    for origin, path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{origin} {path}: {e}")
            continue
        try:
            _declare(lib)
        except AttributeError as e:
            tried.append(f"{origin} {path}: not a libmooncake of this version ({e})")
            continue
        version = lib.mooncake_version().decode()
        if version != EXPECTED_VERSION:
            tried.append(f"{origin} {path}: version {version}, this package needs {EXPECTED_VERSION}")
            continue
        return lib
    raise ImportError(
        "mooncake: cannot load a matching libmooncake.so. Reinstall the package with "
        "`pip install ./python` (it builds and bundles the library), or point MOONCAKE_LIB at a "
        f"libmooncake.so of version {EXPECTED_VERSION}. Tried:\n  " + "\n  ".join(tried)
    )


LIB = load()


def last_error() -> str:
    """``mooncake_last_error()`` of the calling thread."""
    return (LIB.mooncake_last_error() or b"").decode(errors="replace")
