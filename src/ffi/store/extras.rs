//! Our additions to the Store interface, declared in `mooncake.h`: Mooncake's store codes as
//! constants, and what Mooncake's Python module does beyond `store_c.h` (upsert and soft-pin
//! TTLs, multi-part and batched puts, owned get buffers, ranged reads, close, dummy clients),
//! so that `mooncake.store` is one library call per method.
#![allow(non_camel_case_types)] // C names, as the rest of the C interface spells them.

use std::ffi::{c_char, c_int, c_void};

use super::args::{
    byte_slices, code_of, keys_arg, replica_config, results_arg, slice_arg, slot_ref, store_ref, str_arg, write_results,
};
use super::ops::{PutOptions, batch_put_from, check_len, install, put_from, put_parts};
use super::types::{mooncake_replicate_config_t, mooncake_store_t};
use crate::ffi::boundary::{StoreCodes, ffi_fn};
use crate::ffi::codes::store_code;
use crate::store::{ByteRange, ErrorCode, Store, StoreError};

/// Internal error (also: a bug caught at the library boundary).
pub const MOONCAKE_STORE_INTERNAL_ERROR: c_int = -1;
/// A buffer too small for what had to be written into it.
pub const MOONCAKE_STORE_BUFFER_OVERFLOW: c_int = -10;
/// The segment named does not exist (not mounted).
pub const MOONCAKE_STORE_SEGMENT_NOT_FOUND: c_int = -101;
/// The segment is mounted already.
pub const MOONCAKE_STORE_SEGMENT_ALREADY_EXISTS: c_int = -102;
/// The master does not know this client (it expired or the master restarted).
pub const MOONCAKE_STORE_CLIENT_NOT_FOUND: c_int = -103;
/// No space: no segment has room for the value (after eviction).
pub const MOONCAKE_STORE_NO_AVAILABLE_HANDLE: c_int = -200;
/// The key is not valid.
pub const MOONCAKE_STORE_INVALID_KEY: c_int = -400;
/// An invalid argument: NULL pointer, empty key or value, a buffer too small for the value, a
/// store not set up, `replica_num` 0, a TTL without soft pin, a bad regex.
pub const MOONCAKE_STORE_INVALID_PARAMS: c_int = -600;
/// The client is not allowed to do this (for example, end another client's put).
pub const MOONCAKE_STORE_ILLEGAL_CLIENT: c_int = -601;
/// A write to a replica failed or was not allowed.
pub const MOONCAKE_STORE_INVALID_WRITE: c_int = -700;
/// A read of a replica failed or was not allowed.
pub const MOONCAKE_STORE_INVALID_READ: c_int = -701;
/// The replica is not valid.
pub const MOONCAKE_STORE_INVALID_REPLICA: c_int = -702;
/// The object is still being written (its put has not ended).
pub const MOONCAKE_STORE_REPLICA_IS_NOT_READY: c_int = -703;
/// No object has this key.
pub const MOONCAKE_STORE_OBJECT_NOT_FOUND: c_int = -704;
/// An object has this key already.
pub const MOONCAKE_STORE_OBJECT_ALREADY_EXISTS: c_int = -705;
/// The object is under a read lease: removing it needs `force`.
pub const MOONCAKE_STORE_OBJECT_HAS_LEASE: c_int = -706;
/// The read lease ended before the read did: the bytes cannot be trusted.
pub const MOONCAKE_STORE_LEASE_EXPIRED: c_int = -707;
/// Moving the bytes failed (a peer went away, a connection broke).
pub const MOONCAKE_STORE_TRANSFER_FAIL: c_int = -800;
/// The master could not be reached or answered nonsense.
pub const MOONCAKE_STORE_RPC_FAIL: c_int = -900;
/// The master did not answer in time.
pub const MOONCAKE_STORE_RPC_TIMEOUT: c_int = -901;
/// Not available in the master's current mode (for example, a standby master).
pub const MOONCAKE_STORE_UNAVAILABLE_IN_CURRENT_MODE: c_int = -1011;
/// The operation is not supported by this build.
pub const MOONCAKE_STORE_NOT_SUPPORTED: c_int = -1012;

/// A value read by `mooncake_store_get_buffer`: owned by the caller, freed with
/// `mooncake_store_buffer_free`. Opaque; read it with `mooncake_store_buffer_data` and
/// `mooncake_store_buffer_size`.
pub struct mooncake_store_buffer {
    data: Vec<u8>,
}
pub type mooncake_store_buffer_t = mooncake_store_buffer;

