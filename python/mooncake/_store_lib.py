"""The C prototypes of the store (``store_c.h`` and the ``mooncake_store_*`` additions of
``mooncake.h``), declared on the library :mod:`mooncake._lib` loaded.

Declared on first import of :mod:`mooncake.store`, so that an engine-only program never needs
them; a library without them raises :class:`ImportError` with the reason.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char, c_char_p, c_int, c_int64, c_size_t, c_uint64, c_void_p

from ._lib import LIB


class ReplicateConfigC(ctypes.Structure):
    """``struct mooncake_replicate_config`` of ``store_c.h``."""

    _fields_ = [
        ("replica_num", c_size_t),
        ("with_soft_pin", c_int),
        ("with_hard_pin", c_int),
        ("preferred_segments", POINTER(c_char_p)),
        ("preferred_segments_count", c_size_t),
    ]


class StoreRange(ctypes.Structure):
    """``struct mooncake_store_range`` of ``mooncake.h``."""

    _fields_ = [("dst_offset", c_uint64), ("src_offset", c_uint64), ("size", c_uint64)]


class ReplicaDescC(ctypes.Structure):
    """``struct mooncake_store_replica_desc`` of ``mooncake.h``."""

    _fields_ = [("buffer_address", c_uint64), ("size", c_uint64), ("status", c_int),
                ("transport_endpoint", c_char * 256)]
class TaskIdC(ctypes.Structure):
    """``struct mooncake_task_id`` of ``mooncake.h``."""

    _fields_ = [("first", c_uint64), ("second", c_uint64)]


class TaskInfoC(ctypes.Structure):
    """``struct mooncake_task_info`` of ``mooncake.h``."""

    _fields_ = [
        ("id", TaskIdC),
        ("type_", c_int),
        ("status", c_int),
        ("created_at_ms_epoch", c_uint64),
        ("last_updated_at_ms_epoch", c_uint64),
        ("assigned_client", TaskIdC),
    ]


_CFG = POINTER(ReplicateConfigC)
_KEYS = POINTER(c_char_p)
_PTRS = POINTER(c_void_p)
_SIZES = POINTER(c_size_t)
_BUF = c_void_p  # mooncake_store_buffer_t *, opaque

# name: (restype, argtypes)
_PROTOTYPES = {
    "mooncake_store_create": (c_void_p, []),
    "mooncake_store_destroy": (None, [c_void_p]),
    "mooncake_store_setup": (c_int, [c_void_p, c_char_p, c_char_p, c_uint64, c_uint64, c_char_p, c_char_p, c_char_p]),
    "mooncake_store_init_all": (c_int, [c_void_p, c_char_p, c_char_p, c_uint64]),
    "mooncake_store_health_check": (c_int, [c_void_p]),
    "mooncake_store_get_into": (c_int64, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "mooncake_store_batch_get_into": (c_int, [c_void_p, _KEYS, _PTRS, _SIZES, c_size_t, POINTER(c_int64)]),
    "mooncake_store_is_exist": (c_int, [c_void_p, c_char_p]),
    "mooncake_store_batch_is_exist": (c_int, [c_void_p, _KEYS, c_size_t, POINTER(c_int)]),
    "mooncake_store_get_size": (c_int64, [c_void_p, c_char_p]),
    "mooncake_store_get_hostname": (c_int, [c_void_p, c_char_p, c_size_t]),
    "mooncake_store_remove": (c_int, [c_void_p, c_char_p, c_int]),
    "mooncake_store_remove_by_regex": (c_int64, [c_void_p, c_char_p, c_int]),
    "mooncake_store_remove_all": (c_int64, [c_void_p, c_int]),
    "mooncake_store_register_buffer": (c_int, [c_void_p, c_void_p, c_size_t]),
    "mooncake_store_unregister_buffer": (c_int, [c_void_p, c_void_p]),
    # `value` as c_char_p: a `bytes` object is passed by address, without a copy.
    "mooncake_store_put_ex": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t, _CFG, c_int64, c_int]),
    "mooncake_store_put_parts": (c_int, [c_void_p, c_char_p, _PTRS, _SIZES, c_size_t, _CFG, c_int64, c_int]),
    "mooncake_store_put_batch": (c_int, [c_void_p, _KEYS, _PTRS, _SIZES, c_size_t, _CFG, c_int64, c_int,
                                         POINTER(c_int)]),
    "mooncake_store_put_from_ex": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t, _CFG, c_int64, c_int]),
    "mooncake_store_batch_put_from_ex": (c_int, [c_void_p, _KEYS, _PTRS, _SIZES, c_size_t, _CFG, c_int64, c_int,
                                                 POINTER(c_int)]),
    "mooncake_store_get_buffer": (c_int64, [c_void_p, c_char_p, POINTER(_BUF)]),
    "mooncake_store_batch_get_buffer": (c_int, [c_void_p, _KEYS, c_size_t, POINTER(_BUF), POINTER(c_int64)]),
    "mooncake_store_buffer_data": (c_void_p, [_BUF]),
    "mooncake_store_buffer_size": (c_size_t, [_BUF]),
    "mooncake_store_buffer_free": (None, [_BUF]),
    "mooncake_store_get_into_ranges": (c_int, [c_void_p, c_void_p, c_char_p, POINTER(StoreRange), c_size_t,
                                               POINTER(c_int64)]),
    "mooncake_store_close": (c_int, [c_void_p]),
    "mooncake_store_setup_dummy": (c_int, [c_void_p, c_uint64, c_uint64, c_char_p]),
    "mooncake_store_alloc_from_mem_pool": (c_int, [c_void_p, c_uint64, POINTER(c_uint64)]),
    # multi-buffer puts and gets
    "mooncake_store_batch_put_from_multi_buffers": (c_int, [c_void_p, _KEYS, c_size_t, _SIZES, _PTRS, _SIZES, _CFG,
                                                            c_int64, c_int, POINTER(c_int)]),
    "mooncake_store_batch_get_into_multi_buffers": (c_int, [c_void_p, _KEYS, c_size_t, _SIZES, _PTRS, _SIZES, c_int,
                                                            POINTER(c_int64)]),
    # Mooncake's surface beyond put/get (src/ffi/store/surface.rs)
    "mooncake_store_setup_with_engine": (c_int, [c_void_p, c_void_p, c_char_p, c_char_p, c_uint64, c_uint64,
                                                 c_char_p]),
    "mooncake_store_batch_remove": (c_int, [c_void_p, _KEYS, c_size_t, c_int, POINTER(c_int)]),
    "mooncake_store_batch_get_replica_desc": (c_int64, [c_void_p, _KEYS, c_size_t, POINTER(ReplicaDescC), c_size_t,
                                                        POINTER(c_int)]),
    "mooncake_store_put_from_with_metadata": (c_int, [c_void_p, c_char_p, c_void_p, c_void_p, c_size_t, c_size_t,
                                                      _CFG]),
    "mooncake_store_batch_put_session_start": (c_int, [c_void_p, _KEYS, POINTER(c_uint64), c_size_t, _CFG,
                                                       POINTER(c_int)]),
    "mooncake_store_batch_put_session_finish": (c_int, [c_void_p, _KEYS, c_size_t, c_int, POINTER(c_int)]),
    "mooncake_store_batch_get_session_start": (c_int, [c_void_p, _KEYS, c_size_t, POINTER(c_int)]),
    "mooncake_store_batch_get_session_end": (c_int, [c_void_p, _KEYS, c_size_t]),
    "mooncake_store_mount_segment": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, c_char_p, c_char_p,
                                             c_char_p, c_size_t]),
    "mooncake_store_allocate_and_mount_segment": (c_int, [c_void_p, c_uint64, c_char_p, c_char_p, c_char_p,
                                                          c_size_t, POINTER(c_uint64)]),
    "mooncake_store_unmount_segment": (c_int, [c_void_p, _KEYS, c_size_t, c_uint64]),
    "mooncake_store_unmount_and_free_segment": (c_int, [c_void_p, _KEYS, c_size_t, c_uint64]),
    "mooncake_store_create_copy_task": (c_int, [c_void_p, c_char_p, _KEYS, c_size_t, POINTER(TaskIdC)]),
    "mooncake_store_create_move_task": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p, POINTER(TaskIdC)]),
    "mooncake_store_query_task": (c_int, [c_void_p, POINTER(TaskIdC), POINTER(TaskInfoC), c_char_p, c_size_t]),
    "mooncake_store_batch_put_from_multi_buffer_ranges": (c_int, [c_void_p, _KEYS, c_size_t, _SIZES, _PTRS, _SIZES,
                                                                  _SIZES, POINTER(c_int64)]),
    "mooncake_store_batch_get_into_multi_buffer_ranges": (c_int, [c_void_p, _KEYS, c_size_t, _SIZES, _PTRS, _SIZES,
                                                                  _SIZES, POINTER(c_int64)]),
    "mooncake_store_batch_replica_clear": (c_int, [c_void_p, _KEYS, c_size_t, c_char_p, POINTER(c_int)]),
}


def _declare() -> None:
    missing = []
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(LIB, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise ImportError("mooncake.store: the loaded libmooncake.so has no store functions "
                          f"({', '.join(missing)}); rebuild or reinstall the package")


_declare()
