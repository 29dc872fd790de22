//! Memory registration of `transfer_engine_c.h`.

use std::ffi::{c_char, c_int, c_void};

use super::args::engine_ref;
use super::types::{buffer_entry_t, transfer_engine_t};
use crate::ffi::args::{c_slice, c_str};
use crate::ffi::boundary::{EngineErr, ffi_fn};

/// Registers `[addr, addr + length)`. `location`: `"cpu:<n>"`, `"cuda:<n>"` or `"*"` (read
/// during the call); `"*"` is resolved to the NUMA node of the region's first page, as
/// Mooncake's RDMA transport does (`"*"` stays while that page was never touched). The tcp
/// descriptor publishes one buffer per registration, named after this engine, whatever the
/// location. With `remote_accessible` non-zero the region is published and peers may
/// read and write it; otherwise it may only be the local side of transfers. The memory stays
/// owned by the caller and must stay valid until `unregisterLocalMemory`.
/// Returns 0, `ERR_ADDRESS_OVERLAPPED` when it overlaps a registered region, or
/// `ERR_INVALID_ARGUMENT` (NULL engine/addr/location, zero length, range wraps around).
/// Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn registerLocalMemory(
    engine: transfer_engine_t,
    addr: *mut c_void,
    length: usize,
    location: *const c_char,
    remote_accessible: c_int,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated string read during the call.
        let location = unsafe { c_str(location, "location")? };
        engine.register_memory(addr as u64, length as u64, location, remote_accessible != 0)
    })
}

/// Unregisters the region that starts at `addr`. Returns once no transfer touches it any more:
/// from then on peers cannot read or write it. Returns 0, `ERR_ADDRESS_NOT_REGISTERED`, or
/// `ERR_INVALID_ARGUMENT` for a NULL engine. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn unregisterLocalMemory(engine: transfer_engine_t, addr: *mut c_void) -> c_int {
    ffi_fn!(EngineErr, { engine_ref(engine)?.unregister_memory(addr as u64) })
}

/// Registers `buffer_len` remotely accessible regions from `buffer_list` (read during the call),
/// all of them or none. Returns 0, `ERR_ADDRESS_OVERLAPPED` (with a registered region or within
/// the list), or `ERR_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn registerLocalMemoryBatch(
    engine: transfer_engine_t,
    buffer_list: *mut buffer_entry_t,
    buffer_len: usize,
    location: *const c_char,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated string read during the call.
        let location = unsafe { c_str(location, "location")? };
        // SAFETY: the caller passes `buffer_len` readable entries.
        let list = unsafe { c_slice(buffer_list as *const buffer_entry_t, buffer_len, "buffer_list")? };
        let entries: Vec<(u64, u64)> = list.iter().map(|b| (b.addr as u64, b.length as u64)).collect();
        engine.register_memory_batch(&entries, location)
    })
}

/// Unregisters `addr_len` regions (addresses read during the call): all of them, or none when
/// one is not registered (`ERR_ADDRESS_NOT_REGISTERED`). Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unregisterLocalMemoryBatch(
    engine: transfer_engine_t,
    addr_list: *mut *mut c_void,
    addr_len: usize,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: the caller passes `addr_len` readable pointers.
        let list = unsafe { c_slice(addr_list as *const *mut c_void, addr_len, "addr_list")? };
        let addrs: Vec<u64> = list.iter().map(|&a| a as u64).collect();
        engine.unregister_memory_batch(&addrs)
    })
}