/// One range of `mooncake_store_get_into_ranges`: `size` bytes from offset `src_offset` of the
/// object to `buffer + dst_offset`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mooncake_store_range {
    pub dst_offset: u64,
    pub src_offset: u64,
    pub size: u64,
}
pub type mooncake_store_range_t = mooncake_store_range;

/// `mooncake_store_put` with Mooncake's Python options: `soft_pin_ttl_ms` (< 0: none; a TTL
/// needs `config->with_soft_pin`, else `INVALID_PARAMS`) and `upsert` (non-zero: replace an
/// existing object, Mooncake's `upsert`; zero: an existing key keeps its value and 0 is
/// returned). `value` is copied during the call. Returns 0 or a negative code (see
/// `mooncake_store_put`). Thread-safe.
///
/// # Safety
/// `key` NULL or a NUL-terminated string; `value` readable for `size` bytes; `config` NULL or
/// a valid config; all read during the call only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put_ex(
    store: mooncake_store_t,
    key: *const c_char,
    value: *const c_void,
    size: usize,
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
    upsert: c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        // SAFETY: forwarded caller guarantees (`value` readable for `size` bytes); `value`
        // and `size` are the one part and its size, on this stack frame.
        unsafe { put_parts(store, key, &value, &size, 1, PutOptions { config, soft_pin_ttl_ms, upsert }) }
    })
}

/// Stores the concatenation of `count` parts (`parts[i]`, `sizes[i]` bytes each, copied during
/// the call) as one value under `key` (Mooncake's `put_parts`). `soft_pin_ttl_ms` and `upsert`
/// as in `mooncake_store_put_ex`. Returns 0 or a negative code; an empty value (no bytes in
/// all) is `INVALID_PARAMS`. Thread-safe.
///
/// # Safety
/// `parts` and `sizes` must hold `count` entries, each part readable for its size; `key` NULL
/// or a NUL-terminated string; `config` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put_parts(
    store: mooncake_store_t,
    key: *const c_char,
    parts: *mut *const c_void,
    sizes: *const usize,
    count: usize,
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
    upsert: c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        // SAFETY: forwarded caller guarantees.
        unsafe { put_parts(store, key, parts, sizes, count, PutOptions { config, soft_pin_ttl_ms, upsert }) }
    })
}

/// Stores `count` values (`values[i]`, `sizes[i]` bytes, copied during the call) under
/// `keys[i]` in one batch. Writes each key's code (0 or negative) into `results_out[i]` and
/// returns 0; returns a negative code (nothing written) for wrong arguments. `soft_pin_ttl_ms`
/// and `upsert` as in `mooncake_store_put_ex`. Thread-safe.
///
/// # Safety
/// `keys`, `values`, `sizes` must hold `count` entries (keys NUL-terminated, values readable
/// for their sizes); `results_out` writable for `count` ints; `config` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put_batch(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    values: *mut *const c_void,
    sizes: *const usize,
    count: usize,
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
    upsert: c_int,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        if values.is_null() || sizes.is_null() {
            return Err(StoreError::invalid("values or sizes is NULL"));
        }
        // SAFETY: forwarded caller guarantees.
        let (keys, config, values, sizes) = unsafe {
            (
                keys_arg(keys, count)?,
                replica_config(config, soft_pin_ttl_ms)?,
                slice_arg(values, count, "values")?,
                slice_arg(sizes, count, "sizes")?,
            )
        };
        // SAFETY: forwarded caller guarantee: each value is readable for its size.
        let values = unsafe { byte_slices(values, sizes, "values")? };
        let items: Vec<(&str, &[u8])> = keys.into_iter().zip(values).collect();
        let results: Vec<c_int> =
            client.put_batch(&items, &config, upsert != 0).iter().map(|r| code_of(name, r)).collect();
        check_len(results.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}

/// `mooncake_store_put_from` with `soft_pin_ttl_ms` and `upsert` as in
/// `mooncake_store_put_ex`. Thread-safe.
///
/// # Safety
/// As `mooncake_store_put_from`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put_from_ex(
    store: mooncake_store_t,
    key: *const c_char,
    buffer: *mut c_void,
    size: usize,
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
    upsert: c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        // SAFETY: forwarded caller guarantees.
        unsafe { put_from(store, key, buffer, size, PutOptions { config, soft_pin_ttl_ms, upsert }) }
    })
}

