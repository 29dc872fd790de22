"""Managed buffers: memory that ``TransferEngine.allocate_managed_buffer`` hands out, already
registered with the engine (so peers can address it through the metadata at once).

The same shape as Mooncake's: a buddy allocator over 2 GiB slabs with 16 size classes from
8 KiB to 256 MiB (no coalescing on free), and one registration per buffer above 256 MiB. Slabs
are anonymous mappings, so pages are committed only when touched.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
from typing import Callable, Dict, List, Tuple

KIB = 1024
SLAB_BYTES = 2 << 30
CLASS_BYTES = [KIB * (8 << i) for i in range(16)]  # 8 KiB .. 256 MiB
MAX_CLASS = len(CLASS_BYTES) - 1


def class_of(length: int) -> int:
    """The smallest class that holds ``length`` bytes, or -1 above the largest class."""
    if length > CLASS_BYTES[MAX_CLASS]:
        return -1
    for i, size in enumerate(CLASS_BYTES):
        if length <= size:
            return i
    return MAX_CLASS


class _Mapping:
    """An anonymous mapping and its address; kept alive while registered."""

    def __init__(self, length: int) -> None:
        self.map = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = ctypes.c_char.from_buffer(self.map)
        self.addr = ctypes.addressof(self._view)
        self.length = length

    def close(self) -> None:
        del self._view
        self.map.close()


class ManagedBuffers:
    """The allocator of one engine; ``register``/``unregister`` are the engine's calls."""

    def __init__(self, register: Callable[[int, int], int], unregister: Callable[[int], int]) -> None:
        self._register = register
        self._unregister = unregister
        self._lock = threading.Lock()
        self._free: List[List[int]] = [[] for _ in CLASS_BYTES]
        self._slabs: List[_Mapping] = []
        self._large: Dict[int, _Mapping] = {}

    def _raw(self, length: int) -> _Mapping:
        m = _Mapping(length)
        if self._register(m.addr, length) != 0:
            m.close()
            raise MemoryError(f"cannot register a managed buffer of {length} bytes")
        return m

    def _split(self, cid: int) -> None:
        """Fills the free list of class ``cid`` by splitting a block of the next class up."""
        if cid == MAX_CLASS:
            slab = self._raw(SLAB_BYTES)
            self._slabs.append(slab)
            step = CLASS_BYTES[MAX_CLASS]
            self._free[MAX_CLASS].extend(range(slab.addr, slab.addr + SLAB_BYTES, step))
            return
        if not self._free[cid + 1]:
            self._split(cid + 1)
        block = self._free[cid + 1].pop()
        self._free[cid].extend([block, block + CLASS_BYTES[cid]])

    def allocate(self, length: int) -> int:
        """An address of ``length`` usable, registered bytes, or 0 when out of memory."""
        with self._lock:
            try:
                cid = class_of(length)
                if cid < 0:
                    m = self._raw(length)
                    self._large[m.addr] = m
                    return m.addr
                if not self._free[cid]:
                    self._split(cid)
                return self._free[cid].pop()
            except (MemoryError, OSError, ValueError):
                return 0

    def free(self, addr: int, length: int) -> int:
        """Returns a buffer; ``length`` must be the one it was allocated with."""
        with self._lock:
            cid = class_of(length)
            if cid < 0:
                m = self._large.pop(addr, None)
                if m is not None:
                    self._unregister(addr)
                    m.close()
                return 0
            self._free[cid].append(addr)
            return 0

    def close(self) -> Tuple[int, int]:
        """Unregisters and unmaps everything (the engine is going away)."""
        with self._lock:
            maps = self._slabs + list(self._large.values())
            for m in maps:
                self._unregister(m.addr)
                m.close()
            self._slabs, self._large = [], {}
            self._free = [[] for _ in CLASS_BYTES]
            return len(maps), sum(m.length for m in maps)
