//! What the store's entry points share: the handle table and the argument conversions (C
//! strings, arrays, configs, result arrays) with the store's codes. The entry points are in
//! `store_c.rs` and `extras.rs`.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use parking_lot::RwLock;

use super::types::{mooncake_replicate_config_t, mooncake_store_t};
use crate::ffi::args::{c_slice, c_str};
use crate::ffi::boundary::FfiError;
use crate::ffi::codes::store_code;
use crate::ffi::handles::HandleTable;
use crate::store::{KeyBuffer, ReplicaConfig, Store, StoreError, StoreResult};

/// What a handle holds: nothing until `mooncake_store_setup`, then a client.
#[derive(Default)]
pub(crate) struct StoreSlot {
    pub(crate) client: RwLock<Option<Arc<Store>>>,
}

impl StoreSlot {
    /// The client it holds now, if set up.
    pub(crate) fn client_now(&self) -> Option<Arc<Store>> {
        self.client.read().clone()
    }
}

/// Live handles: a NULL, stale or foreign pointer is `INVALID_PARAMS` rather than a crash.
pub(crate) static STORES: HandleTable<StoreSlot> = HandleTable::new("store", "a live store handle");

/// An argument error of the shared helpers, as the store's `INVALID_PARAMS`.
pub(crate) fn params(e: FfiError) -> StoreError {
    StoreError::invalid(e.message)
}

/// The slot behind `handle`.
pub(crate) fn slot_ref(handle: mooncake_store_t) -> StoreResult<Arc<StoreSlot>> {
    Ok(STORES.get(handle)?)
}

/// The client behind `handle`; one that is not set up is `INVALID_PARAMS`.
pub(crate) fn store_ref(handle: mooncake_store_t) -> StoreResult<Arc<Store>> {
    slot_ref(handle)?
        .client_now()
        .ok_or_else(|| StoreError::invalid("the store is not set up (call mooncake_store_setup first)"))
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or a NUL-terminated string readable during the call.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> StoreResult<&'a str> {
    // SAFETY: forwarded caller guarantee.
    unsafe { c_str(ptr, what) }.map_err(params)
}

/// A string argument that may be NULL, which means `default`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn str_or<'a>(ptr: *const c_char, what: &str, default: &'a str) -> StoreResult<&'a str> {
    if ptr.is_null() {
        return Ok(default);
    }
    // SAFETY: forwarded caller guarantee.
    unsafe { str_arg(ptr, what) }
}

/// `count` elements at `ptr` (NULL is allowed only for `count == 0`).
///
/// # Safety
/// When `count > 0`, `ptr` must be NULL or point to `count` readable elements.
pub(crate) unsafe fn slice_arg<'a, T>(ptr: *const T, count: usize, what: &str) -> StoreResult<&'a [T]> {
    if ptr.is_null() && count > 0 {
        return Err(StoreError::invalid(format!("{what} is NULL but count is {count}")));
    }
    // SAFETY: forwarded caller guarantee.
    unsafe { c_slice(ptr, count, what) }.map_err(params)
}

/// The `count` keys at `keys`, each a NUL-terminated UTF-8 string.
///
/// # Safety
/// `keys` must be NULL or point to `count` pointers, each NULL or a NUL-terminated string.
pub(crate) unsafe fn keys_arg<'a>(keys: *const *const c_char, count: usize) -> StoreResult<Vec<&'a str>> {
    if keys.is_null() {
        return Err(StoreError::invalid("keys is NULL"));
    }
    // SAFETY: forwarded caller guarantee.
    let ptrs = unsafe { slice_arg(keys, count, "keys")? };
    ptrs.iter()
        .enumerate()
        // SAFETY: each entry is NULL or a NUL-terminated string (caller guarantee).
        .map(|(i, &p)| unsafe { str_arg(p, &format!("keys[{i}]")) })
        .collect()
}

/// A writable results array of `count` entries (NULL only when `count == 0`).
pub(crate) fn results_arg<T>(ptr: *mut T, count: usize) -> StoreResult<()> {
    if ptr.is_null() {
        return Err(StoreError::invalid("results_out is NULL"));
    }
    if count > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(StoreError::invalid(format!("count {count} is too large")));
    }
    Ok(())
}

/// Writes `values` into the caller's results array.
///
/// # Safety
/// `out` must be writable for `values.len()` elements (checked non-NULL by [`results_arg`]).
pub(crate) unsafe fn write_results<T: Copy>(out: *mut T, values: &[T]) {
    // SAFETY: the caller's array holds `values.len()` writable elements.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
}