/// `mooncake_store_batch_put_from` with `soft_pin_ttl_ms` and `upsert` as in
/// `mooncake_store_put_ex`. Thread-safe.
///
/// # Safety
/// As `mooncake_store_batch_put_from`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_put_from_ex(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    buffers: *mut *mut c_void,
    sizes: *const usize,
    count: usize,
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
    upsert: c_int,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        // SAFETY: forwarded caller guarantees.
        unsafe {
            batch_put_from(
                name,
                store,
                keys,
                buffers,
                sizes,
                count,
                PutOptions { config, soft_pin_ttl_ms, upsert },
                results_out,
            )
        }
    })
}

/// Reads the value of `key` into a new buffer and stores it in `*out` (NULL on failure).
/// Returns the value's length, or `OBJECT_NOT_FOUND` (-704) or another negative code. The
/// buffer is owned by the caller: free it with `mooncake_store_buffer_free`. Grants a read
/// lease. Thread-safe.
///
/// # Safety
/// `key` NULL or a NUL-terminated string; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_get_buffer(
    store: mooncake_store_t,
    key: *const c_char,
    out: *mut *mut mooncake_store_buffer_t,
) -> i64 {
    ffi_fn!(StoreCodes, {
        if out.is_null() {
            return Err(StoreError::invalid("out is NULL"));
        }
        // SAFETY: `out` is writable (caller guarantee).
        unsafe { *out = std::ptr::null_mut() };
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let key = unsafe { str_arg(key, "key")? };
        let data = client.get(key)?;
        let len = data.len() as i64;
        // SAFETY: as above.
        unsafe { *out = Box::into_raw(Box::new(mooncake_store_buffer { data })) };
        Ok(len)
    })
}

/// `mooncake_store_get_buffer` for `count` keys: `out[i]` gets a buffer (or NULL) and
/// `results_out[i]` its length (or the key's negative code). Returns 0, or a negative code
/// (nothing written) for wrong arguments. Each non-NULL `out[i]` is owned by the caller.
/// Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `out` and `results_out` writable for
/// `count` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_buffer(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
    out: *mut *mut mooncake_store_buffer_t,
    results_out: *mut i64,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        results_arg(out, count)?;
        // SAFETY: forwarded caller guarantee.
        let keys = unsafe { keys_arg(keys, count)? };
        let answers = client.get_batch(&keys);
        check_len(answers.len(), count)?;
        for (i, answer) in answers.into_iter().enumerate() {
            let (buf, n) = match answer {
                Ok(data) => {
                    let n = data.len() as i64;
                    (Box::into_raw(Box::new(mooncake_store_buffer { data })), n)
                }
                Err(e) => {
                    tracing::debug!("{name}: {e}");
                    (std::ptr::null_mut(), i64::from(store_code(e.code)))
                }
            };
            // SAFETY: `i < count`; both arrays are writable for `count` entries.
            unsafe {
                out.add(i).write(buf);
                results_out.add(i).write(n);
            }
        }
        Ok(())
    })
}

/// The bytes of `buffer` (valid until `mooncake_store_buffer_free`), or NULL for a NULL
/// buffer. Thread-safe for concurrent readers.
///
/// # Safety
/// `buffer` must be NULL or a live buffer from `mooncake_store_get_buffer`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_buffer_data(buffer: *const mooncake_store_buffer_t) -> *const c_void {
    ffi_fn!(StoreCodes, {
        if buffer.is_null() {
            return Ok(std::ptr::null());
        }
        // SAFETY: a live buffer (caller guarantee).
        Ok(unsafe { (*buffer).data.as_ptr() as *const c_void })
    })
}

/// The length of `buffer` in bytes (0 for NULL). Thread-safe for concurrent readers.
///
/// # Safety
/// `buffer` must be NULL or a live buffer from `mooncake_store_get_buffer`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_buffer_size(buffer: *const mooncake_store_buffer_t) -> usize {
    ffi_fn!(StoreCodes, else 0, {
        if buffer.is_null() {
            return Ok(0);
        }
        // SAFETY: a live buffer (caller guarantee).
        Ok(unsafe { (*buffer).data.len() })
    })
}

