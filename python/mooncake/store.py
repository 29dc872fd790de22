"""``mooncake.store``: Mooncake's distributed object store Python API, over ``libmooncake.so``.

A drop-in for the pybind module of Mooncake's wheel: :class:`MooncakeDistributedStore`,
:class:`ReplicateConfig` and :class:`SoftPinAction` with the same method names, argument
names, defaults and return values, so that connector code (vLLM, SGLang, LMCache) runs
unchanged. Methods return Mooncake's integers (0 success; negative: Mooncake's store
``ErrorCode``, e.g. -704 object not found, -706 object has a lease, -600 invalid parameters)
and log the reason of a failure on the ``mooncake`` logger; they raise only where the wheel
raises (a wrong argument type is a ``TypeError``).

Each method is one call into the library (``store_c.h`` and the ``mooncake_store_*``
additions of ``mooncake.h``), which releases the GIL while it waits on the network.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import logging
import re
import struct
import threading
from ctypes import byref, c_char_p, c_int, c_int64, c_size_t, c_uint64, c_void_p
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Type, overload

from . import _lib
from ._lib import LIB
from ._store_lib import ReplicaDescC, ReplicateConfigC, StoreRange, TaskIdC, TaskInfoC
from .buffer_pool import BufferLease, BufferPool, RegisteredBufferLease, RegisteredBufferPool  # noqa: F401 - the wheel has them here

log = logging.getLogger("mooncake")

__all__ = [
    "MooncakeDistributedStore",
    "ReplicateConfig",
    "SoftPinAction",
    "BufferHandle",
    "BufferPool",
    "BufferLease",
    "RegisteredBufferPool",
    "RegisteredBufferLease",
    "parse_size",
    "ObjectDataType",
    "ReplicaStatus",
    "ReplicaDescriptor",
    "MemoryDescriptor",
    "DiskDescriptor",
    "Descriptor",
]

INVALID_PARAMS = -600
NOT_SUPPORTED = -1012
_U64_MAX = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1
MIB = 1 << 20
DEFAULT_GLOBAL_SEGMENT_SIZE = 16 * MIB
DEFAULT_LOCAL_BUFFER_SIZE = 16 * MIB
DEFAULT_MASTER_SERVER_ADDR = "127.0.0.1:50051"
_TENSOR_METHODS = ("put_tensor", "get_tensor", "batch_put_tensor", "batch_get_tensor")


# ---- sizes -----------------------------------------------------------------------------------

_SIZE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)$")
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "T": 1 << 40, "TB": 1 << 40}


def parse_size(value: Any) -> Optional[int]:
    """A byte count from an ``int`` or a human-readable string, as Mooncake's
    ``string_to_byte_size`` reads it: a number (fractions allowed), optional spaces and a unit
    ``B``, ``K``/``KB``, ``M``/``MB``, ``G``/``GB``, ``T``/``TB`` (powers of 1024, any case);
    ``"infinite"`` is 2**64-1. ``None`` for anything else (``"50%"``, ``"1 KiB"``, negatives)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _U64_MAX else None
    if not isinstance(value, str):
        return None
    s = value.strip()
    if s == "infinite":
        return _U64_MAX
    m = _SIZE.match(s)
    if not m:
        return None
    unit = _UNITS.get(m.group(2).upper())
    if unit is None:
        return None
    return int(float(m.group(1)) * unit)


# ---- config ----------------------------------------------------------------------------------

class SoftPinAction(enum.IntEnum):
    """What a put does to the object's soft pin: keep what it had (``PRESERVE``, a new object
    has none), pin it (``ENABLE``), unpin it (``DISABLE``)."""

    PRESERVE = 0
    ENABLE = 1
    DISABLE = 2

    def __str__(self) -> str:  # as pybind prints enum members
        return f"SoftPinAction.{self.name}"


# ---- Mooncake's enums and replica descriptors ------------------------------------------------

class ObjectDataType(enum.IntEnum):
    """What an object holds (Mooncake's ``ObjectDataType``), set as ``ReplicateConfig.data_type``.
    This build keeps it on the config only: the master does not record it."""

    UNKNOWN = 0
    KVCACHE = 1
    TENSOR = 2
    WEIGHT = 3
    SAMPLE = 4
    ACTIVATION = 5
    GRADIENT = 6
    OPTIMIZER_STATE = 7
    METADATA = 8
    GENERAL = 9

    def __str__(self) -> str:  # as pybind prints enum members
        return f"ObjectDataType.{self.name}"


class ReplicaStatus(enum.IntEnum):
    """A replica's state (Mooncake's ``ReplicaStatus``); readers are only shown ``COMPLETE``."""

    UNDEFINED = 0
    INITIALIZED = 1
    PROCESSING = 2
    COMPLETE = 3
    REMOVED = 4
    FAILED = 5

    def __str__(self) -> str:
        return f"ReplicaStatus.{self.name}"


# The module-level names the wheel exports from these enums (its ``FAILED`` and ``PROCESSING``
# are ``TaskStatus``'s, which belong with the copy/move tasks).
UNDEFINED = ReplicaStatus.UNDEFINED
INITIALIZED = ReplicaStatus.INITIALIZED
COMPLETE = ReplicaStatus.COMPLETE
REMOVED = ReplicaStatus.REMOVED
UNKNOWN = ObjectDataType.UNKNOWN
KVCACHE = ObjectDataType.KVCACHE
TENSOR = ObjectDataType.TENSOR
WEIGHT = ObjectDataType.WEIGHT
SAMPLE = ObjectDataType.SAMPLE
ACTIVATION = ObjectDataType.ACTIVATION
GRADIENT = ObjectDataType.GRADIENT
OPTIMIZER_STATE = ObjectDataType.OPTIMIZER_STATE
METADATA = ObjectDataType.METADATA
GENERAL = ObjectDataType.GENERAL


