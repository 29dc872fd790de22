//! Ranged multi-buffer puts and gets, declared in `mooncake.h` (Mooncake's Python
//! `batch_put_from_multi_buffer_ranges` / `batch_get_into_multi_buffer_ranges`): each part is
//! a piece of the caller's memory and the offset in the object where it belongs, on objects of
//! an open put or get session. The parts of all keys come flat: key `i` owns the next
//! `part_counts[i]` entries of `buffers`, `sizes` and `offsets`.

use std::ffi::{c_char, c_int, c_void};

use super::args::{keys_arg, results_arg, slice_arg, store_ref, write_results};
use super::ops::check_len;
use super::types::mooncake_store_t;
use crate::ffi::boundary::{StoreCodes, ffi_fn};
use crate::ffi::codes::store_code;
use crate::store::{ErrorCode, KeyRanges, RangePart, StoreError, StoreResult};

/// Each key's ranged parts, taken from the flat `buffers`/`sizes`/`offsets` arrays.
///
/// # Safety
/// `part_counts` NULL or `count` entries; `buffers`, `sizes`, `offsets` NULL or as many
/// entries as `part_counts` sums to; all read during the call.
unsafe fn flat_ranges(
    part_counts: *const usize,
    buffers: *const *mut c_void,
    sizes: *const usize,
    offsets: *const usize,
    count: usize,
) -> StoreResult<Vec<Vec<RangePart>>> {
    // SAFETY: forwarded caller guarantee.
    let counts = unsafe { slice_arg(part_counts, count, "part_counts")? };
    let total = counts
        .iter()
        .try_fold(0usize, |s, &c| s.checked_add(c))
        .ok_or_else(|| StoreError::invalid("part_counts sum past SIZE_MAX"))?;
    // SAFETY: forwarded caller guarantee: the three arrays hold `total` entries.
    let (buffers, sizes, offsets) = unsafe {
        (
            slice_arg(buffers, total, "buffers")?,
            slice_arg(sizes, total, "sizes")?,
            slice_arg(offsets, total, "offsets")?,
        )
    };
    let mut at = 0;
    Ok(counts
        .iter()
        .map(|&c| {
            let parts = (at..at + c)
                .map(|j| RangePart { addr: buffers[j] as u64, len: sizes[j] as u64, offset: offsets[j] as u64 })
                .collect();
            at += c;
            parts
        })
        .collect())
}

/// Bytes per key, or the key's negative code (logged).
fn byte_results(name: &str, out: Vec<StoreResult<u64>>) -> Vec<i64> {
    out.into_iter()
        .map(|r| match r {
            Ok(n) => i64::try_from(n).unwrap_or(i64::from(store_code(ErrorCode::InternalError))),
            Err(e) => {
                tracing::debug!("{name}: {e}");
                i64::from(store_code(e.code))
            }
        })
        .collect()
}

/// Writes parts of `count` objects reserved by `mooncake_store_batch_put_session_start`:
/// key `i`'s parts are the next `part_counts[i]` entries of `buffers`, `sizes` and
/// `offsets` (`sizes[j]` bytes at `buffers[j]` go to bytes `offsets[j]..` of the object, in
/// every replica), all in one engine batch. The objects stay invisible until
/// `mooncake_store_batch_put_session_finish`. Writes each key's bytes written (its parts'
/// sizes summed) or negative code into `results_out[i]`: `INVALID_PARAMS` (-600) for a key
/// without a put session, a range past the object's size or a part at NULL; `INVALID_REPLICA`
/// (-702) for a key with no parts; `TRANSFER_FAIL` (-800) when a copy failed. Returns 0, or a
/// negative code (nothing written to `results_out`) for wrong arguments. Parts need not be
/// registered (as `mooncake_store_batch_put_from_multi_buffers`); they stay the caller's and
/// must stay readable until the call returns. Thread-safe.
///
/// # Safety
/// `keys`, `part_counts` hold `count` entries (keys NUL-terminated); `buffers`, `sizes`,
/// `offsets` hold as many entries as `part_counts` sums to, each buffer readable for its
/// size; `results_out` writable for `count` int64_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_put_from_multi_buffer_ranges(
    store: mooncake_store_t,
    keys: *const *const c_char,
    count: usize,
    part_counts: *const usize,
    buffers: *const *mut c_void,
    sizes: *const usize,
    offsets: *const usize,
    results_out: *mut i64,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let (keys, parts) =
            unsafe { (keys_arg(keys, count)?, flat_ranges(part_counts, buffers, sizes, offsets, count)?) };
        let items: Vec<KeyRanges<'_>> = keys.iter().zip(&parts).map(|(key, p)| KeyRanges { key, parts: p }).collect();
        let results = byte_results(name, client.batch_put_from_multi_buffer_ranges(&items));
        check_len(results.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}

/// Reads parts of `count` objects through the replicas that
/// `mooncake_store_batch_get_session_start` looked up (no request to the master): key `i`'s
/// parts are the next `part_counts[i]` entries of `buffers`, `sizes` and `offsets`
/// (`sizes[j]` bytes from offset `offsets[j]` of the object into `buffers[j]`), all in one
/// engine batch. Writes each key's bytes read (its parts' sizes summed) or negative code into
/// `results_out[i]`: `INVALID_PARAMS` (-600) for a key without a get session, a range past
/// the object's size or a part at NULL; `LEASE_EXPIRED` (-707) when the session's read lease
/// ran out (the session then ends); `TRANSFER_FAIL` (-800) when a copy failed. Returns 0, or
/// a negative code (nothing written to `results_out`) for wrong arguments. Parts need not be
/// registered. Thread-safe.
///
/// # Safety
/// `keys`, `part_counts` hold `count` entries (keys NUL-terminated); `buffers`, `sizes`,
/// `offsets` hold as many entries as `part_counts` sums to, each buffer writable for its
/// size; `results_out` writable for `count` int64_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_into_multi_buffer_ranges(
    store: mooncake_store_t,
    keys: *const *const c_char,
    count: usize,
    part_counts: *const usize,
    buffers: *const *mut c_void,
    sizes: *const usize,
    offsets: *const usize,
    results_out: *mut i64,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let (keys, parts) =
            unsafe { (keys_arg(keys, count)?, flat_ranges(part_counts, buffers, sizes, offsets, count)?) };
        let items: Vec<KeyRanges<'_>> = keys.iter().zip(&parts).map(|(key, p)| KeyRanges { key, parts: p }).collect();
        let results = byte_results(name, client.batch_get_into_multi_buffer_ranges(&items));
        check_len(results.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}