/// Converts a C config; NULL means one replica, no pin. `soft_pin_ttl_ms` < 0 means none; a
/// TTL needs `with_soft_pin` (Mooncake's `INVALID_PARAMS` otherwise).
///
/// # Safety
/// `config` must be NULL or point to a readable config whose `preferred_segments` holds
/// `preferred_segments_count` NUL-terminated strings.
pub(crate) unsafe fn replica_config(
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
) -> StoreResult<ReplicaConfig> {
    let mut out = ReplicaConfig { replica_num: 1, ..ReplicaConfig::default() };
    if !config.is_null() {
        // SAFETY: non-NULL and readable (caller guarantee).
        let c = unsafe { &*config };
        out.replica_num = match u32::try_from(c.replica_num) {
            Ok(0) | Err(_) => {
                return Err(StoreError::invalid(format!("replica_num {} is not in 1..=2^32-1", c.replica_num)));
            }
            Ok(n) => n,
        };
        out.soft_pin = c.with_soft_pin != 0;
        out.hard_pin = c.with_hard_pin != 0;
        // SAFETY: forwarded caller guarantee.
        let names = unsafe { slice_arg(c.preferred_segments, c.preferred_segments_count, "preferred_segments")? };
        for (i, &p) in names.iter().enumerate() {
            // SAFETY: each entry is NULL or a NUL-terminated string (caller guarantee).
            out.preferred_segments.push(unsafe { str_arg(p, &format!("preferred_segments[{i}]"))? }.to_string());
        }
    }
    if soft_pin_ttl_ms >= 0 {
        if !out.soft_pin {
            return Err(StoreError::invalid("a soft-pin TTL needs with_soft_pin (SoftPinAction.ENABLE)"));
        }
        out.soft_pin_ttl_ms = Some(soft_pin_ttl_ms as u64);
    }
    Ok(out)
}

/// Three parallel arrays of a zero-copy batch, as `KeyBuffer`s.
///
/// # Safety
/// `keys` as for [`keys_arg`]; `buffers` and `sizes` NULL or readable for `count` elements.
pub(crate) unsafe fn key_buffers<'a>(
    keys: *mut *const c_char,
    buffers: *const *mut c_void,
    sizes: *const usize,
    count: usize,
) -> StoreResult<Vec<KeyBuffer<'a>>> {
    if buffers.is_null() || sizes.is_null() {
        return Err(StoreError::invalid("buffers or sizes is NULL"));
    }
    // SAFETY: forwarded caller guarantees.
    let (keys, buffers, sizes) =
        unsafe { (keys_arg(keys, count)?, slice_arg(buffers, count, "buffers")?, slice_arg(sizes, count, "sizes")?) };
    keys.into_iter()
        .zip(buffers.iter().zip(sizes))
        .enumerate()
        .map(|(i, (key, (&addr, &len)))| {
            if addr.is_null() && len > 0 {
                return Err(StoreError::invalid(format!("buffers[{i}] is NULL but sizes[{i}] is {len}")));
            }
            Ok(KeyBuffer { key, addr: addr as u64, len: len as u64 })
        })
        .collect()
}

/// `Ok(())` → 0, `Err` → its code; per-key failures are also logged (not the last error,
/// which belongs to the call).
pub(crate) fn code_of(func: &str, r: &StoreResult<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            tracing::debug!("{func}: {e}");
            store_code(e.code)
        }
    }
}

/// A memory range argument: `ptr` may be NULL only when `size` is 0.
pub(crate) fn range_arg(ptr: *const c_void, size: usize, what: &str) -> StoreResult<u64> {
    if ptr.is_null() && size > 0 {
        return Err(StoreError::invalid(format!("{what} is NULL but size is {size}")));
    }
    Ok(ptr as u64)
}

/// Borrows each (pointer, size) pair as bytes.
///
/// # Safety
/// Each pointer must be NULL (only with size 0) or readable for its size during the call.
pub(crate) unsafe fn byte_slices<'a>(
    ptrs: &[*const c_void],
    sizes: &[usize],
    what: &str,
) -> StoreResult<Vec<&'a [u8]>> {
    ptrs.iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, (&p, &n))| {
            // SAFETY: each pointer is readable for its size during the call (caller guarantee).
            unsafe { slice_arg(p as *const u8, n, &format!("{what}[{i}]")) }
        })
        .collect()
}
