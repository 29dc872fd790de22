"""``mooncake.BufferPool``: leases of memory registered with a store, in pure Python.

The counterpart of the ``BufferPool`` / ``BufferLease`` classes of Mooncake's wheel
(``mooncake.store.BufferPool``, also ``mooncake.RegisteredBufferPool``)::

    pool = BufferPool(store)
    with pool.acquire(n) as lease:
        lease.buffer[:n] = data            # a writable memoryview of ``n`` bytes at ``lease.ptr``
        store.put_from(key, lease.ptr, n)  # zero copy: the memory is registered with ``store``

Where the memory comes from. The wheel carves leases out of the store's own local buffer and
falls back to a separately allocated, registered buffer when that is full. Our store does not
hand its local buffer to Python, so the pool maps a *local region* of its own (anonymous
``mmap``, registered once with ``store.register_buffer``) of the wheel's default local-buffer
size, 16 MiB, and carves leases out of it (64-byte aligned). A lease that does not fit there
gets an *overflow* mapping of its own, aligned to ``alignment``, registered for the lease and
unregistered when the lease is released. ``close()`` unregisters and unmaps the local region.

Limits and errors follow the wheel (``RuntimeError`` with its messages):

* ``max_bytes`` bounds the bytes of all active leases: ``0`` means twice the local region; a
  smaller value is raised to the local region's size. ``max_regions`` bounds the number of
  active leases. A request larger than ``max_bytes`` fails at once ("requested buffer size
  exceeds pool capacity").
* When the pool is full, ``acquire`` waits for a release (``block``, default
  ``block_on_exhaustion``) up to ``timeout`` seconds (default ``default_timeout``; ``None``:
  no bound) and then raises "timed out waiting for buffer"; without blocking it raises "buffer
  pool is exhausted".
* ``release()`` refuses while memoryviews from ``lease.buffer`` are alive ("cannot release
  buffer while exported views exist"); such a view keeps its lease, and so the memory, alive.
  A lease that is garbage collected is released.
* ``close()`` refuses while leases are active ("cannot close buffer pool with active leases");
  afterwards ``acquire`` raises "buffer pool is closed".
* ``min_size_class``, ``max_size_class`` and ``prewarm`` are accepted and checked as in the
  wheel, whose pool does not use them for allocation either (``prewarm`` does nothing).

This module does not load ``libmooncake.so``: the store is any object with
``register_buffer(addr, size)`` and ``unregister_buffer(addr)`` returning 0 on success.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import operator
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Tuple, Type

log = logging.getLogger("mooncake")

__all__ = ["BufferPool", "BufferLease", "RegisteredBufferPool", "RegisteredBufferLease"]

LOCAL_REGION_SIZE = 16 << 20  # the wheel's default local_buffer_size
_LOCAL_ALIGN = 64
_SIZE_MAX = (1 << 64) - 1
_PAGE = mmap.PAGESIZE


def _size_arg(value: Any, what: str) -> int:
    """An unsigned 64-bit count, refused with TypeError as pybind refuses a bad ``size_t``."""
    if isinstance(value, float):
        raise TypeError(f"{what} must be an integer, not float")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if n < 0 or n > _SIZE_MAX:
        raise TypeError(f"{what} must be an unsigned 64-bit integer, got {n}")
    return n


def _seconds(value: Any, what: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number or None, not {type(value).__name__}")
    return float(value)


class _Mapping:
    """An anonymous mapping with an address of ``size`` bytes aligned to ``align``."""

    def __init__(self, size: int, align: int) -> None:
        extra = align - _PAGE if align > _PAGE else 0
        self.length = max(size + extra, 1)
        self.map = mmap.mmap(-1, self.length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                             prot=mmap.PROT_READ | mmap.PROT_WRITE)
        probe = ctypes.c_char.from_buffer(self.map)
        base = ctypes.addressof(probe)
        del probe  # no export left: the mapping can be closed
        self.addr = (base + align - 1) & ~(align - 1)
        self.size = size

    def close(self) -> None:
        self.map.close()


class _LocalRegion:
    """The pool's registered local region, carved first-fit into 64-byte aligned blocks."""

    def __init__(self, size: int) -> None:
        self.mapping = _Mapping(size, _PAGE)
        self.addr = self.mapping.addr
        self.size = size
        self.free: List[Tuple[int, int]] = [(0, size)]  # (offset, length), sorted, coalesced
        self.used: Dict[int, int] = {}  # offset -> length

    def allocate(self, size: int) -> Optional[int]:
        need = (size + _LOCAL_ALIGN - 1) & ~(_LOCAL_ALIGN - 1)
        for i, (off, length) in enumerate(self.free):
            if length >= need:
                if length == need:
                    del self.free[i]
                else:
                    self.free[i] = (off + need, length - need)
                self.used[off] = need
                return self.addr + off
        return None

    def free_block(self, addr: int) -> None:
        off = addr - self.addr
        length = self.used.pop(off)
        i = 0
        while i < len(self.free) and self.free[i][0] < off:
            i += 1
        self.free.insert(i, (off, length))
        if i + 1 < len(self.free) and off + length == self.free[i + 1][0]:  # with the next one
            self.free[i] = (off, length + self.free[i + 1][1])
            del self.free[i + 1]
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == off:  # with the previous one
            self.free[i - 1] = (self.free[i - 1][0], self.free[i - 1][1] + self.free[i][1])
            del self.free[i]


