//! Multi-buffer puts and gets, declared in `mooncake.h`: each key's value is the
//! concatenation of parts scattered in the caller's memory (Mooncake's Python
//! `batch_put_from_multi_buffers` / `batch_get_into_multi_buffers`, which vLLM's store
//! connector calls with one part per layer). The parts of all keys come flat: key `i` owns the
//! next `part_counts[i]` entries of `buffers` and `sizes`.

use std::ffi::{c_char, c_int, c_void};

use super::args::{code_of, keys_arg, replica_config, results_arg, slice_arg, store_ref, write_results};
use super::ops::check_len;
use super::types::{mooncake_replicate_config_t, mooncake_store_t};
use crate::ffi::boundary::{StoreCodes, ffi_fn};
use crate::ffi::codes::store_code;
use crate::store::{ErrorCode, KeyParts, Part, StoreError, StoreResult};

/// Each key's parts, taken from the flat `buffers`/`sizes` arrays.
///
/// # Safety
/// `part_counts` NULL or `count` entries; `buffers` and `sizes` NULL or as many entries as
/// `part_counts` sums to; all read during the call.
unsafe fn flat_parts(
    part_counts: *const usize,
    buffers: *const *mut c_void,
    sizes: *const usize,
    count: usize,
) -> StoreResult<Vec<Vec<Part>>> {
    // SAFETY: forwarded caller guarantee.
    let counts = unsafe { slice_arg(part_counts, count, "part_counts")? };
    let total = counts
        .iter()
        .try_fold(0usize, |s, &c| s.checked_add(c))
        .ok_or_else(|| StoreError::invalid("part_counts sum past SIZE_MAX"))?;
    // SAFETY: forwarded caller guarantee: both arrays hold `total` entries.
    let (buffers, sizes) = unsafe { (slice_arg(buffers, total, "buffers")?, slice_arg(sizes, total, "sizes")?) };
    let mut at = 0;
    Ok(counts
        .iter()
        .map(|&c| {
            let parts = (at..at + c).map(|j| Part { addr: buffers[j] as u64, len: sizes[j] as u64 }).collect();
            at += c;
            parts
        })
        .collect())
}

/// Puts `count` keys, each the concatenation of its parts: key `i`'s parts are the next
/// `part_counts[i]` entries of `buffers` (read `sizes[j]` bytes at `buffers[j]`). The parts go
/// straight from the caller's memory to every replica, all in one engine batch. Writes each
/// key's code into `results_out[i]` (0, or `INVALID_PARAMS` for a key without parts, an empty
/// key or value, or a part at NULL with a size; `TRANSFER_FAIL` when a copy failed, the put
/// then revoked) and returns 0; a negative code (nothing written to `results_out`) for wrong
/// arguments. An existing key is kept (0) unless `upsert`. `config` NULL: one replica.
/// `soft_pin_ttl_ms` as in `mooncake_store_put_ex`. The buffers stay the caller's and must
/// stay readable until the call returns. Parts need not be registered (as Mooncake's store):
/// registered parts, and any part on the local, same-host and TCP routes, are read in place;
/// on an RDMA route an unregistered part is copied through the client's local buffer
/// (`INVALID_PARAMS` for its key when the client has none). Thread-safe.
///
/// # Safety
/// `keys`, `part_counts` hold `count` entries (keys NUL-terminated); `buffers`, `sizes` hold
/// as many entries as `part_counts` sums to, each buffer readable for its size;
/// `results_out` writable for `count` ints; `config` NULL or valid.
#[allow(clippy::too_many_arguments)] // the C arguments, as they come
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_put_from_multi_buffers(
    store: mooncake_store_t,
    keys: *const *const c_char,
    count: usize,
    part_counts: *const usize,
    buffers: *const *mut c_void,
    sizes: *const usize,
    config: *const mooncake_replicate_config_t,
    soft_pin_ttl_ms: i64,
    upsert: c_int,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let (keys, parts, config) = unsafe {
            (
                keys_arg(keys, count)?,
                flat_parts(part_counts, buffers, sizes, count)?,
                replica_config(config, soft_pin_ttl_ms)?,
            )
        };
        let items: Vec<KeyParts<'_>> = keys.iter().zip(&parts).map(|(key, p)| KeyParts { key, parts: p }).collect();
        let results: Vec<c_int> = client
            .batch_put_from_multi_buffers(&items, &config, upsert != 0)
            .iter()
            .map(|r| code_of(name, r))
            .collect();
        check_len(results.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}

/// Reads `count` keys, each into its parts: key `i`'s parts are the next `part_counts[i]`
/// entries of `buffers` (`sizes[j]` bytes at `buffers[j]`), filled in order with the value's
/// bytes, all in one engine batch. The parts must hold exactly the value: less is
/// `INVALID_PARAMS`, more is `TRANSFER_FAIL` (as Mooncake answers), and nothing is written for
/// such a key. Writes each key's byte count or negative code (`OBJECT_NOT_FOUND` for an
/// unknown or empty key) into `results_out[i]` and returns 0; a negative code (nothing written
/// to `results_out`) for wrong arguments. `prefer_alloc_in_same_node` is accepted and has no
/// effect (Mooncake's hint for its NUMA-aware allocation). Parts need not be registered (as
/// Mooncake's store): registered parts, and any part on the local, same-host and TCP routes,
/// are written in place; on an RDMA route an unregistered part is filled through the client's
/// local buffer (`INVALID_PARAMS` for its key when the client has none). Grants and ends a
/// read lease per key. Thread-safe.
///
/// # Safety
/// `keys`, `part_counts` hold `count` entries (keys NUL-terminated); `buffers`, `sizes` hold
/// as many entries as `part_counts` sums to, each buffer writable for its size;
/// `results_out` writable for `count` int64_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_into_multi_buffers(
    store: mooncake_store_t,
    keys: *const *const c_char,
    count: usize,
    part_counts: *const usize,
    buffers: *const *mut c_void,
    sizes: *const usize,
    prefer_alloc_in_same_node: c_int,
    results_out: *mut i64,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let _ = prefer_alloc_in_same_node;
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let (keys, parts) = unsafe { (keys_arg(keys, count)?, flat_parts(part_counts, buffers, sizes, count)?) };
        let items: Vec<KeyParts<'_>> = keys.iter().zip(&parts).map(|(key, p)| KeyParts { key, parts: p }).collect();
        let results: Vec<i64> = client
            .batch_get_into_multi_buffers(&items)
            .into_iter()
            .map(|r| match r {
                Ok(n) => i64::try_from(n).unwrap_or(i64::from(store_code(ErrorCode::InternalError))),
                Err(e) => {
                    tracing::debug!("{name}: {e}");
                    i64::from(store_code(e.code))
                }
            })
            .collect();
        check_len(results.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}