class _NoConstructor:
    """Instances come from the store only, as the wheel's (which has no constructor)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"mooncake.store.{type(self).__name__}: No constructor defined!")

    @classmethod
    def _make(cls, **fields: Any) -> Any:
        obj = object.__new__(cls)
        obj.__dict__.update(fields)
        return obj


class Descriptor(_NoConstructor):
    """Where a memory replica lives: ``size`` bytes at ``buffer_address`` in the process whose
    Transfer Engine segment is ``transport_endpoint``."""

    buffer_address: int
    size: int
    transport_endpoint: str

    def __repr__(self) -> str:
        return (f"Descriptor(buffer_address={self.buffer_address:#x}, size={self.size}, "
                f"transport_endpoint={self.transport_endpoint!r})")


class MemoryDescriptor(_NoConstructor):
    """A memory replica: its :class:`Descriptor` as ``buffer_descriptor``."""

    buffer_descriptor: Descriptor


class DiskDescriptor(_NoConstructor):
    """A disk replica (``file_path``, ``object_size``); this build has no disk tier, so the
    store never returns one."""

    file_path: str
    object_size: int


class ReplicaDescriptor(_NoConstructor):
    """One replica of an object, as ``get_replica_desc`` returns it."""

    status: ReplicaStatus
    _memory: Optional[MemoryDescriptor]

    def is_memory_replica(self) -> bool:
        return self._memory is not None

    def is_disk_replica(self) -> bool:
        return False

    def is_local_disk_replica(self) -> bool:
        return False

    def get_memory_descriptor(self) -> MemoryDescriptor:
        if self._memory is None:
            raise RuntimeError("Replica is not a memory replica")
        return self._memory

    def get_disk_descriptor(self) -> DiskDescriptor:
        raise RuntimeError("Replica is not a disk replica")

    def __repr__(self) -> str:
        return f"ReplicaDescriptor(status={self.status}, memory={self._memory and self._memory.buffer_descriptor})"


@overload
def _u64(value: Any, what: str, allow_none: Literal[False] = False) -> int: ...
@overload
def _u64(value: Any, what: str, allow_none: bool) -> Optional[int]: ...


def _u64(value: Any, what: str, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, int) and 0 <= value <= _U64_MAX:
        return int(value)
    raise TypeError(f"incompatible function arguments: {what} must be an unsigned 64-bit int"
                    f"{' or None' if allow_none else ''}, not {value!r}")


class ReplicateConfig:
    """Where and how many replicas a put makes (Mooncake's ``ReplicateConfig``).

    ``replica_num`` (1), ``with_hard_pin`` (False: never evicted when True),
    ``soft_pin_action`` (:class:`SoftPinAction`, ``PRESERVE``), ``soft_pin_ttl_ms`` (None, or
    the milliseconds a soft pin lasts; needs ``ENABLE``), ``preferred_segment`` ("") and
    ``preferred_segments`` ([]): segment names (a client's ``get_hostname()``) tried first;
    ``group_ids`` (None). Integers outside ``uint64`` raise ``TypeError``, as pybind does."""

    def __init__(self) -> None:
        self._replica_num = 1
        self._soft_pin_ttl_ms: Optional[int] = None
        self.with_hard_pin = False
        self.soft_pin_action = SoftPinAction.PRESERVE
        self.preferred_segment = ""
        self.preferred_segments: List[str] = []
        self.group_ids = None
        # accepted for compatibility; this build has no NVMe-oF / DFS replicas
        self.nof_replica_num = 0
        self.dfs_replica_num = 0
        self.preferred_nof_segments: List[str] = []
        self.prefer_alloc_in_same_node = False
        self.data_type = ObjectDataType.UNKNOWN

    @property
    def replica_num(self) -> int:
        return self._replica_num

    @replica_num.setter
    def replica_num(self, value: int) -> None:
        self._replica_num = _u64(value, "replica_num")

    @property
    def soft_pin_ttl_ms(self) -> Optional[int]:
        return self._soft_pin_ttl_ms

    @soft_pin_ttl_ms.setter
    def soft_pin_ttl_ms(self, value: Optional[int]) -> None:
        self._soft_pin_ttl_ms = _u64(value, "soft_pin_ttl_ms", allow_none=True)

    def __str__(self) -> str:
        ttl = "default" if self._soft_pin_ttl_ms is None else str(self._soft_pin_ttl_ms)
        action = SoftPinAction(self.soft_pin_action).name
        return ("ReplicateConfig: { "
                f"replica_num: {self._replica_num}, nof_replica_num: {self.nof_replica_num}, "
                f"dfs_replica_num: {self.dfs_replica_num}, soft_pin_action: {action}, "
                f"soft_pin_ttl_ms: {ttl}, with_hard_pin: {int(bool(self.with_hard_pin))}, "
                f"preferred_segments: [{', '.join(self._segments())}], "
                f"preferred_nof_segments: [{', '.join(self.preferred_nof_segments)}], "
                f"prefer_alloc_in_same_node: {int(bool(self.prefer_alloc_in_same_node))}, "
                f"data_type: {ObjectDataType(self.data_type).name} }}")

    __repr__ = __str__

    def _segments(self) -> List[str]:
        segs = list(self.preferred_segments)
        if self.preferred_segment and self.preferred_segment not in segs:
            segs.insert(0, self.preferred_segment)
        return segs


class _CConfig:
    """A :class:`ReplicateConfig` as the C call takes it (kept alive for the call)."""

    _default: Optional["_CConfig"] = None

    @classmethod
    def of(cls, config: Optional[ReplicateConfig]) -> "_CConfig":
        """The C form of ``config``; the default one (``None``) is built once and reused, since
        most calls pass none and the C side only reads it."""
        if config is None:
            if cls._default is None:
                cls._default = cls(None)
            return cls._default
        return cls(config)

    def __init__(self, config: Optional[ReplicateConfig]) -> None:
        if config is None:
            config = ReplicateConfig()
        if not isinstance(config, ReplicateConfig):
            raise TypeError(f"incompatible function arguments: config must be a ReplicateConfig, not {config!r}")
        segs = [s.encode() for s in config._segments()]
        self._names = (c_char_p * max(1, len(segs)))(*segs)
        self.struct = ReplicateConfigC(
            replica_num=config.replica_num,
            with_soft_pin=int(SoftPinAction(config.soft_pin_action) == SoftPinAction.ENABLE),
            with_hard_pin=int(bool(config.with_hard_pin)),
            preferred_segments=self._names,
            preferred_segments_count=len(segs),
        )
        ttl = config.soft_pin_ttl_ms
        self.ttl = -1 if ttl is None else min(ttl, _I64_MAX)
        self.ref = byref(self.struct)


# ---- buffers ---------------------------------------------------------------------------------

class BufferHandle:
    """A value read by :meth:`MooncakeDistributedStore.get_buffer`: the bytes stay in library
    memory (freed with the object). ``size()`` / ``len()``, ``ptr()`` (address), the buffer
    protocol (``memoryview(buf)``, ``bytes(buf)``, ``numpy.frombuffer(buf, ...)``)."""

    __slots__ = ()

    def size(self) -> int:
        return len(self)  # type: ignore[arg-type]  # a ctypes array (_buffer_type)

    def ptr(self) -> int:
        return ctypes.addressof(self)  # type: ignore[arg-type]  # a ctypes array (_buffer_type)

    def __bytes__(self) -> bytes:
        return ctypes.string_at(ctypes.addressof(self), len(self))  # type: ignore[arg-type]  # a ctypes array (_buffer_type)

    def __repr__(self) -> str:
        return f"<mooncake.store.BufferHandle size={len(self)}>"  # type: ignore[arg-type]  # a ctypes array (_buffer_type)

    def __del__(self) -> None:
        handle = self.__dict__.get("_c_buffer")
        if handle:
            self.__dict__["_c_buffer"] = None
            LIB.mooncake_store_buffer_free(handle)


@functools.lru_cache(maxsize=1024)
def _buffer_type(size: int) -> Type[Any]:
    # A ctypes array over the library's memory gives the buffer protocol on every Python version.
    return type("BufferHandle", (ctypes.c_char * size, BufferHandle), {})


def _wrap_buffer(handle: int) -> BufferHandle:
    size = LIB.mooncake_store_buffer_size(handle)
    data = LIB.mooncake_store_buffer_data(handle)
    buf = _buffer_type(size).from_address(data)
    buf.__dict__["_c_buffer"] = handle
    return buf


class _Bytes:
    """A bytes-like value as (address, length), kept alive while the object lives."""

    __slots__ = ("addr", "size", "_keep")
    addr: Optional[int]
    size: int
    _keep: Any

    def __init__(self, value: Any) -> None:
        if isinstance(value, str) or value is None:
            raise TypeError("incompatible function arguments: value must be a bytes-like Buffer, "
                            f"not {type(value).__name__}")
        if isinstance(value, bytes):
            self._keep = value
            self.size = len(value)
            self.addr = ctypes.cast(c_char_p(value), c_void_p).value if value else None
            return
        mv = memoryview(value)
        if not mv.c_contiguous:
            mv = memoryview(mv.tobytes())
        mv = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        self.size = mv.nbytes
        if self.size == 0:
            self.addr, self._keep = None, mv
        elif mv.readonly:
            b = mv.tobytes()
            self._keep, self.addr = b, ctypes.cast(c_char_p(b), c_void_p).value
        else:
            arr = (ctypes.c_char * self.size).from_buffer(mv)
            self._keep, self.addr = (mv, arr), ctypes.addressof(arr)


def _key(key: Any, what: str = "key") -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"incompatible function arguments: {what} must be str, not {type(key).__name__}")
    return key.encode()


def _keys(keys: Sequence[str]):
    if isinstance(keys, (str, bytes)) or not hasattr(keys, "__len__"):
        raise TypeError(f"incompatible function arguments: keys must be a list of str, not {keys!r}")
    encoded = [_key(k, "keys[i]") for k in keys]
    return (c_char_p * max(1, len(encoded)))(*encoded), len(encoded)


def _uints(values: Sequence[int], what: str) -> List[int]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"incompatible function arguments: {what} must be a list of ints, not {values!r}")
    return [_u64(v, what) for v in values]


def _failed(what: str, rc: int) -> int:
    if rc < 0:
        log.debug("%s: %d (%s)", what, rc, _lib.last_error())
    return rc


class TorchUnavailableError(ImportError):
    """A tensor helper was accessed where PyTorch is not importable (the helpers are absent)."""


# ---- the store -------------------------------------------------------------------------------

class MooncakeDistributedStore:
    """A store client (Mooncake's ``MooncakeDistributedStore``): ``setup`` (or ``init_all``,
    ``setup_dummy``) connects it to ``mooncake_master``; every method may be called from any
    thread at once."""

    def __init__(self) -> None:
        self._handle = LIB.mooncake_store_create()
        if not self._handle:
            raise MemoryError(f"mooncake_store_create failed: {_lib.last_error()}")
        self._lock = threading.Lock()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:
            self._handle = None
            LIB.mooncake_store_destroy(handle)

    def __getattr__(self, name: str) -> Any:
        if name in _TENSOR_METHODS:
            raise TorchUnavailableError(f"MooncakeDistributedStore.{name} needs PyTorch, which is not importable "
                                    "here: pip install torch")
        raise AttributeError(f"'MooncakeDistributedStore' object has no attribute {name!r}")

    # ---- lifecycle ----

    def setup(self, local_hostname: Any, metadata_server: Optional[str] = None,
              global_segment_size: int = DEFAULT_GLOBAL_SEGMENT_SIZE,
              local_buffer_size: int = DEFAULT_LOCAL_BUFFER_SIZE, protocol: str = "tcp",
              rdma_devices: str = "", master_server_addr: str = DEFAULT_MASTER_SERVER_ADDR,
              engine: Any = None, enable_ssd_offload: bool = False, ssd_offload_path: str = "",
              tenant_id: str = "default", enable_client_http_server: bool = False,
              client_http_port: int = 9300) -> int:
        """Connects to the master. Also ``setup(config: dict)``, with the same keys (sizes as ints
        or strings such as ``"16MB"``, ``"4 GB"``). ``local_hostname`` without a port gets one
        from 12300-14300; ``get_hostname()`` returns the result. 0 or a negative code."""
        if isinstance(local_hostname, dict) and metadata_server is None:
            return self._setup_dict(local_hostname)
        if enable_ssd_offload or enable_client_http_server:
            log.warning("setup: SSD offload and the client HTTP server are not available in this build; ignored")
        host = _key(local_hostname, "local_hostname")
        meta = _key(metadata_server, "metadata_server")
        gss = _u64(global_segment_size, "global_segment_size")
        lbs = _u64(local_buffer_size, "local_buffer_size")
        if engine is not None:
            return self._setup_with_engine(engine, host, meta, gss, lbs, _key(master_server_addr, "master_server_addr"))
        rc = LIB.mooncake_store_setup(self._handle, host, meta, gss, lbs, _key(protocol, "protocol"),
                                      _key(rdma_devices, "rdma_devices"),
                                      _key(master_server_addr, "master_server_addr"))
        if rc != 0:
            log.debug("setup failed: %d (%s)", rc, _lib.last_error())
        return rc

    def _setup_dict(self, config: Dict[str, Any]) -> int:
        def text(name: str, default: str = "") -> str:
            v = config.get(name, default)
            return v if isinstance(v, str) else str(v)

        host, meta = text("local_hostname"), text("metadata_server")
        if not host or not meta:
            log.error("setup: local_hostname and metadata_server are required")
            return INVALID_PARAMS
        sizes: Dict[str, int] = {}
        for name, default in (("global_segment_size", DEFAULT_GLOBAL_SEGMENT_SIZE),
                              ("local_buffer_size", DEFAULT_LOCAL_BUFFER_SIZE)):
            size = parse_size(config.get(name, default))
            if size is None:
                log.error("setup: invalid size for %s: %r", name, config.get(name))
                return INVALID_PARAMS
            sizes[name] = size
        return self.setup(host, meta, sizes["global_segment_size"], sizes["local_buffer_size"],
                          text("protocol", "tcp") or "tcp", text("rdma_devices"),
                          text("master_server_addr", DEFAULT_MASTER_SERVER_ADDR) or DEFAULT_MASTER_SERVER_ADDR)

    def init_all(self, protocol: str, device_name: str, mount_segment_size: int) -> int:
        """Mooncake's ``initAll``: set up with its fixed addresses (master 127.0.0.1:50051,
        etcd metadata 127.0.0.1:2379) and a segment of ``mount_segment_size`` bytes."""
        return _failed("init_all", LIB.mooncake_store_init_all(
            self._handle, _key(protocol, "protocol"), _key(device_name, "device_name"),
            _u64(mount_segment_size, "mount_segment_size")))

    def setup_dummy(self, mem_pool_size: int, local_buffer_size: int, server_address: str) -> int:
        """Attaches to the ``mooncake_client`` at ``server_address`` on this host, which owns
        the segment and the engine; the same API then works through it."""
        rc = LIB.mooncake_store_setup_dummy(self._handle, _u64(mem_pool_size, "mem_pool_size"),
                                            _u64(local_buffer_size, "local_buffer_size"),
                                            _key(server_address, "server_address"))
        if rc != 0:
            log.debug("setup_dummy failed: %d (%s)", rc, _lib.last_error())
        return rc

    def alloc_from_mem_pool(self, size: int) -> int:
        """Dummy clients: memory shared with the ``mooncake_client`` (address, 0 on failure)."""
        addr = c_uint64(0)
        rc = LIB.mooncake_store_alloc_from_mem_pool(self._handle, _u64(size, "size"), byref(addr))
        _failed("alloc_from_mem_pool", rc)
        return addr.value if rc == 0 else 0

    def health_check(self) -> int:
        """0 healthy, 1 not set up or closed, 2 master unreachable."""
        return LIB.mooncake_store_health_check(self._handle)

    def close(self) -> int:
        """Withdraws the segment and disconnects. 0, as the wheel's: a master that cannot be
        told (it is gone) is only logged, the client is closed all the same."""
        rc = LIB.mooncake_store_close(self._handle)
        if rc != 0:
            log.debug("close: %d (%s); the client is closed", rc, _lib.last_error())
        return 0

    def get_hostname(self) -> str:
        buf = ctypes.create_string_buffer(512)
        if LIB.mooncake_store_get_hostname(self._handle, buf, len(buf)) != 0:
            log.debug("get_hostname: %s", _lib.last_error())
            return ""
        return buf.value.decode()

    # ---- put ----

    def _put_parts(self, what: str, key: str, parts: Sequence[Any], config: Optional[ReplicateConfig],
                   upsert: bool) -> int:
        k = _key(key)
        cfg = _CConfig.of(config)
        if len(parts) == 1 and type(parts[0]) is bytes:
            # The common case, one `bytes` value: passed by address, no arrays to build.
            v = parts[0]
            return _failed(what, LIB.mooncake_store_put_ex(self._handle, k, v, len(v), cfg.ref, cfg.ttl,
                                                           int(upsert)))
        values = [_Bytes(p) for p in parts]
        ptrs = (c_void_p * max(1, len(values)))(*[v.addr for v in values])
        sizes = (c_size_t * max(1, len(values)))(*[v.size for v in values])
        return _failed(what, LIB.mooncake_store_put_parts(self._handle, k, ptrs, sizes, len(values), cfg.ref,
                                                          cfg.ttl, int(upsert)))

    def put(self, key: str, value: Any, config: Optional[ReplicateConfig] = None) -> int:
        """Stores ``value`` (bytes-like) under ``key``; an existing key keeps its value (0)."""
        return self._put_parts("put", key, [value], config, False)

    def upsert(self, key: str, value: Any, config: Optional[ReplicateConfig] = None) -> int:
        """``put`` that replaces an existing object."""
        return self._put_parts("upsert", key, [value], config, True)

    def put_parts(self, key: str, *args: Any, config: Optional[ReplicateConfig] = None) -> int:
        """Stores the concatenation of the bytes-like ``args`` as one value."""
        return self._put_parts("put_parts", key, args, config, False)

    def upsert_parts(self, key: str, *args: Any, config: Optional[ReplicateConfig] = None) -> int:
        return self._put_parts("upsert_parts", key, args, config, True)

    def _put_batch(self, what: str, keys: Sequence[str], values: Sequence[Any],
                   config: Optional[ReplicateConfig], upsert: bool) -> int:
        karr, n = _keys(keys)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise TypeError(f"incompatible function arguments: values must be a list, not {values!r}")
        if len(values) != n:
            log.error("%s: %d keys but %d values", what, n, len(values))
            return INVALID_PARAMS
        cfg = _CConfig.of(config)
        vals = [_Bytes(v) for v in values]
        ptrs = (c_void_p * max(1, n))(*[v.addr for v in vals])
        sizes = (c_size_t * max(1, n))(*[v.size for v in vals])
        results = (c_int * max(1, n))()
        rc = LIB.mooncake_store_put_batch(self._handle, karr, ptrs, sizes, n, cfg.ref, cfg.ttl, int(upsert), results)
        if rc != 0:
            return _failed(what, rc)
        return next((r for r in results[:n] if r != 0), 0)

    def put_batch(self, keys: List[str], values: List[Any], config: Optional[ReplicateConfig] = None) -> int:
        """Stores ``values[i]`` under ``keys[i]``; 0, or the first key's negative code."""
        return self._put_batch("put_batch", keys, values, config, False)

    def upsert_batch(self, keys: List[str], values: List[Any], config: Optional[ReplicateConfig] = None) -> int:
        return self._put_batch("upsert_batch", keys, values, config, True)

    def put_from(self, key: str, buffer_ptr: int, size: int, config: Optional[ReplicateConfig] = None) -> int:
        """Zero copy: stores ``size`` bytes at ``buffer_ptr`` (registered with ``register_buffer``
        or not, as the wheel's TCP path takes it)."""
        return self._put_from("put_from", key, buffer_ptr, size, config, False)

    def upsert_from(self, key: str, buffer_ptr: int, size: int, config: Optional[ReplicateConfig] = None) -> int:
        return self._put_from("upsert_from", key, buffer_ptr, size, config, True)

    def _put_from(self, what: str, key: str, buffer_ptr: int, size: int, config: Optional[ReplicateConfig],
                  upsert: bool) -> int:
        k = _key(key)
        addr, n = _u64(buffer_ptr, "buffer_ptr"), _u64(size, "size")
        cfg = _CConfig.of(config)
        return _failed(what, LIB.mooncake_store_put_from_ex(self._handle, k, addr or None, n, cfg.ref, cfg.ttl,
                                                            int(upsert)))

    def batch_put_from(self, keys: List[str], buffer_ptrs: List[int], sizes: List[int],
                       config: Optional[ReplicateConfig] = None) -> List[int]:
        """Zero copy for many keys: one code per key."""
        return self._batch_put_from("batch_put_from", keys, buffer_ptrs, sizes, config, False)

    def batch_upsert_from(self, keys: List[str], buffer_ptrs: List[int], sizes: List[int],
                          config: Optional[ReplicateConfig] = None) -> List[int]:
        return self._batch_put_from("batch_upsert_from", keys, buffer_ptrs, sizes, config, True)

    def _batch_put_from(self, what, keys, buffer_ptrs, sizes, config, upsert) -> List[int]:
        karr, n = _keys(keys)
        addrs, lens = _uints(buffer_ptrs, "buffer_ptrs"), _uints(sizes, "sizes")
        if len(addrs) != n or len(lens) != n:
            log.error("%s: %d keys, %d buffers, %d sizes", what, n, len(addrs), len(lens))
            return [INVALID_PARAMS] * n
        cfg = _CConfig.of(config)
        results = (c_int * max(1, n))()
        rc = LIB.mooncake_store_batch_put_from_ex(self._handle, karr, (c_void_p * max(1, n))(*addrs),
                                                  (c_size_t * max(1, n))(*lens), n, cfg.ref, cfg.ttl, int(upsert),
                                                  results)
        if rc != 0:
            return [_failed(what, rc)] * n
        return list(results[:n])

    # ---- get ----

    def get(self, key: str) -> bytes:
        """The value of ``key``; ``b""`` when it is missing or cannot be read."""
        handle = c_void_p()
        n = LIB.mooncake_store_get_buffer(self._handle, _key(key), byref(handle))
        if n < 0:
            _failed("get", n)
            return b""
        try:
            return ctypes.string_at(LIB.mooncake_store_buffer_data(handle), n) if n else b""
        finally:
            LIB.mooncake_store_buffer_free(handle)

    def get_buffer(self, key: str) -> Optional[BufferHandle]:
        """The value of ``key`` in library memory (:class:`BufferHandle`), or None."""
        handle = c_void_p()
        n = LIB.mooncake_store_get_buffer(self._handle, _key(key), byref(handle))
        if n < 0:
            _failed("get_buffer", n)
            return None
        return _wrap_buffer(handle.value)  # type: ignore[arg-type]  # set when n >= 0

    def batch_get_buffer(self, keys: List[str]) -> List[Optional[BufferHandle]]:
        """One :class:`BufferHandle` per key (None for a miss)."""
        karr, n = _keys(keys)
        handles = (c_void_p * max(1, n))()
        lens = (c_int64 * max(1, n))()
        rc = LIB.mooncake_store_batch_get_buffer(self._handle, karr, n, handles, lens)
        if rc != 0:
            _failed("batch_get_buffer", rc)
            return [None] * n
        return [_wrap_buffer(handles[i]) if lens[i] >= 0 and handles[i] else None for i in range(n)]

    def get_batch(self, keys: List[str]) -> List[bytes]:
        """The values of ``keys`` (``b""`` for a miss)."""
        if len(keys) == 0:
            return [b""]  # what the wheel returns for an empty list
        return [b"" if b is None else bytes(b) for b in self.batch_get_buffer(keys)]

    def get_into(self, key: str, buffer_ptr: int, size: int) -> int:
        """Reads ``key`` into ``size`` bytes at ``buffer_ptr``: bytes read, or a negative code
        (-704 missing, -600 buffer too small)."""
        addr, n = _u64(buffer_ptr, "buffer_ptr"), _u64(size, "size")
        return _failed("get_into", LIB.mooncake_store_get_into(self._handle, _key(key), addr or None, n))

    def batch_get_into(self, keys: List[str], buffer_ptrs: List[int], sizes: List[int]) -> List[int]:
        """``get_into`` for many keys: bytes read or a negative code per key."""
        karr, n = _keys(keys)
        addrs, lens = _uints(buffer_ptrs, "buffer_ptrs"), _uints(sizes, "sizes")
        if len(addrs) != n or len(lens) != n:
            log.error("batch_get_into: %d keys, %d buffers, %d sizes", n, len(addrs), len(lens))
            return [INVALID_PARAMS] * n
        results = (c_int64 * max(1, n))()
        rc = LIB.mooncake_store_batch_get_into(self._handle, karr, (c_void_p * max(1, n))(*addrs),
                                               (c_size_t * max(1, n))(*lens), n, results)
        if rc != 0:
            return [_failed("batch_get_into", rc)] * n
        return list(results[:n])

    def get_into_ranges(self, buffer_ptrs: List[int], all_keys: List[List[str]],
                        all_dst_offsets: List[List[List[int]]], all_src_offsets: List[List[List[int]]],
                        all_sizes: List[List[List[int]]]) -> List[List[List[int]]]:
        """Byte ranges of objects into buffers: for buffer i, key ``all_keys[i][j]``, range k
        moves ``all_sizes[i][j][k]`` bytes from offset ``all_src_offsets[i][j][k]`` of the
        object to ``buffer_ptrs[i] + all_dst_offsets[i][j][k]``. One list of byte counts per
        key (negative: a missing key, a bad range)."""
        addrs = _uints(buffer_ptrs, "buffer_ptrs")
        out: List[List[List[int]]] = []
        for i, addr in enumerate(addrs):
            per_key: List[List[int]] = []
            keys = all_keys[i] if i < len(all_keys) else []
            for j, key in enumerate(keys):
                try:
                    dst = _uints(all_dst_offsets[i][j], "all_dst_offsets")
                    src = _uints(all_src_offsets[i][j], "all_src_offsets")
                    lens = _uints(all_sizes[i][j], "all_sizes")
                except IndexError:
                    per_key.append([INVALID_PARAMS])
                    continue
                if not (len(dst) == len(src) == len(lens)):
                    per_key.append([INVALID_PARAMS] * len(dst))
                    continue
                n = len(dst)
                ranges = (StoreRange * max(1, n))(*[StoreRange(d, s, ln) for d, s, ln in zip(dst, src, lens)])
                results = (c_int64 * max(1, n))()
                rc = LIB.mooncake_store_get_into_ranges(self._handle, addr or None, _key(key), ranges, n, results)
                _failed("get_into_ranges", rc)
                per_key.append(list(results[:n]) if n else [])
            out.append(per_key)
        return out

    # ---- queries and removal ----

    def is_exist(self, key: str) -> int:
        """1 exists, 0 not, negative on error (grants a read lease on an existing object)."""
        return _failed("is_exist", LIB.mooncake_store_is_exist(self._handle, _key(key)))

    def batch_is_exist(self, keys: List[str]) -> List[int]:
        karr, n = _keys(keys)
        if n == 0:
            return []
        results = (c_int * n)()
        rc = LIB.mooncake_store_batch_is_exist(self._handle, karr, n, results)
        if rc != 0:
            return [_failed("batch_is_exist", rc)] * n
        return list(results)

    def get_size(self, key: str) -> int:
        """The value's length, or a negative code (-704 missing)."""
        return _failed("get_size", LIB.mooncake_store_get_size(self._handle, _key(key)))

    def remove(self, key: str, force: bool = False) -> int:
        """0, -704 missing, -706 under a read lease (unless ``force``)."""
        return _failed("remove", LIB.mooncake_store_remove(self._handle, _key(key), int(bool(force))))

    def remove_by_regex(self, regex_pattern: str, force: bool = False) -> int:
        """How many objects matching ``regex_pattern`` were removed, or a negative code."""
        return _failed("remove_by_regex", LIB.mooncake_store_remove_by_regex(
            self._handle, _key(regex_pattern, "regex_pattern"), int(bool(force))))

    def remove_all(self, force: bool = False) -> int:
        """How many objects were removed (leased ones only with ``force``)."""
        return _failed("remove_all", LIB.mooncake_store_remove_all(self._handle, int(bool(force))))

    # ---- zero-copy buffers ----

    def register_buffer(self, buffer_ptr: int, size: int) -> int:
        return _failed("register_buffer", LIB.mooncake_store_register_buffer(
            self._handle, _u64(buffer_ptr, "buffer_ptr") or None, _u64(size, "size")))

    def unregister_buffer(self, buffer_ptr: int) -> int:
        return _failed("unregister_buffer", LIB.mooncake_store_unregister_buffer(
            self._handle, _u64(buffer_ptr, "buffer_ptr") or None))

    # ---- Mooncake's surface beyond put/get (src/ffi/store/surface.rs) ----

    def _setup_with_engine(self, engine: Any, host: bytes, meta: bytes, gss: int, lbs: int, master: bytes) -> int:
        """``setup`` on the engine of ``TransferEngine.get_engine()``, shared with its owner."""
        if hasattr(engine, "get_engine_ptr"):
            engine = engine.get_engine_ptr()
        handle = getattr(engine, "handle", engine)
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise TypeError("incompatible function arguments: engine must be the object of "
                            f"mooncake.engine.TransferEngine.get_engine(), not {engine!r}")
        rc = LIB.mooncake_store_setup_with_engine(self._handle, c_void_p(handle), host, meta, gss, lbs, master)
        if rc != 0:
            log.debug("setup with a shared engine failed: %d (%s)", rc, _lib.last_error())
        return rc

    def batch_remove(self, keys: List[str], force: bool = False) -> List[int]:
        """Removes each key: 0, -704 missing, -706 under a read lease (unless ``force``)."""
        karr, n = _keys(keys)
        if n == 0:
            return []
        results = (c_int * n)()
        rc = LIB.mooncake_store_batch_remove(self._handle, karr, n, int(bool(force)), results)
        if rc != 0:
            return [_failed("batch_remove", rc)] * n
        return list(results)

    def _replica_descs(self, keys: Sequence[str]) -> List[Optional[List[ReplicaDescriptor]]]:
        karr, n = _keys(keys)
        if n == 0:
            return []
        counts = (c_int * n)()
        capacity = 4 * n
        for _ in range(2):
            descs = (ReplicaDescC * capacity)()
            total = LIB.mooncake_store_batch_get_replica_desc(self._handle, karr, n, descs, capacity, counts)
            if total < 0:
                _failed("get_replica_desc", total)
                return [None] * n
            if total <= capacity:
                break
            capacity = total
        out: List[Optional[List[ReplicaDescriptor]]] = []
        at = 0
        for i in range(n):
            if counts[i] < 0:
                log.error("get_replica_desc %r: %d", keys[i], counts[i])
                out.append(None)
                continue
            found = []
            for d in descs[at:at + counts[i]]:
                desc = Descriptor._make(buffer_address=d.buffer_address, size=d.size,
                                        transport_endpoint=d.transport_endpoint.decode())
                found.append(ReplicaDescriptor._make(status=ReplicaStatus(d.status),
                                                     _memory=MemoryDescriptor._make(buffer_descriptor=desc)))
            at += counts[i]
            out.append(found)
        return out

    def get_replica_desc(self, key: str) -> List[ReplicaDescriptor]:
        """The replicas of ``key`` (a read lease comes with them); ``[]`` when it is missing."""
        return self._replica_descs([key])[0] or []

    def batch_get_replica_desc(self, keys: List[str]) -> Dict[str, List[ReplicaDescriptor]]:
        """The replicas of each key found (missing keys are left out, as the wheel does)."""
        return {k: v for k, v in zip(keys, self._replica_descs(keys)) if v is not None}

    def put_from_with_metadata(self, key: str, buffer_ptr: int, metadata_buffer_ptr: int, size: int,
                               metadata_size: int, config: Optional[ReplicateConfig] = None) -> int:
        """Stores ``metadata_size`` bytes at ``metadata_buffer_ptr`` then ``size`` bytes at
        ``buffer_ptr`` as one object (registered memory or not). 0 or a negative code."""
        cfg = _CConfig.of(config)
        return _failed("put_from_with_metadata", LIB.mooncake_store_put_from_with_metadata(
            self._handle, _key(key), _u64(buffer_ptr, "buffer_ptr") or None,
            _u64(metadata_buffer_ptr, "metadata_buffer_ptr") or None, _u64(size, "size"),
            _u64(metadata_size, "metadata_size"), cfg.ref))

    def batch_put_session_start(self, keys: List[str], sizes: List[int],
                                config: Optional[ReplicateConfig] = None) -> List[int]:
        """Reserves space for each key without writing it; one code per key."""
        karr, n = _keys(keys)
        lens = _uints(sizes, "sizes")
        if len(lens) != n:
            log.error("batch_put_session_start: %d keys, %d sizes", n, len(lens))
            return [INVALID_PARAMS] * n
        if n == 0:
            return []
        cfg = _CConfig.of(config)
        results = (c_int * n)()
        rc = LIB.mooncake_store_batch_put_session_start(self._handle, karr, (c_uint64 * n)(*lens), n, cfg.ref,
                                                        results)
        if rc != 0:
            return [_failed("batch_put_session_start", rc)] * n
        return list(results)

    def _put_session_finish(self, what: str, keys: List[str], revoke: bool) -> List[int]:
        karr, n = _keys(keys)
        if n == 0:
            return []
        results = (c_int * n)()
        rc = LIB.mooncake_store_batch_put_session_finish(self._handle, karr, n, int(revoke), results)
        if rc != 0:
            return [_failed(what, rc)] * n
        return list(results)

    def batch_put_session_end(self, keys: List[str]) -> List[int]:
        """Makes each session's object visible; one code per key."""
        return self._put_session_finish("batch_put_session_end", keys, False)

    def batch_put_session_revoke(self, keys: List[str]) -> List[int]:
        """Frees each session's space; one code per key."""
        return self._put_session_finish("batch_put_session_revoke", keys, True)

    def batch_get_session_start(self, keys: List[str]) -> List[int]:
        """Looks the replicas of each key up once and keeps them; one code per key."""
        karr, n = _keys(keys)
        if n == 0:
            return []
        results = (c_int * n)()
        rc = LIB.mooncake_store_batch_get_session_start(self._handle, karr, n, results)
        if rc != 0:
            return [_failed("batch_get_session_start", rc)] * n
        return list(results)

    def batch_get_session_end(self, keys: List[str]) -> int:
        """Drops the get sessions of ``keys``. 0 or a negative code."""
        karr, n = _keys(keys)
        return _failed("batch_get_session_end", LIB.mooncake_store_batch_get_session_end(self._handle, karr, n))

    # ---- multi-buffer puts and gets ----

    def batch_put_from_multi_buffers(self, keys: List[str], all_buffer_ptrs: List[List[int]],
                                     all_sizes: List[List[int]],
                                     config: Optional[ReplicateConfig] = None) -> List[int]:
        """Puts each key's value from scattered buffers: key i is the concatenation of
        ``all_sizes[i][j]`` bytes at ``all_buffer_ptrs[i][j]``, in order. The buffers may be
        registered (``register_buffer``) or not, as with Mooncake's. One code per key; every
        key gets INVALID_PARAMS when the lists' lengths disagree (as Mooncake's)."""
        flat = _flat_parts("batch_put_from_multi_buffers", keys, all_buffer_ptrs, all_sizes, whole=True)
        if isinstance(flat, list):
            return flat
        karr, n, counts, addrs, lens = flat
        cfg = _CConfig.of(config)
        results = (c_int * max(1, n))()
        rc = LIB.mooncake_store_batch_put_from_multi_buffers(
            self._handle, karr, n, counts, addrs, lens, cfg.ref, cfg.ttl, 0, results)
        if rc != 0:
            return [_failed("batch_put_from_multi_buffers", rc)] * n
        return list(results[:n])

    def batch_get_into_multi_buffers(self, keys: List[str], all_buffer_ptrs: List[List[int]],
                                     all_sizes: List[List[int]],
                                     prefer_alloc_in_same_node: bool = False) -> List[int]:
        """Reads each key's value into scattered buffers (key i fills ``all_sizes[i][j]``
        bytes at ``all_buffer_ptrs[i][j]`` in order; the sizes must add up to the value's).
        The buffers may be registered or not, as with Mooncake's. Bytes read or a negative
        code per key."""
        flat = _flat_parts("batch_get_into_multi_buffers", keys, all_buffer_ptrs, all_sizes, whole=False)
        if isinstance(flat, list):
            return flat
        karr, n, counts, addrs, lens = flat
        results = (c_int64 * max(1, n))()
        rc = LIB.mooncake_store_batch_get_into_multi_buffers(
            self._handle, karr, n, counts, addrs, lens, int(bool(prefer_alloc_in_same_node)), results)
        if rc != 0:
            return [_failed("batch_get_into_multi_buffers", rc)] * n
        return list(results[:n])

    def batch_put_from_multi_buffer_ranges(self, keys: List[str], all_buffer_ptrs: List[List[int]],
                                           all_sizes: List[List[int]],
                                           all_dst_offsets: List[List[int]]) -> List[int]:
        """Writes parts of objects reserved by ``batch_put_session_start``: ``all_sizes[i][j]``
        bytes at ``all_buffer_ptrs[i][j]`` go to offset ``all_dst_offsets[i][j]`` of key i's
        object (every replica); the object appears at ``batch_put_session_end``. Bytes written
        or a negative code per key (INVALID_PARAMS without a session, past the object's end,
        or when key i's three lists disagree; every key when the outer lengths disagree)."""
        return self._ranges("batch_put_from_multi_buffer_ranges", keys, all_buffer_ptrs, all_sizes,
                            all_dst_offsets)

    def batch_get_into_multi_buffer_ranges(self, keys: List[str], all_buffer_ptrs: List[List[int]],
                                           all_sizes: List[List[int]],
                                           all_src_offsets: List[List[int]]) -> List[int]:
        """Reads ``all_sizes[i][j]`` bytes from offset ``all_src_offsets[i][j]`` of key i's
        object into ``all_buffer_ptrs[i][j]``, through the replicas ``batch_get_session_start``
        found. Bytes read or a negative code per key (INVALID_PARAMS without a session or past
        the object's end, LEASE_EXPIRED when the session's lease ran out)."""
        return self._ranges("batch_get_into_multi_buffer_ranges", keys, all_buffer_ptrs, all_sizes,
                            all_src_offsets)

    def _ranges(self, what: str, keys: Sequence[str], all_buffer_ptrs: Sequence[Sequence[int]],
                all_sizes: Sequence[Sequence[int]], all_offsets: Sequence[Sequence[int]]) -> List[int]:
        karr, n = _keys(keys)
        if len(all_buffer_ptrs) != n or len(all_sizes) != n or len(all_offsets) != n:
            log.error("%s: %d keys, %d buffer lists, %d size lists, %d offset lists", what, n,
                      len(all_buffer_ptrs), len(all_sizes), len(all_offsets))
            return [INVALID_PARAMS] * n
        counts: List[int] = []
        addrs: List[int] = []
        lens: List[int] = []
        offs: List[int] = []
        bad: List[int] = []
        for i in range(n):
            ptrs = _uints(all_buffer_ptrs[i], "all_buffer_ptrs[i]")
            sizes, offsets = _uints(all_sizes[i], "all_sizes[i]"), _uints(all_offsets[i], "offsets[i]")
            if not len(ptrs) == len(sizes) == len(offsets):
                log.error("%s: key %d has %d buffers, %d sizes and %d offsets", what, i, len(ptrs), len(sizes),
                          len(offsets))
                bad.append(i)
                ptrs, sizes, offsets = [], [], []
            counts.append(len(ptrs))
            addrs.extend(ptrs)
            lens.extend(sizes)
            offs.extend(offsets)
        m = max(1, len(addrs))
        results = (c_int64 * max(1, n))()
        rc = getattr(LIB, "mooncake_store_" + what)(
            self._handle, karr, n, (c_size_t * max(1, n))(*counts), (c_void_p * m)(*addrs), (c_size_t * m)(*lens),
            (c_size_t * m)(*offs), results)
        if rc != 0:
            return [_failed(what, rc)] * n
        out = list(results[:n])
        for i in bad:
            out[i] = INVALID_PARAMS
        return out


    # ---- extra segments, copy and move tasks ----

    def mount_segment(self, path: str, size: int, offset: int = 0, protocol: str = "tcp",
                      location: str = "") -> dict:
        """Maps ``size`` bytes of the file at ``path`` from ``offset`` (page-aligned) and mounts
        them as a segment of this client: ``{"ret": 0 or -1, "segment_ids": [id, ...]}``."""
        ids = ctypes.create_string_buffer(_IDS_LEN)
        rc = LIB.mooncake_store_mount_segment(
            self._handle, _key(path, "path"), _u64(size, "size"), _u64(offset, "offset"),
            _key(protocol, "protocol"), _key(location, "location"), ids, _IDS_LEN)
        if rc != 0:
            return {"ret": _failed("mount_segment", -1), "segment_ids": []}
        return {"ret": 0, "segment_ids": _split_ids(ids.value)}

    def unmount_segment(self, segment_ids: List[str], grace_period_seconds: int = 0) -> int:
        """Unmounts segments of :meth:`mount_segment`: 0, -1 for an id that is not one, or the
        first failure's code."""
        arr, n = _keys(segment_ids)
        return _failed("unmount_segment", LIB.mooncake_store_unmount_segment(
            self._handle, arr, n, _u64(grace_period_seconds, "grace_period_seconds")))

    def allocate_and_mount_segment(self, size: int, protocol: str = "tcp", location: str = "") -> dict:
        """Allocates ``size`` bytes (whole 16 MiB slabs) and mounts them:
        ``{"ret", "segment_ids", "allocated_size"}``."""
        ids = ctypes.create_string_buffer(_IDS_LEN)
        allocated = c_uint64(0)
        rc = LIB.mooncake_store_allocate_and_mount_segment(
            self._handle, _u64(size, "size"), _key(protocol, "protocol"), _key(location, "location"), ids,
            _IDS_LEN, byref(allocated))
        if rc != 0:
            return {"ret": _failed("allocate_and_mount_segment", -1), "segment_ids": [], "allocated_size": 0}
        return {"ret": 0, "segment_ids": _split_ids(ids.value), "allocated_size": allocated.value}

    def unmount_and_free_segment(self, segment_ids: List[str], grace_period_seconds: int = 0) -> int:
        """Unmounts and frees segments of :meth:`allocate_and_mount_segment` (as
        :meth:`unmount_segment`)."""
        arr, n = _keys(segment_ids)
        return _failed("unmount_and_free_segment", LIB.mooncake_store_unmount_and_free_segment(
            self._handle, arr, n, _u64(grace_period_seconds, "grace_period_seconds")))

    def create_copy_task(self, key: str, targets: List[str]) -> tuple:
        """Copy an object to target segments: ``(task id, 0)`` or ``((0, 0), code)``."""
        arr, n = _keys(targets)
        out = TaskIdC()
        rc = LIB.mooncake_store_create_copy_task(self._handle, _key(key), arr, n, byref(out))
        if rc != 0:
            log.error("Copy failed for key: %s, error: %d (%s)", key, rc, _lib.last_error())
            return ((0, 0), rc)
        return ((out.first, out.second), 0)

    def create_move_task(self, key: str, source: str, target: str) -> tuple:
        """Move an object from source segment to target segment: ``(task id, 0)`` or
        ``((0, 0), code)``."""
        out = TaskIdC()
        rc = LIB.mooncake_store_create_move_task(
            self._handle, _key(key), _key(source, "source"), _key(target, "target"), byref(out))
        if rc != 0:
            log.error("Move failed for key: %s, error: %d (%s)", key, rc, _lib.last_error())
            return ((0, 0), rc)
        return ((out.first, out.second), 0)

    def query_task(self, task_id: Tuple[int, int]) -> tuple:
        """The status of a task: ``(QueryTaskResponse, 0)`` or ``(None, code)`` (-1400 unknown)."""
        if isinstance(task_id, (str, bytes)) or not hasattr(task_id, "__len__") or len(task_id) != 2:
            raise TypeError(f"incompatible function arguments: task_id must be tuple[int, int], not {task_id!r}")
        tid = TaskIdC(_u64(task_id[0], "task_id"), _u64(task_id[1], "task_id"))
        info = TaskInfoC()
        message = ctypes.create_string_buffer(_MESSAGE_LEN)
        rc = LIB.mooncake_store_query_task(self._handle, byref(tid), byref(info), message, _MESSAGE_LEN)
        if rc != 0:
            log.error("QueryTask failed for task_id: %d-%d, error: %d", tid.first, tid.second, rc)
            return (None, rc)
        return (QueryTaskResponse._of(info, message.value.decode(errors="replace")), 0)

    def batch_replica_clear(self, keys: List[str], segment_name: str = "") -> List[str]:
        """Drops this client's replicas of ``keys`` on ``segment_name`` (``""``: the whole
        objects) where no read lease holds them; the keys cleared, in order (``[]`` on failure,
        as Mooncake's)."""
        karr, n = _keys(keys)
        seg = _key(segment_name, "segment_name")
        if n == 0:
            return []
        cleared = (c_int * n)()
        rc = LIB.mooncake_store_batch_replica_clear(self._handle, karr, n, seg, cleared)
        if rc < 0:
            log.error("batch_replica_clear failed: %d", rc)
            return []
        return [k for k, c in zip(keys, cleared) if c]



def _flat_parts(what: str, keys: Sequence[str], all_buffer_ptrs: Sequence[Sequence[int]],
                all_sizes: Sequence[Sequence[int]], whole: bool):
    """The C arguments of a multi-buffer call (keys, count, part counts, flat pointers and
    sizes), or the answer when the lists' lengths disagree: INVALID_PARAMS for every key, or
    with ``whole`` False only for the keys whose own two lists disagree (those get no parts,
    which the library refuses with INVALID_PARAMS)."""
    karr, n = _keys(keys)
    if len(all_buffer_ptrs) != n or len(all_sizes) != n:
        log.error("%s: %d keys, %d buffer lists, %d size lists", what, n, len(all_buffer_ptrs), len(all_sizes))
        return [INVALID_PARAMS] * n
    counts: List[int] = []
    addrs: List[int] = []
    lens: List[int] = []
    for i in range(n):
        ptrs, sizes = _uints(all_buffer_ptrs[i], "all_buffer_ptrs[i]"), _uints(all_sizes[i], "all_sizes[i]")
        if len(ptrs) != len(sizes):
            log.error("%s: key %d has %d buffers and %d sizes", what, i, len(ptrs), len(sizes))
            if whole:
                return [INVALID_PARAMS] * n
            ptrs, sizes = [], []
        counts.append(len(ptrs))
        addrs.extend(ptrs)
        lens.extend(sizes)
    m = max(1, len(addrs))
    return (karr, n, (c_size_t * max(1, n))(*counts), (c_void_p * m)(*addrs), (c_size_t * m)(*lens))


# ---- copy and move tasks: Mooncake's TaskType, TaskStatus, QueryTaskResponse -----------------

_IDS_LEN = 4096       # comma-separated segment ids (one is at most 41 characters)
_MESSAGE_LEN = 1024   # a task's message


def _split_ids(raw: bytes) -> List[str]:
    return [i for i in raw.decode().split(",") if i]


class TaskType(enum.IntEnum):
    """What a task does (Mooncake's ``TaskType``)."""

    REPLICA_COPY = 0
    REPLICA_MOVE = 1

    def __str__(self) -> str:  # as pybind prints enum members
        return f"TaskType.{self.name}"


class TaskStatus(enum.IntEnum):
    """Where a task is (Mooncake's ``TaskStatus``; its numbering: FAILED 2, SUCCESS 3)."""

    PENDING = 0
    PROCESSING = 1
    FAILED = 2
    SUCCESS = 3

    def __str__(self) -> str:
        return f"TaskStatus.{self.name}"


# The wheel exports the members at module level too.
PENDING = TaskStatus.PENDING
PROCESSING = TaskStatus.PROCESSING
SUCCESS = TaskStatus.SUCCESS
FAILED = TaskStatus.FAILED
REPLICA_COPY = TaskType.REPLICA_COPY
REPLICA_MOVE = TaskType.REPLICA_MOVE


class QueryTaskResponse:
    """Response structure for QueryTask operation."""

    __slots__ = ("_id", "_type", "_status", "_created", "_updated", "_client", "_message")

    def __init__(self) -> None:
        self._id: Tuple[int, int] = (0, 0)
        self._type = TaskType.REPLICA_COPY
        self._status = TaskStatus.PENDING
        self._created = 0
        self._updated = 0
        self._client: Tuple[int, int] = (0, 0)
        self._message = ""

    @classmethod
    def _of(cls, info: Any, message: str) -> "QueryTaskResponse":
        r = cls()
        r._id = (info.id.first, info.id.second)
        r._type = TaskType(info.type_)
        r._status = TaskStatus(info.status)
        r._created = info.created_at_ms_epoch
        r._updated = info.last_updated_at_ms_epoch
        r._client = (info.assigned_client.first, info.assigned_client.second)
        r._message = message
        return r

    @property
    def id(self) -> Tuple[int, int]:
        return self._id

    @property
    def type(self) -> TaskType:
        return self._type

    @property
    def status(self) -> TaskStatus:
        return self._status

    @property
    def created_at_ms_epoch(self) -> int:
        return self._created

    @property
    def last_updated_at_ms_epoch(self) -> int:
        return self._updated

    @property
    def assigned_client(self) -> Tuple[int, int]:
        return self._client

    @property
    def message(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return (f"QueryTaskResponse(id={self._id[0]}-{self._id[1]}, type={int(self._type)}, "
                f"status={int(self._status)}, created_at={self._created}, last_updated_at={self._updated}, "
                f"assigned_client={self._client[0]}-{self._client[1]}, message=\"{self._message}\")")


# ---- tensor helpers (only with torch) --------------------------------------------------------

try:  # optional dependency
    import torch as _torch
except Exception:  # noqa: BLE001 - any import failure means "no torch"
    _torch = None

_TENSOR_MAGIC = b"MCT1"


def _serialize_tensor(tensor: Any) -> bytes:
    """Our layout: b"MCT1", u32 length of the header JSON-free text "dtype|d0,d1,...", the
    text, then the tensor's bytes (C-contiguous, on the CPU)."""
    t = tensor.detach().to("cpu").contiguous()
    head = f"{str(t.dtype).replace('torch.', '')}|{','.join(str(d) for d in t.shape)}".encode()
    raw = t.view(_torch.uint8).numpy().tobytes() if t.numel() else b""
    return _TENSOR_MAGIC + struct.pack("<I", len(head)) + head + raw


def _deserialize_tensor(data: bytes) -> Any:
    if len(data) < 8 or data[:4] != _TENSOR_MAGIC:
        return None
    (n,) = struct.unpack("<I", data[4:8])
    dtype_name, _, dims = data[8:8 + n].decode().partition("|")
    shape = [int(d) for d in dims.split(",") if d]
    dtype = getattr(_torch, dtype_name)
    payload = bytearray(data[8 + n:])
    flat = _torch.frombuffer(payload, dtype=_torch.uint8) if payload else _torch.empty(0, dtype=_torch.uint8)
    return flat.view(dtype).reshape(shape)


if _torch is not None:
    def put_tensor(self: MooncakeDistributedStore, key: str, tensor: Any) -> int:
        """Stores a tensor (copied to the CPU)."""
        return self.put(key, _serialize_tensor(tensor))

    def get_tensor(self: MooncakeDistributedStore, key: str) -> Any:
        """The tensor stored under ``key`` by ``put_tensor``, or None."""
        data = self.get(key)
        return _deserialize_tensor(data) if data else None

    def batch_put_tensor(self: MooncakeDistributedStore, keys: List[str], tensors_list: List[Any]) -> List[int]:
        karr, n = _keys(keys)
        if len(tensors_list) != n:
            return [INVALID_PARAMS] * n
        return [self.put(k, _serialize_tensor(t)) for k, t in zip(keys, tensors_list)]

    def batch_get_tensor(self: MooncakeDistributedStore, keys: List[str]) -> List[Any]:
        return [_deserialize_tensor(b) if b else None for b in self.get_batch(keys)] if keys else []

    for _f in (put_tensor, get_tensor, batch_put_tensor, batch_get_tensor):
        setattr(MooncakeDistributedStore, _f.__name__, _f)
    del _f
