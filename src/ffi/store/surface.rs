//! The rest of Mooncake's `MooncakeDistributedStore` in `mooncake.h`: set-up on a shared
//! Transfer Engine, batch removal, replica descriptors, puts with a metadata prefix, and put
//! and get sessions. Each is one call of `mooncake.store`.
#![allow(non_camel_case_types)] // C names, as the rest of the C interface spells them.

use std::ffi::{c_char, c_int, c_void};

use super::args::{
    keys_arg, replica_config, results_arg, slice_arg, slot_ref, store_ref, str_arg, str_or, write_results,
};
use super::ops::{check_len, install};
use super::types::{mooncake_replicate_config_t, mooncake_store_t};
use crate::ffi::boundary::{StoreCodes, ffi_fn};
use crate::ffi::codes::store_code;
use crate::ffi::engine::args::engine_ref;
use crate::store::{Store, StoreConfig, StoreError, StoreResult};

/// The longest `transport_endpoint` of a [`mooncake_store_replica_desc`], NUL included.
pub const MOONCAKE_STORE_ENDPOINT_LEN: usize = 256;

/// One replica of an object (Mooncake's memory `ReplicaDescriptor`): `size` bytes at
/// `buffer_address` in the process of the client whose engine segment is
/// `transport_endpoint` (its `get_hostname()`, NUL-terminated), in state `status`
/// (Mooncake's `ReplicaStatus`: 3, `COMPLETE`, for every replica a reader is shown).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mooncake_store_replica_desc {
    pub buffer_address: u64,
    pub size: u64,
    pub status: c_int,
    pub transport_endpoint: [c_char; 256],
}
pub type mooncake_store_replica_desc_t = mooncake_store_replica_desc;

/// One outcome per key: 0 or the key's code.
fn codes(func: &str, results: Vec<StoreResult<()>>) -> Vec<c_int> {
    results.iter().map(|r| super::args::code_of(func, r)).collect()
}

/// `mooncake_store_setup` on the Transfer Engine `engine` (a handle of `transfer_engine_c.h`,
/// as `TransferEngine.get_engine()` gives it in Python), which the store shares instead of
/// starting its own: it registers its segment and staging buffer there and takes the engine's
/// segment name as its hostname; `protocol` and `device_name` are the engine's business and
/// ignored. `close` unregisters what the store registered and leaves the engine running; the
/// engine must outlive the store's use of it (a destroyed engine makes transfers fail).
/// Returns 0 or a negative code (`INVALID_PARAMS` -600 for a handle that is not a live engine,
/// `RPC_FAIL` -900: master unreachable). Strings are read during the call. Thread-safe.
///
/// # Safety
/// Every string must be NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_setup_with_engine(
    store: mooncake_store_t,
    engine: *mut c_void,
    local_hostname: *const c_char,
    metadata_server: *const c_char,
    global_segment_size: u64,
    local_buffer_size: u64,
    master_server_addr: *const c_char,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let slot = slot_ref(store)?;
        let engine = engine_ref(engine).map_err(super::args::params)?;
        // SAFETY: NUL-terminated strings or NULL (caller guarantee), read during the call.
        let config = unsafe {
            StoreConfig {
                local_hostname: str_or(local_hostname, "local_hostname", "")?.to_string(),
                metadata_server: str_or(metadata_server, "metadata_server", "")?.to_string(),
                global_segment_size,
                local_buffer_size,
                protocol: "tcp".into(),
                device_name: String::new(),
                master_server_addr: str_or(master_server_addr, "master_server_addr", "127.0.0.1:50051")?.to_string(),
            }
        };
        install(&slot, Store::setup_with_engine(&config, engine)?);
        Ok(())
    })
}

/// Removes each of `count` keys as `mooncake_store_remove` does: 0, `OBJECT_NOT_FOUND` (-704),
/// `OBJECT_HAS_LEASE` (-706, unless `force`) or another code in `results_out[i]`. Returns 0, or
/// a negative code (nothing written) for wrong arguments. Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `results_out` writable for `count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_remove(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
    force: c_int,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantee.
        let keys = unsafe { keys_arg(keys, count)? };
        let out = client.batch_remove(&keys, force != 0);
        check_len(out.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &codes("mooncake_store_batch_remove", out)) };
        Ok(())
    })
}