/// Frees a buffer of `mooncake_store_get_buffer`; NULL is a no-op. It must not be used
/// afterwards. Not to be called while another thread reads the buffer.
///
/// # Safety
/// `buffer` must be NULL or a live buffer from `mooncake_store_get_buffer`, freed only once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_buffer_free(buffer: *mut mooncake_store_buffer_t) {
    ffi_fn!(StoreCodes, {
        if !buffer.is_null() {
            // SAFETY: made by `Box::into_raw` in this file, freed once (caller guarantee).
            drop(unsafe { Box::from_raw(buffer) });
        }
        Ok(())
    })
}

/// Reads `count` byte ranges of `key`'s value into `buffer`, which must be registered with
/// `mooncake_store_register_buffer` (the registration bounds the ranges; each range outside
/// it is `INVALID_PARAMS`, as Mooncake's `get_into_ranges` answers): range i moves
/// `ranges[i].size` bytes from offset `ranges[i].src_offset` of the value to
/// `buffer + ranges[i].dst_offset`. Writes each range's
/// byte count or negative code (`INVALID_PARAMS` for a range outside the value) into
/// `results_out[i]` and returns 0; returns the key's negative code (`OBJECT_NOT_FOUND`, ...,
/// with every `results_out[i]` set to it) when the object cannot be read, or a negative code
/// (nothing written) for wrong arguments. Grants a read lease. Thread-safe.
///
/// # Safety
/// `key` NULL or a NUL-terminated string; `ranges` readable and `results_out` writable for
/// `count` entries; every destination range writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_get_into_ranges(
    store: mooncake_store_t,
    buffer: *mut c_void,
    key: *const c_char,
    ranges: *const mooncake_store_range_t,
    count: usize,
    results_out: *mut i64,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let (key, ranges) = unsafe { (str_arg(key, "key")?, slice_arg(ranges, count, "ranges")?) };
        if buffer.is_null() && count > 0 {
            return Err(StoreError::invalid("buffer is NULL"));
        }
        let ranges: Vec<ByteRange> =
            ranges.iter().map(|r| ByteRange { dst: r.dst_offset, src: r.src_offset, len: r.size }).collect();
        let results: Vec<i64> = match client.get_into_ranges(buffer as u64, key, &ranges) {
            Ok(per_range) => per_range
                .into_iter()
                .map(|r| match r {
                    Ok(n) => i64::try_from(n).unwrap_or(i64::from(store_code(ErrorCode::InternalError))),
                    Err(e) => i64::from(store_code(e.code)),
                })
                .collect(),
            Err(e) => {
                let code = i64::from(store_code(e.code));
                // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
                unsafe { write_results(results_out, &vec![code; count]) };
                return Err(e);
            }
        };
        check_len(results.len(), count)?;
        // SAFETY: as above.
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}

/// Closes the client: withdraws its segment from the pool (objects stored only there are
/// gone), stops its heartbeats and its Transfer Engine. The handle stays valid (health check
/// 1; other calls `INVALID_PARAMS`) until `mooncake_store_destroy`, and may be set up again.
/// Idempotent; a handle never set up returns 0. Returns 0 or a negative code. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_close(store: mooncake_store_t) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = slot_ref(store)?.client_now();
        match client {
            Some(c) => c.close(),
            None => Ok(()),
        }
    })
}

/// Mooncake's `setup_dummy`: makes the handle a dummy client of the `mooncake_client` at
/// `server_address` (`"host:port"`, its `--port`, on this host), which owns the segment and the
/// Transfer Engine; every store call then goes through it. `mem_pool_size` bounds what
/// `mooncake_store_alloc_from_mem_pool` hands out (0: no bound); `local_buffer_size` is the
/// staging memory shared with it. A handle already set up is set up again (the old client is
/// closed). Returns 0, `RPC_FAIL` (-900) when no `mooncake_client` serves that port here, or
/// another negative code. `server_address` is read during the call. Thread-safe.
///
/// # Safety
/// `server_address` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_setup_dummy(
    store: mooncake_store_t,
    mem_pool_size: u64,
    local_buffer_size: u64,
    server_address: *const c_char,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let slot = slot_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let server = unsafe { str_arg(server_address, "server_address")? };
        install(&slot, Store::setup_dummy(mem_pool_size, local_buffer_size, server)?);
        Ok(())
    })
}