class _Region:
    __slots__ = ("addr", "size", "overflow")

    def __init__(self, addr: int, size: int, overflow: Optional[_Mapping]) -> None:
        self.addr = addr
        self.size = size  # bytes counted against max_bytes
        self.overflow = overflow  # its own registered mapping, or None (in the local region)


class _ViewBase:
    """Base of the ctypes arrays behind ``BufferLease.buffer``: each holds its lease."""


@functools.lru_cache(maxsize=256)
def _view_type(size: int) -> Type[Any]:
    return type("BufferLeaseView", (ctypes.c_ubyte * size, _ViewBase), {})


class BufferLease:
    """Memory leased from a :class:`BufferPool`: ``ptr`` (address), ``size`` (bytes asked for),
    ``buffer`` (a writable memoryview of ``size`` bytes), ``release()``; a context manager that
    releases on exit. Made by :meth:`BufferPool.acquire` only."""

    def __init__(self, pool: "BufferPool", region: _Region, size: int) -> None:
        self._pool: Optional[BufferPool] = pool
        self._region: Optional[_Region] = region
        self._size = size
        self._views: List[weakref.ref] = []  # the arrays behind the memoryviews handed out

    @property
    def ptr(self) -> int:
        if self._region is None:
            raise RuntimeError("buffer lease is closed")
        return self._region.addr

    @property
    def size(self) -> int:
        return self._size

    @property
    def buffer(self) -> memoryview:
        if self._region is None:
            raise RuntimeError("buffer lease is closed")
        array = _view_type(self._size).from_address(self._region.addr)
        array._lease = self  # the view keeps the lease (and so the memory) alive
        self._views = [r for r in self._views if r() is not None]
        self._views.append(weakref.ref(array))
        return memoryview(array).cast("B")

    def release(self) -> None:
        self._release(check_views=True)

    def _release(self, check_views: bool) -> None:
        if self._region is None:
            return
        if check_views and any(r() is not None for r in self._views):
            raise RuntimeError("cannot release buffer while exported views exist")
        pool, region = self._pool, self._region
        self._pool = None
        self._region = None
        if pool is not None:
            pool._release(region)

    def __enter__(self) -> "BufferLease":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self._release(check_views=False)
        except Exception:  # noqa: BLE001 - a destructor must not raise
            pass

    def __repr__(self) -> str:
        state = "released" if self._region is None else f"ptr=0x{self._region.addr:x}"
        return f"<mooncake.BufferLease size={self._size} {state}>"


