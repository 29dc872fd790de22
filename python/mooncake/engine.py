"""``mooncake.engine``: Mooncake's Transfer Engine Python API, over ``libmooncake.so``.

A drop-in for the pybind module of Mooncake's wheel: the same classes, method names, argument
names, defaults and return values, so connector code (vLLM, SGLang, LMCache) runs unchanged.
Methods return Mooncake's integers (0 success, negative failure; batch ids, 0 on failure) and
log the reason of a failure on the ``mooncake`` logger; they raise only where Mooncake raises
(an argument of the wrong type is a ``TypeError``, as pybind raises it). As Mooncake's TCP
transport, this one also moves data from and to local memory that was never registered (over
TCP and the same-host path; RDMA needs registered memory).

Every engine call releases the GIL (ctypes does so for foreign calls); a synchronous transfer is
one library call that waits inside the library.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import threading
import time
from ctypes import byref, c_int, c_size_t
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from typing import TypeAlias

from . import _lib
from ._lib import LIB, BufferEntry, NotifyMsg, TransferRequest, TransferStatus
from ._managed import ManagedBuffers

# A failure inside the library is logged there once, with its cause, and recorded for
# `_lib.last_error()`; this module logs such failures again only at debug (one failure, one
# line). It warns on its own decisions (an RDMA request served over tcp).
log = logging.getLogger("mooncake")

__all__ = [
    "TransferEngine",
    "TransferOpcode",
    "TransferNotify",
    "InnerTransferEngine",
    "Read",
    "Write",
    "SUPPORT_CUDA",
    "SUPPORT_EFA",
    "SUPPORT_HIP",
    "SUPPORT_MNNVL",
    "SUPPORT_MUSA",
    "SUPPORT_INTRA_NVLINK",
]

#: This build moves host memory, over tcp and rdma (libibverbs loaded at run time); no GPU
#: memory, no EFA, HIP, MNNVL, MUSA or NVLink transports.
SUPPORT_CUDA = False
SUPPORT_EFA = False
SUPPORT_HIP = False
SUPPORT_MNNVL = False
SUPPORT_MUSA = False
SUPPORT_INTRA_NVLINK = False

P2PHANDSHAKE = "P2PHANDSHAKE"
_STATUS_COMPLETED = 4
_STATUS_FAILED = 6
_STATUS_TIMEOUT = 5
_INVALID_BATCH = (1 << 64) - 1
# Protocols initialize() takes; "rdma" falls back to tcp, as Mooncake does, on a host without
# RDMA devices or libibverbs (or with a library built without the rdma feature).
_PROTOCOLS = {"tcp", "rdma", ""}


class TransferOpcode(enum.IntEnum):
    """Direction of a transfer: ``Read`` (remote to local) or ``Write`` (local to remote)."""

    Read = 0
    Write = 1


Read = TransferOpcode.Read
Write = TransferOpcode.Write


class TransferNotify:
    """A notification delivered to the target after a transfer: ``name`` and ``msg``."""

    def __init__(self, name: str = "", msg: str = "") -> None:
        self.name = name
        self.msg = msg

    def __repr__(self) -> str:
        return f"TransferNotify(name={self.name!r}, msg={self.msg!r})"


class InnerTransferEngine:
    """The library's engine handle, for components that share one engine (the store)."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


def _transfer_timeout_ns() -> int:
    """``MC_TRANSFER_TIMEOUT`` (seconds, at least 5; default 30), as Mooncake reads it."""
    raw = os.environ.get("MC_TRANSFER_TIMEOUT")
    if raw is None:
        return 30 * 10**9
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    return max(5, seconds) * 10**9


def _uint(value: object, what: str) -> int:
    """An address or a length, checked as pybind checks ``uintptr_t``/``size_t`` arguments:
    a non-negative ``int`` (``bool`` included), else ``TypeError``."""
    if isinstance(value, int) and value >= 0:
        return int(value)
    raise TypeError(f"incompatible function arguments: {what} must be a non-negative int, not {value!r}")