/// For a dummy client: `size` bytes of memory shared with its `mooncake_client`, for zero-copy
/// `put_from` / `get_into` (register it with `mooncake_store_register_buffer` first, as with
/// Mooncake). Writes the address into `*addr_out` (0 on failure) and returns 0, or
/// `NOT_SUPPORTED` (-1012) for a real client, `INVALID_PARAMS` past `mem_pool_size`, or
/// another negative code. The memory stays valid until the handle is closed. Thread-safe.
///
/// # Safety
/// `addr_out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_alloc_from_mem_pool(
    store: mooncake_store_t,
    size: u64,
    addr_out: *mut u64,
) -> c_int {
    ffi_fn!(StoreCodes, {
        if addr_out.is_null() {
            return Err(StoreError::invalid("addr_out is NULL"));
        }
        // SAFETY: writable (caller guarantee).
        unsafe { *addr_out = 0 };
        let addr = store_ref(store)?.alloc_from_mem_pool(size)?;
        // SAFETY: as above.
        unsafe { *addr_out = addr };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_code_has_its_constant() {
        let constants = [
            (ErrorCode::InternalError, MOONCAKE_STORE_INTERNAL_ERROR),
            (ErrorCode::BufferOverflow, MOONCAKE_STORE_BUFFER_OVERFLOW),
            (ErrorCode::SegmentNotFound, MOONCAKE_STORE_SEGMENT_NOT_FOUND),
            (ErrorCode::SegmentAlreadyExists, MOONCAKE_STORE_SEGMENT_ALREADY_EXISTS),
            (ErrorCode::ClientNotFound, MOONCAKE_STORE_CLIENT_NOT_FOUND),
            (ErrorCode::NoAvailableHandle, MOONCAKE_STORE_NO_AVAILABLE_HANDLE),
            (ErrorCode::InvalidKey, MOONCAKE_STORE_INVALID_KEY),
            (ErrorCode::InvalidParams, MOONCAKE_STORE_INVALID_PARAMS),
            (ErrorCode::IllegalClient, MOONCAKE_STORE_ILLEGAL_CLIENT),
            (ErrorCode::InvalidWrite, MOONCAKE_STORE_INVALID_WRITE),
            (ErrorCode::InvalidRead, MOONCAKE_STORE_INVALID_READ),
            (ErrorCode::InvalidReplica, MOONCAKE_STORE_INVALID_REPLICA),
            (ErrorCode::ReplicaIsNotReady, MOONCAKE_STORE_REPLICA_IS_NOT_READY),
            (ErrorCode::ObjectNotFound, MOONCAKE_STORE_OBJECT_NOT_FOUND),
            (ErrorCode::ObjectAlreadyExists, MOONCAKE_STORE_OBJECT_ALREADY_EXISTS),
            (ErrorCode::ObjectHasLease, MOONCAKE_STORE_OBJECT_HAS_LEASE),
            (ErrorCode::LeaseExpired, MOONCAKE_STORE_LEASE_EXPIRED),
            (ErrorCode::TransferFail, MOONCAKE_STORE_TRANSFER_FAIL),
            (ErrorCode::RpcFail, MOONCAKE_STORE_RPC_FAIL),
            (ErrorCode::RpcTimeout, MOONCAKE_STORE_RPC_TIMEOUT),
            (ErrorCode::UnavailableInCurrentMode, MOONCAKE_STORE_UNAVAILABLE_IN_CURRENT_MODE),
            (ErrorCode::NotSupported, MOONCAKE_STORE_NOT_SUPPORTED),
            (ErrorCode::ReplicaNotFound, super::super::tasks::MOONCAKE_STORE_REPLICA_NOT_FOUND),
            (ErrorCode::ObjectHasReplicationTask, super::super::tasks::MOONCAKE_STORE_OBJECT_HAS_REPLICATION_TASK),
            (ErrorCode::UnavailableInCurrentStatus, super::super::tasks::MOONCAKE_STORE_UNAVAILABLE_IN_CURRENT_STATUS),
            (ErrorCode::TaskNotFound, super::super::tasks::MOONCAKE_STORE_TASK_NOT_FOUND),
            (ErrorCode::TaskPendingLimitExceeded, super::super::tasks::MOONCAKE_STORE_TASK_PENDING_LIMIT_EXCEEDED),
        ];
        for code in ErrorCode::ALL {
            let found = constants.iter().find(|(c, _)| *c == code);
            let (_, value) = found.unwrap_or_else(|| panic!("no MOONCAKE_STORE_{} constant", code.name()));
            assert_eq!(*value, store_code(code), "MOONCAKE_STORE_{}", code.name());
        }
        assert_eq!(constants.len(), ErrorCode::ALL.len());
    }
}