class BufferPool:
    """Leases of memory registered with ``store`` (see the module's documentation)."""

    def __init__(self, store: Any, max_bytes: int = 0, min_size_class: int = 65536,
                 max_size_class: Optional[int] = None, alignment: int = 8388608,
                 block_on_exhaustion: bool = True, default_timeout: Optional[float] = None,
                 max_regions: Optional[int] = None, prewarm_size: Optional[int] = None,
                 prewarm_count: int = 0) -> None:
        self._closed = True  # until the local region is registered
        self._local: Optional[_LocalRegion] = None
        max_bytes = _size_arg(max_bytes, "max_bytes")
        min_size_class = _size_arg(min_size_class, "min_size_class")
        alignment = _size_arg(alignment, "alignment")
        prewarm_count = _size_arg(prewarm_count, "prewarm_count")
        max_size_class = None if max_size_class is None else _size_arg(max_size_class, "max_size_class")
        max_regions = None if max_regions is None else _size_arg(max_regions, "max_regions")
        prewarm_size = None if prewarm_size is None else _size_arg(prewarm_size, "prewarm_size")
        default_timeout = _seconds(default_timeout, "default_timeout")
        if store is None:
            raise RuntimeError("MooncakeDistributedStore is not initialized")
        if not (callable(getattr(store, "register_buffer", None))
                and callable(getattr(store, "unregister_buffer", None))):
            raise RuntimeError("BufferPool store parameter must be a MooncakeDistributedStore "
                               "(an object with register_buffer and unregister_buffer)")
        if min_size_class == 0 or alignment == 0:
            raise RuntimeError("min_size_class and alignment must be positive")
        if alignment < ctypes.sizeof(ctypes.c_void_p) or alignment & (alignment - 1):
            raise RuntimeError("alignment must be a power of two and at least sizeof(void*)")

        self._store = store
        self._alignment = alignment
        self._block = bool(block_on_exhaustion)
        self._default_timeout = default_timeout
        self._max_regions = max_regions
        self._cond = threading.Condition(threading.Lock())
        self._in_use: Dict[int, _Region] = {}
        self._total = 0

        local = _LocalRegion(LOCAL_REGION_SIZE)
        rc = store.register_buffer(local.addr, local.size)
        if rc != 0:
            local.mapping.close()
            raise RuntimeError(f"BufferPool requires a store that is set up: registering its local "
                               f"buffer failed ({rc})")
        self._local = local
        self._closed = False
        self._max_bytes = 2 * local.size if max_bytes == 0 else max(max_bytes, local.size)
        self._max_size_class = self._max_bytes if max_size_class is None else max_size_class
        if prewarm_size is not None and prewarm_count > 0:
            self.prewarm(prewarm_size, prewarm_count)

    # ---- leases ----

    def acquire(self, size: int, block: Optional[bool] = None,
                timeout: Optional[float] = None) -> BufferLease:
        """A lease of ``size`` bytes; see the module's documentation for waits and errors."""
        size = _size_arg(size, "size")
        should_block = self._block if block is None else bool(block)
        timeout_s = self._default_timeout if timeout is None else _seconds(timeout, "timeout")
        if timeout_s is not None and timeout_s < 0:
            raise RuntimeError("timeout must be non-negative")
        need = max(size, 1)
        if need > self._max_bytes:
            raise RuntimeError("requested buffer size exceeds pool capacity")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                self._raise_if_closed()
                region = self._try_acquire(need)
                if region is not None:
                    self._in_use[region.addr] = region
                    self._total += region.size
                    return BufferLease(self, region, size)
                if not should_block:
                    raise RuntimeError("buffer pool is exhausted")
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RuntimeError("timed out waiting for buffer")
                    self._cond.wait(left)

    def buffer(self, size: int, block: Optional[bool] = None,
               timeout: Optional[float] = None) -> BufferLease:
        """The same as :meth:`acquire`."""
        return self.acquire(size, block, timeout)

    def prewarm(self, size: int, count: int) -> None:
        """Accepted for the wheel's API; as there, nothing to do (the local region is mapped)."""
        _size_arg(size, "size")
        _size_arg(count, "count")

    def close(self) -> None:
        """Unregisters and unmaps the local region; refuses while leases are active."""
        with self._cond:
            if self._closed:
                return
            if self._in_use:
                raise RuntimeError("cannot close buffer pool with active leases")
            self._closed = True
            local, self._local = self._local, None
            self._cond.notify_all()
        if local is not None:
            self._unmap(local.mapping, local.addr, "local buffer")

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a destructor must not raise
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._in_use)} leases, {self._total} bytes"
        return f"<mooncake.BufferPool {state}>"

    # ---- inside (called with self._cond held, except _release and _unmap) ----

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise RuntimeError("buffer pool is closed")

    def _try_acquire(self, need: int) -> Optional[_Region]:
        if need > self._max_bytes - self._total:
            return None
        if self._max_regions is not None and len(self._in_use) >= self._max_regions:
            return None
        assert self._local is not None  # open (checked by the caller)
        addr = self._local.allocate(need)
        if addr is not None:
            return _Region(addr, need, None)
        try:
            mapping = _Mapping(need, self._alignment)
        except (OSError, MemoryError, OverflowError, ValueError):
            return None  # no memory now: wait for a release, as the wheel does
        rc = self._store.register_buffer(mapping.addr, need)
        if rc != 0:
            mapping.close()
            raise RuntimeError("overflow buffer registration failed")
        return _Region(mapping.addr, need, mapping)

    def _release(self, region: _Region) -> None:
        with self._cond:
            if self._in_use.pop(region.addr, None) is None:
                raise RuntimeError("buffer lease is not active")
            self._total -= region.size
            if region.overflow is None:
                assert self._local is not None  # a pool with leases is not closed
                self._local.free_block(region.addr)
            self._cond.notify_all()
        if region.overflow is not None:
            if not self._unmap(region.overflow, region.addr, "overflow buffer"):
                raise RuntimeError("overflow buffer unregistration failed")

    def _unmap(self, mapping: _Mapping, addr: int, what: str) -> bool:
        rc = self._store.unregister_buffer(addr)
        if rc != 0:
            # The store may still use the memory: keep it mapped (leaked) rather than unmap it.
            log.warning("BufferPool: unregistering its %s at 0x%x failed (%s); the memory stays mapped",
                        what, addr, rc)
            return False
        mapping.close()
        return True


RegisteredBufferPool = BufferPool
RegisteredBufferLease = BufferLease