def _uints(values: Sequence[int], what: str) -> List[int]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"incompatible function arguments: {what} must be a list of ints, not {values!r}")
    return [_uint(v, what) for v in values]


def _str(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"incompatible function arguments: {what} must be a str, not {value!r}")


def _opcode(value: object) -> int:
    """``TransferOpcode`` (or its integer value); anything else is a ``TypeError``, as in pybind."""
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    raise TypeError(f"incompatible function arguments: opcode must be a TransferOpcode, not {value!r}")


def _notify(value: object) -> Optional["TransferNotify"]:
    if value is None or isinstance(value, TransferNotify):
        return value
    raise TypeError(f"incompatible function arguments: notify must be a TransferNotify or None, not {value!r}")


def _requests(opcode: int, segment: int, buffers: Sequence[int], peers: Sequence[int], lengths: Sequence[int]):
    n = len(buffers)
    arr = (TransferRequest * max(n, 1))()
    for i in range(n):
        r = arr[i]
        r.opcode = opcode
        r.source = buffers[i]
        r.target_id = segment
        r.target_offset = peers[i]
        r.length = lengths[i]
    return arr, n


class TransferEngine:
    """One Transfer Engine. Create it, then :meth:`initialize` it."""

    if TYPE_CHECKING:  # the same, as a type (methods below annotate with it)
        TransferOpcode: TypeAlias = TransferOpcode
    else:
        TransferOpcode = TransferOpcode

    def __init__(self) -> None:
        self._engine: Optional[int] = None
        self._handles: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._managed: Optional[ManagedBuffers] = None
        self._timeout_ns = _transfer_timeout_ns()
        # async batches: id -> (start time, total bytes), for get_batch_transfer_status's deadline
        self._async: Dict[int, Tuple[int, int]] = {}

    # ---- life cycle ------------------------------------------------------------------------

    def initialize(self, local_hostname: str, metadata_server: str, protocol: str, device_name: str) -> int:
        """Starts the engine: ``metadata_server`` ``"P2PHANDSHAKE"`` needs no server (peers
        address this engine as ``"<host>:<get_rpc_port()>"``); ``"http://host:port/path"``,
        ``"etcd://host:port"`` (or a bare ``"host:port"``, etcd) and ``"redis://host:port"`` use
        that metadata service (etcd and redis: cargo features ``etcd`` and ``redis``, which the
        prebuilt wheel and ``pip install ./python`` have); ``protocol`` ``"tcp"``, or
        ``"rdma"`` over the NICs ``device_name`` lists (comma-separated; ``""``: every
        discovered one), which falls back to tcp with a warning where no RDMA device is usable.
        Returns 0, or -1 (the reason is logged)."""
        if "://" in metadata_server:
            metadata_type, _, domain = metadata_server.partition("://")
        elif metadata_server == P2PHANDSHAKE:
            metadata_type, domain = "", P2PHANDSHAKE
        else:
            metadata_type, domain = "etcd", metadata_server
        return self.initialize_ext(local_hostname, domain, protocol, device_name, metadata_type)

    def initialize_ext(
        self, local_hostname: str, metadata_server: str, protocol: str, device_name: str, metadata_type: str
    ) -> int:
        """Like :meth:`initialize`, with the metadata type (``"etcd"``, ``"http"``, ``"redis"``)
        given apart from the server address. Returns 0 or -1."""
        if metadata_server == P2PHANDSHAKE:
            conn = P2PHANDSHAKE
        elif "://" in metadata_server:
            conn = metadata_server
        else:
            conn = f"{metadata_type}://{metadata_server}"
        proto = protocol or ""
        if proto not in _PROTOCOLS:
            log.error("mooncake: protocol %r is not available in this build (tcp and rdma are)", proto)
            return -1
        self._close()
        # Discovery installs tcp, and rdma when this host has usable RDMA devices.
        handle = LIB.createTransferEngine(conn.encode(), local_hostname.encode(), b"", 0, 1)
        if not handle:
            log.debug("mooncake: initialize failed: %s", _lib.last_error())
            return -1
        self._engine = handle
        if proto == "tcp":
            LIB.uninstallTransport(handle, b"rdma")
        elif proto == "rdma":
            self._install_rdma(handle, device_name or "")
        self._managed = ManagedBuffers(
            lambda addr, n: LIB.registerLocalMemory(handle, addr, n, b"*", 1),
            lambda addr: LIB.unregisterLocalMemory(handle, addr),
        )
        return 0

    def _install_rdma(self, handle: int, device_name: str) -> None:
        """Makes rdma carry this engine's transfers: over the NICs ``device_name`` lists
        (comma-separated, as Mooncake's filter) or every discovered one. Without a usable
        device it stays on tcp and says so, as Mooncake does."""
        args = None
        if device_name:
            # A matrix of the listed devices only; it replaces the discovered one.
            LIB.uninstallTransport(handle, b"rdma")
            matrix = ctypes.c_char_p(self.get_local_topology(device_name).encode())
            args = (ctypes.c_void_p * 1)(ctypes.cast(matrix, ctypes.c_void_p))
        if not LIB.installTransport(handle, b"rdma", args):
            log.warning("mooncake: no usable RDMA device (%s); using tcp, as Mooncake does", _lib.last_error())

    def _close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self._managed is not None:
            self._managed.close()
            self._managed = None
        self._handles.clear()
        LIB.destroyTransferEngine(engine)

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def _handle(self) -> int:
        if self._engine is None:
            raise RuntimeError("TransferEngine is not initialized: call initialize() first")
        return self._engine

    def get_rpc_port(self) -> int:
        """The handshake (RPC) port; with P2PHANDSHAKE peers use ``"<host>:<port>"``."""
        buf = ctypes.create_string_buffer(256)
        if LIB.getLocalIpAndPort(self._handle(), buf, len(buf)) != 0:
            log.debug("mooncake: get_rpc_port: %s", _lib.last_error())
            return -1
        return int(buf.value.decode().rsplit(":", 1)[1])

    def get_engine(self) -> InnerTransferEngine:
        """The underlying engine, to share it with a store."""
        return InnerTransferEngine(self._handle())

    def get_engine_ptr(self) -> int:
        """The underlying engine handle as an integer."""
        return self._handle()

    # ---- memory ----------------------------------------------------------------------------

    def register_memory(self, buffer_addr: int, capacity: int, location: str = "*") -> int:
        """Registers ``[buffer_addr, buffer_addr + capacity)`` for transfers (peers may read
        and write it). Returns 0 or Mooncake's negative code (-7 overlap, -1 bad argument)."""
        addr, size = _uint(buffer_addr, "buffer_addr"), _uint(capacity, "capacity")
        rc = LIB.registerLocalMemory(self._handle(), addr, size, _str(location, "location").encode(), 1)
        if rc != 0:
            log.debug("mooncake: register_memory: %s", _lib.last_error())
        return rc

    def unregister_memory(self, buffer_addr: int) -> int:
        """Unregisters the region starting at ``buffer_addr``. Returns 0 or a negative code."""
        rc = LIB.unregisterLocalMemory(self._handle(), _uint(buffer_addr, "buffer_addr"))
        if rc != 0:
            log.debug("mooncake: unregister_memory: %s", _lib.last_error())
        return rc

    def batch_register_memory(self, buffer_addresses: List[int], capacities: List[int], location: str = "*") -> int:
        """Registers several regions, all or none. Returns 0 or a negative code."""
        buffer_addresses = _uints(buffer_addresses, "buffer_addresses")
        capacities = _uints(capacities, "capacities")
        if len(buffer_addresses) != len(capacities):
            log.error("mooncake: batch_register_memory: %d addresses but %d capacities",
                      len(buffer_addresses), len(capacities))
            return -1
        n = len(buffer_addresses)
        arr = (BufferEntry * max(n, 1))(*[BufferEntry(a, c) for a, c in zip(buffer_addresses, capacities)])
        rc = LIB.registerLocalMemoryBatch(self._handle(), arr, n, _str(location, "location").encode())
        if rc != 0:
            log.debug("mooncake: batch_register_memory: %s", _lib.last_error())
        return rc

    def batch_unregister_memory(self, buffer_addresses: List[int]) -> int:
        """Unregisters several regions, all or none. Returns 0 or a negative code."""
        buffer_addresses = _uints(buffer_addresses, "buffer_addresses")
        n = len(buffer_addresses)
        arr = (ctypes.c_void_p * max(n, 1))(*buffer_addresses)
        rc = LIB.unregisterLocalMemoryBatch(self._handle(), arr, n)
        if rc != 0:
            log.debug("mooncake: batch_unregister_memory: %s", _lib.last_error())
        return rc

    def allocate_managed_buffer(self, length: int) -> int:
        """A buffer of ``length`` bytes, registered and visible to peers at once; its address,
        or 0 when memory could not be had. Free it with :meth:`free_managed_buffer`."""
        self._handle()
        assert self._managed is not None
        addr = self._managed.allocate(_uint(length, "length"))
        if addr == 0:
            log.error("mooncake: allocate_managed_buffer(%d) failed", length)
        return addr

    def free_managed_buffer(self, buffer_addr: int, length: int) -> int:
        """Returns a managed buffer (``length`` as allocated). Returns 0."""
        self._handle()
        assert self._managed is not None
        return self._managed.free(_uint(buffer_addr, "buffer_addr"), _uint(length, "length"))

    def write_bytes_to_buffer(self, dest_address: int, src_ptr: bytes, length: int) -> int:
        """Copies ``length`` bytes of ``src_ptr`` to ``dest_address``. Returns 0 (-1 when
        ``src_ptr`` is shorter than ``length``)."""
        dest_address, length = _uint(dest_address, "dest_address"), _uint(length, "length")
        data = src_ptr.encode() if isinstance(src_ptr, str) else bytes(src_ptr)
        if length > len(data):
            log.error("mooncake: write_bytes_to_buffer: %d bytes asked, %d given", length, len(data))
            return -1
        ctypes.memmove(dest_address, data, length)
        return 0

    def read_bytes_from_buffer(self, source_address: int, length: int) -> bytes:
        """``length`` bytes read from ``source_address``."""
        return ctypes.string_at(_uint(source_address, "source_address"), _uint(length, "length"))

    # ---- segments --------------------------------------------------------------------------

    def _segment(self, target_hostname: str) -> Optional[int]:
        """The segment id of ``target_hostname``, opened once and cached (as Mooncake does)."""
        with self._lock:
            sid = self._handles.get(target_hostname)
            if sid is not None:
                return sid
            sid = LIB.openSegment(self._handle(), target_hostname.encode())
            if sid < 0:
                log.debug("mooncake: cannot open segment %s: %s", target_hostname, _lib.last_error())
                return None
            self._handles[target_hostname] = sid
            return sid

    def get_first_buffer_address(self, segment_name: str) -> int:
        """The address of the first buffer ``segment_name`` publishes, 0 when it has none (or
        cannot be opened)."""
        sid = self._segment(segment_name)
        if sid is None:
            return 0
        entry = BufferEntry()
        count = c_size_t(1)
        if LIB.mooncake_segment_buffers(self._handle(), sid, byref(entry), byref(count)) != 0:
            log.debug("mooncake: get_first_buffer_address: %s", _lib.last_error())
            return 0
        return int(entry.addr or 0) if count.value > 0 else 0

    def send_probe(self, peer_server_name: str) -> int:
        """Probes a peer's handshake port: 0 when it answers, non-zero otherwise."""
        if self._engine is None:
            return -1
        rc = LIB.mooncake_send_probe(self._engine, peer_server_name.encode())
        if rc != 0:
            log.debug("mooncake: probe of %s failed: %s", peer_server_name, _lib.last_error())
        return rc

    def warmup_efa_segment(self, segment_name: str) -> int:
        """EFA pre-connection; this build has no EFA: 0."""
        return 0

    def get_local_topology(self, device_name: Optional[str] = None) -> str:
        """This machine's topology as Mooncake prints it: the NIC priority matrix, one
        ``"cpu:<n>"`` entry per NUMA node with its preferred RDMA devices (those on that node)
        and the other usable ones. Like Mooncake, this is a fresh discovery that needs no
        initialised engine; ``device_name`` (comma-separated) keeps only those RDMA devices, and
        ``MC_TE_FILTERS``, ``MC_TE_FILTERS_EXCLUDE`` and ``MC_CUSTOM_TOPO_JSON`` apply."""
        names = _str(device_name, "device_name").encode() if device_name else None
        for _ in range(3):  # the text could grow between the two calls (hot-plugged device)
            n = LIB.mooncake_local_topology(None, names, None, 0)
            if n < 0:
                raise RuntimeError(f"get_local_topology failed: {_lib.last_error()}")
            buf = ctypes.create_string_buffer(n + 1)
            m = LIB.mooncake_local_topology(None, names, buf, n + 1)
            if m < 0:
                raise RuntimeError(f"get_local_topology failed: {_lib.last_error()}")
            if m <= n:
                return buf.raw[:m].decode()
        raise RuntimeError("get_local_topology: the topology kept changing")

    # ---- notifications ---------------------------------------------------------------------

    def get_notifies(self) -> List[TransferNotify]:
        """Takes the notifications received so far."""
        size = c_int(0)
        arr = LIB.getNotifsFromEngine(self._handle(), byref(size))
        out = []
        if arr and size.value > 0:
            for i in range(size.value):
                m = arr[i]
                out.append(TransferNotify((m.name or b"").decode(errors="replace"),
                                          (m.msg or b"").decode(errors="replace")))
            LIB.freeNotifsMsgBuf(arr, size.value)
        return out

    # ---- transfers -------------------------------------------------------------------------

    def _sync(
        self,
        target_hostname: str,
        buffers: Sequence[int],
        peer_buffer_addresses: Sequence[int],
        lengths: Sequence[int],
        opcode: int,
        notify: Optional[TransferNotify],
        transport_hint: str,
    ) -> int:
        # The hint names a transport; the engine picks the transport itself (initialize's
        # protocol), so the hint is accepted and unused, as the wheel (built without TENT) does.
        _str(transport_hint, "transport_hint")
        buffers = _uints(buffers, "buffers")
        peer_buffer_addresses = _uints(peer_buffer_addresses, "peer_buffer_addresses")
        lengths = _uints(lengths, "lengths")
        opcode = _opcode(opcode)
        notify = _notify(notify)
        if not (len(buffers) == len(peer_buffer_addresses) == len(lengths)):
            log.error("mooncake: buffers, peer_buffer_addresses and lengths have different size")
            return -1
        sid = self._segment(_str(target_hostname, "target_hostname"))
        if sid is None:
            return -1
        arr, n = _requests(int(opcode), sid, buffers, peer_buffer_addresses, lengths)
        note = None
        if notify is not None:
            note = NotifyMsg(notify.name.encode(), notify.msg.encode())
        timeout_ms = (self._timeout_ns + sum(lengths)) // 10**6 + 1  # Mooncake: timeout + 1 GiB/s
        rc = LIB.mooncake_transfer_sync(self._handle(), arr, n, byref(note) if note is not None else None, timeout_ms)
        if rc != 0:
            log.debug("mooncake: transfer to %s failed: %s", target_hostname, _lib.last_error())
            return -1
        return 0

    def transfer_sync_write(
        self, target_hostname: str, buffer: int, peer_buffer_address: int, length: int, transport_hint: str = ""
    ) -> int:
        """Writes ``length`` bytes from ``buffer`` to ``peer_buffer_address`` of the peer and
        waits. Returns 0 or -1."""
        return self._sync(target_hostname, [buffer], [peer_buffer_address], [length], Write, None, transport_hint)

    def transfer_sync_read(
        self, target_hostname: str, buffer: int, peer_buffer_address: int, length: int, transport_hint: str = ""
    ) -> int:
        """Reads ``length`` bytes from the peer's ``peer_buffer_address`` into ``buffer`` and
        waits. Returns 0 or -1."""
        return self._sync(target_hostname, [buffer], [peer_buffer_address], [length], Read, None, transport_hint)

    def transfer_sync(
        self,
        target_hostname: str,
        buffer: int,
        peer_buffer_address: int,
        length: int,
        opcode: TransferOpcode,
        notify: Optional[TransferNotify] = None,
        transport_hint: str = "",
    ) -> int:
        """One synchronous transfer in direction ``opcode``; with ``notify`` the peer receives
        it after the data. Returns 0 or -1."""
        return self._sync(target_hostname, [buffer], [peer_buffer_address], [length], opcode, notify, transport_hint)

    def batch_transfer_sync_write(
        self,
        target_hostname: str,
        buffers: List[int],
        peer_buffer_addresses: List[int],
        lengths: List[int],
        transport_hint: str = "",
    ) -> int:
        """Writes every ``buffers[i]`` to ``peer_buffer_addresses[i]`` (``lengths[i]`` bytes)
        as one batch and waits. Returns 0 or -1."""
        return self._sync(target_hostname, buffers, peer_buffer_addresses, lengths, Write, None, transport_hint)

    def batch_transfer_sync_read(
        self,
        target_hostname: str,
        buffers: List[int],
        peer_buffer_addresses: List[int],
        lengths: List[int],
        transport_hint: str = "",
    ) -> int:
        """Reads every ``peer_buffer_addresses[i]`` into ``buffers[i]`` as one batch and
        waits. Returns 0 or -1."""
        return self._sync(target_hostname, buffers, peer_buffer_addresses, lengths, Read, None, transport_hint)

    def batch_transfer_sync(
        self,
        target_hostname: str,
        buffers: List[int],
        peer_buffer_addresses: List[int],
        lengths: List[int],
        opcode: TransferOpcode,
        notify: Optional[TransferNotify] = None,
        transport_hint: str = "",
    ) -> int:
        """A synchronous batch in direction ``opcode``, with an optional notification sent
        after all of it. Returns 0 or -1."""
        return self._sync(target_hostname, buffers, peer_buffer_addresses, lengths, opcode, notify, transport_hint)

    def _submit(
        self,
        target_hostname: str,
        buffers: Sequence[int],
        peer_buffer_addresses: Sequence[int],
        lengths: Sequence[int],
        opcode: int,
        transport_hint: str,
    ) -> int:
        _str(transport_hint, "transport_hint")
        buffers = _uints(buffers, "buffers")
        peer_buffer_addresses = _uints(peer_buffer_addresses, "peer_buffer_addresses")
        lengths = _uints(lengths, "lengths")
        opcode = _opcode(opcode)
        sid = self._segment(_str(target_hostname, "target_hostname"))
        if sid is None:
            return 0
        if not (len(buffers) == len(peer_buffer_addresses) == len(lengths)):
            log.error("mooncake: buffers, peer_buffer_addresses and lengths have different size")
            return 0
        engine = self._handle()
        arr, n = _requests(int(opcode), sid, buffers, peer_buffer_addresses, lengths)
        batch = LIB.allocateBatchID(engine, n)
        if batch == _INVALID_BATCH:
            log.debug("mooncake: cannot allocate a batch: %s", _lib.last_error())
            return 0
        rc = LIB.submitTransfer(engine, batch, arr, n)
        if rc != 0:
            log.debug("mooncake: submit to %s failed: %s", target_hostname, _lib.last_error())
            LIB.freeBatchID(engine, batch)
            return 0
        self._async[batch] = (time.monotonic_ns(), sum(lengths))
        return batch

    def batch_transfer_async_write(
        self,
        target_hostname: str,
        buffers: List[int],
        peer_buffer_addresses: List[int],
        lengths: List[int],
        transport_hint: str = "",
    ) -> int:
        """Submits a batch of writes; returns its id, or 0 when submission failed."""
        return self._submit(target_hostname, buffers, peer_buffer_addresses, lengths, Write, transport_hint)

    def batch_transfer_async_read(
        self,
        target_hostname: str,
        buffers: List[int],
        peer_buffer_addresses: List[int],
        lengths: List[int],
        transport_hint: str = "",
    ) -> int:
        """Submits a batch of reads; returns its id, or 0 when submission failed."""
        return self._submit(target_hostname, buffers, peer_buffer_addresses, lengths, Read, transport_hint)

    def batch_transfer_async(
        self,
        target_hostname: str,
        buffers: List[int],
        peer_buffer_addresses: List[int],
        lengths: List[int],
        opcode: TransferOpcode,
        transport_hint: str = "",
    ) -> int:
        """Submits a batch in direction ``opcode``; returns its id, or 0."""
        return self._submit(target_hostname, buffers, peer_buffer_addresses, lengths, opcode, transport_hint)

    def get_batch_transfer_status(self, batch_ids: List[int]) -> int:
        """Waits for every batch (each up to ``MC_TRANSFER_TIMEOUT`` plus 1 ns per byte from its
        submission) and frees them. Returns 0 when all completed, -1 when one failed or timed
        out (the others are released then)."""
        engine = self._handle()
        pending = list(batch_ids)
        while pending:
            batch = pending.pop(0)
            start, total = self._async.pop(batch, (time.monotonic_ns(), 0))
            left_ns = start + self._timeout_ns + total - time.monotonic_ns()
            rc = LIB.mooncake_wait_batch(engine, batch, max(left_ns, 0) // 10**6)
            if rc == 0:
                LIB.freeBatchID(engine, batch)
                continue
            log.debug("mooncake: batch %d: %s", batch, _lib.last_error())
            for b in [batch] + pending:
                self._async.pop(b, None)
                LIB.mooncake_release_batch(engine, b)
            return -1
        return 0

    def transfer_submit_write(
        self, target_hostname: str, buffer: int, peer_buffer_address: int, length: int, transport_hint: str = ""
    ) -> int:
        """Submits one write; returns its batch id (poll with :meth:`transfer_check_status`),
        or 0 when submission failed."""
        return self._submit(target_hostname, [buffer], [peer_buffer_address], [length], Write, transport_hint)

    def transfer_check_status(self, batch_id: int) -> int:
        """1 when the transfer of ``batch_id`` completed (the batch is freed), 0 while in
        flight, -1 when it failed (freed), -2 on timeout."""
        engine = self._handle()
        st = TransferStatus()
        if LIB.getTransferStatus(engine, batch_id, 0, byref(st)) != 0:
            log.debug("mooncake: transfer_check_status(%d): %s", batch_id, _lib.last_error())
            return -1
        if st.status == _STATUS_COMPLETED:
            self._async.pop(batch_id, None)
            LIB.freeBatchID(engine, batch_id)
            return 1
        if st.status == _STATUS_FAILED:
            self._async.pop(batch_id, None)
            LIB.freeBatchID(engine, batch_id)
            return -1
        if st.status == _STATUS_TIMEOUT:
            return -2
        return 0