/// The replicas of each of `count` keys, in one request to the master (each found key gets a
/// read lease, as Mooncake's query grants). `counts_out[i]` is the number of replicas of key
/// `i`, or its negative code (`OBJECT_NOT_FOUND` -704, ...); the replicas follow one another
/// in `descs_out`, key by key, of which at most `capacity` are written. Returns the number of
/// replicas found in all (more than `capacity`: call again with room for that many), or a
/// negative code for wrong arguments (nothing written). Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `counts_out` writable for `count` ints;
/// `descs_out` writable for `capacity` descriptors (NULL when `capacity` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_replica_desc(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
    descs_out: *mut mooncake_store_replica_desc_t,
    capacity: usize,
    counts_out: *mut c_int,
) -> i64 {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(counts_out, count)?;
        if descs_out.is_null() && capacity > 0 {
            return Err(StoreError::invalid("descs_out is NULL but capacity is not 0"));
        }
        // SAFETY: forwarded caller guarantee.
        let keys = unsafe { keys_arg(keys, count)? };
        let out = client.batch_replica_desc(&keys);
        check_len(out.len(), count)?;
        let mut counts = Vec::with_capacity(count);
        let mut descs = Vec::new();
        for (key, r) in keys.iter().zip(out) {
            match r {
                Ok(list) => {
                    counts.push(c_int::try_from(list.len()).unwrap_or(c_int::MAX));
                    descs.extend(list);
                }
                Err(e) => {
                    tracing::debug!("mooncake_store_batch_get_replica_desc {key:?}: {e}");
                    counts.push(store_code(e.code));
                }
            }
        }
        let written: Vec<mooncake_store_replica_desc_t> = descs
            .iter()
            .take(capacity)
            .map(|d| {
                let mut endpoint = [0 as c_char; MOONCAKE_STORE_ENDPOINT_LEN];
                for (dst, &b) in endpoint
                    .iter_mut()
                    .zip(d.transport_endpoint.as_bytes().iter().take(MOONCAKE_STORE_ENDPOINT_LEN - 1))
                {
                    *dst = b as c_char;
                }
                mooncake_store_replica_desc {
                    buffer_address: d.buffer_address,
                    size: d.size,
                    status: d.status,
                    transport_endpoint: endpoint,
                }
            })
            .collect();
        // SAFETY: `counts_out` holds `count` entries, `descs_out` `capacity` (caller guarantee).
        unsafe {
            write_results(counts_out, &counts);
            if !written.is_empty() {
                write_results(descs_out, &written);
            }
        }
        Ok(descs.len() as i64)
    })
}

/// Stores `metadata_size` bytes at `metadata_buffer` followed by `size` bytes at `buffer` as
/// one object under `key` (Mooncake's `put_from_with_metadata`: the object is the metadata,
/// then the data). Either buffer may be registered or not. `size` 0 stores nothing and
/// returns 0, as Mooncake's does. `config` NULL: one replica, no pin. Returns 0 or a negative
/// code (an existing key is kept and 0 returned, as `put` does). Thread-safe.
///
/// # Safety
/// `key` NULL or NUL-terminated; `buffer` readable for `size` bytes and `metadata_buffer` for
/// `metadata_size` bytes (each may be NULL when its size is 0); `config` NULL or valid; all
/// read during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put_from_with_metadata(
    store: mooncake_store_t,
    key: *const c_char,
    buffer: *const c_void,
    metadata_buffer: *const c_void,
    size: usize,
    metadata_size: usize,
    config: *const mooncake_replicate_config_t,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string or NULL; config NULL or valid (caller guarantees).
        let (key, config) = unsafe { (str_arg(key, "key")?, replica_config(config, -1)?) };
        if size == 0 {
            tracing::warn!("put_from_with_metadata: empty data for {key:?}; nothing stored");
            return Ok(());
        }
        // SAFETY: each buffer is readable for its size, or NULL only with size 0 (caller guarantee).
        let (meta, data) = unsafe {
            (
                slice_arg(metadata_buffer.cast::<u8>(), metadata_size, "metadata_buffer")?,
                slice_arg(buffer.cast::<u8>(), size, "buffer")?,
            )
        };
        client.put_parts(key, &[meta, data], &config, false)
    })
}

