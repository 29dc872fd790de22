//! Bodies shared by several store entry points (an exported function never calls another):
//! setting a handle up, and the puts behind both `store_c.h`'s calls and their `_ex` forms.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::args::{
    StoreSlot, byte_slices, code_of, key_buffers, range_arg, replica_config, results_arg, slice_arg, store_ref,
    str_arg, write_results,
};
use super::types::{mooncake_replicate_config_t, mooncake_store_t};
use crate::store::{ErrorCode, ReplicaConfig, Store, StoreConfig, StoreError, StoreResult};

/// Sets `slot` up with `config`, closing a client it held before.
pub(crate) fn set_up(slot: &StoreSlot, config: &StoreConfig) -> StoreResult<()> {
    if config.local_hostname.is_empty() {
        return Err(StoreError::invalid("local_hostname is empty"));
    }
    install(slot, Store::setup(config)?);
    Ok(())
}

/// Puts `client` into `slot`, closing the client it held before.
pub(crate) fn install(slot: &StoreSlot, client: Store) {
    let old = slot.client.write().replace(Arc::new(client));
    if let Some(Err(e)) = old.map(|old| old.close()) {
        tracing::warn!("closing the client this setup replaced: {e}");
    }
}

/// The options of every put form: the replica config, and the `soft_pin_ttl_ms` and `upsert`
/// of the `_ex` forms (`store_c.h`'s forms are [`PutOptions::plain`]).
pub(crate) struct PutOptions {
    pub config: *const mooncake_replicate_config_t,
    pub soft_pin_ttl_ms: i64,
    pub upsert: c_int,
}

impl PutOptions {
    /// `store_c.h`'s puts: no soft pin, no upsert.
    pub(crate) fn plain(config: *const mooncake_replicate_config_t) -> PutOptions {
        PutOptions { config, soft_pin_ttl_ms: -1, upsert: 0 }
    }

    /// The replica config and whether to upsert.
    ///
    /// # Safety
    /// `config` NULL or valid for reads during the call.
    unsafe fn read(&self) -> StoreResult<(ReplicaConfig, bool)> {
        // SAFETY: forwarded caller guarantee.
        Ok((unsafe { replica_config(self.config, self.soft_pin_ttl_ms)? }, self.upsert != 0))
    }
}

/// A batch answer must have one entry per key.
pub(crate) fn check_len(got: usize, want: usize) -> StoreResult<()> {
    if got != want {
        return Err(StoreError::new(ErrorCode::InternalError, format!("{got} results for {want} keys")));
    }
    Ok(())
}

/// The put of `mooncake_store_put`, `mooncake_store_put_ex` and `mooncake_store_put_parts`:
/// the concatenation of `count` parts stored under `key`.
///
/// # Safety
/// `parts` and `sizes` must be NULL or hold `count` entries, each part readable for its size;
/// `key` NULL or a NUL-terminated string; `config` NULL or valid; all read during the call.
pub(crate) unsafe fn put_parts(
    store: mooncake_store_t,
    key: *const c_char,
    parts: *const *const c_void,
    sizes: *const usize,
    count: usize,
    options: PutOptions,
) -> StoreResult<()> {
    let client = store_ref(store)?;
    // SAFETY: forwarded caller guarantees.
    let (key, (config, upsert), parts, sizes) = unsafe {
        (str_arg(key, "key")?, options.read()?, slice_arg(parts, count, "parts")?, slice_arg(sizes, count, "sizes")?)
    };
    // SAFETY: forwarded caller guarantee: each part is readable for its size.
    let parts = unsafe { byte_slices(parts, sizes, "parts")? };
    client.put_parts(key, &parts, &config, upsert)
}

/// The put of `mooncake_store_put_from` and `mooncake_store_put_from_ex`.
///
/// # Safety
/// `key` NULL or a NUL-terminated string; `buffer` readable for `size` bytes; `config` NULL or
/// valid; all read during the call.
pub(crate) unsafe fn put_from(
    store: mooncake_store_t,
    key: *const c_char,
    buffer: *mut c_void,
    size: usize,
    options: PutOptions,
) -> StoreResult<()> {
    let client = store_ref(store)?;
    // SAFETY: forwarded caller guarantees.
    let (key, (config, upsert)) = unsafe { (str_arg(key, "key")?, options.read()?) };
    let addr = range_arg(buffer, size, "buffer")?;
    client.put_from(key, addr, size as u64, &config, upsert)
}

/// The batch of `mooncake_store_batch_put_from` and `mooncake_store_batch_put_from_ex`; per-key
/// failures are logged under `func`.
///
/// # Safety
/// `keys`, `buffers`, `sizes` must hold `count` entries (keys NUL-terminated, each buffer
/// readable for its size); `results_out` writable for `count` ints; `config` NULL or valid.
#[allow(clippy::too_many_arguments)] // the C arguments, as they come
pub(crate) unsafe fn batch_put_from(
    func: &str,
    store: mooncake_store_t,
    keys: *mut *const c_char,
    buffers: *mut *mut c_void,
    sizes: *const usize,
    count: usize,
    options: PutOptions,
    results_out: *mut c_int,
) -> StoreResult<()> {
    let client = store_ref(store)?;
    results_arg(results_out, count)?;
    // SAFETY: forwarded caller guarantees.
    let (items, (config, upsert)) = unsafe { (key_buffers(keys, buffers, sizes, count)?, options.read()?) };
    let results: Vec<c_int> = client.batch_put_from(&items, &config, upsert).iter().map(|r| code_of(func, r)).collect();
    check_len(results.len(), count)?;
    // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
    unsafe { write_results(results_out, &results) };
    Ok(())
}