/// Reserves space for each of `count` keys (`sizes[i]` bytes; one request to the master)
/// without writing it; the ranged multi-buffer put writes it, `mooncake_store_batch_put_session_finish`
/// (revoke 0) makes it visible, (revoke 1) frees it. `results_out[i]`: 0, `INVALID_PARAMS` (-600) for a
/// key that already has a session, a size of 0 or a dummy client, or the master's code
/// (`OBJECT_ALREADY_EXISTS` -705, `NO_AVAILABLE_HANDLE` -200, ...). Returns 0, or a negative
/// code for wrong arguments (nothing written). Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings, `sizes` `count` sizes; `config` NULL or
/// valid; `results_out` writable for `count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_put_session_start(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    sizes: *const u64,
    count: usize,
    config: *const mooncake_replicate_config_t,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        if sizes.is_null() && count > 0 {
            return Err(StoreError::invalid("sizes is NULL"));
        }
        // SAFETY: forwarded caller guarantees.
        let (keys, sizes, config) =
            unsafe { (keys_arg(keys, count)?, slice_arg(sizes, count, "sizes")?, replica_config(config, -1)?) };
        let out = client.batch_put_session_start(&keys, sizes, &config);
        check_len(out.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &codes("mooncake_store_batch_put_session_start", out)) };
        Ok(())
    })
}

/// Ends (`revoke` 0: the objects become visible) or revokes (non-zero: their space is freed)
/// the put sessions of `count` keys. `results_out[i]`: 0, `INVALID_PARAMS` (-600) for a key
/// without a session, or the master's code (the session then stays open, to be revoked).
/// Returns 0, or a negative code for wrong arguments. Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `results_out` writable for `count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_put_session_finish(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
    revoke: c_int,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantee.
        let keys = unsafe { keys_arg(keys, count)? };
        let out = client.batch_put_session_finish(&keys, revoke != 0);
        check_len(out.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &codes("mooncake_store_batch_put_session_finish", out)) };
        Ok(())
    })
}

/// Looks up the replicas of `count` keys once (one request; read leases) and keeps them for
/// the ranged multi-buffer get. `results_out[i]`: 0 or the key's code (`OBJECT_NOT_FOUND`
/// -704; `INVALID_PARAMS` -600 on a dummy client). Returns 0, or a negative code for wrong
/// arguments. Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `results_out` writable for `count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_session_start(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantee.
        let keys = unsafe { keys_arg(keys, count)? };
        let out = client.batch_get_session_start(&keys);
        check_len(out.len(), count)?;
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &codes("mooncake_store_batch_get_session_start", out)) };
        Ok(())
    })
}

/// Drops the get sessions of `count` keys (keys without one are skipped). Returns 0, or
/// `INVALID_PARAMS` (-600) on a dummy client or for wrong arguments. Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_session_end(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: forwarded caller guarantee.
        let keys = unsafe { keys_arg(keys, count)? };
        client.batch_get_session_end(&keys)
    })
}

/// Drops the replicas of `count` keys that this client wrote, on the segment named
/// `segment_name` (a client's `get_hostname()`; NULL or `""`: every replica, the whole object),
/// where no read lease holds the object (Mooncake's `batch_replica_clear`; other keys are
/// skipped: empty, unknown, another client's, leased, being written or copied, or without a
/// replica on that segment). Writes `cleared_out[i]` = 1 for each key cleared, 0 otherwise, and
/// returns how many were cleared, or a negative code (nothing written). A dummy client clears
/// nothing, as Mooncake's. The caller keeps ownership of every argument. Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `segment_name` NULL or NUL-terminated;
/// `cleared_out` writable for `count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_replica_clear(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    count: usize,
    segment_name: *const c_char,
    cleared_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        results_arg(cleared_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let (keys, segment) = unsafe { (keys_arg(keys, count)?, str_or(segment_name, "segment_name", "")?) };
        let cleared = client.batch_replica_clear(&keys, segment)?;
        // The master answers the cleared keys in the order asked: match them position by position.
        let mut rest = cleared.iter().peekable();
        let flags: Vec<c_int> =
            keys.iter().map(|k| c_int::from(rest.next_if(|c| c.as_str() == *k).is_some())).collect();
        // SAFETY: `cleared_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(cleared_out, &flags) };
        Ok(flags.iter().filter(|&&f| f == 1).count() as c_int)
    })
}
