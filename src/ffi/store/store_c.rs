//! Mooncake's Store C interface, `store_c.h`: a store client handle and its put, get, query,
//! removal and buffer-registration calls, each one call of [`crate::store::Store`].
//!
//! Every function returns Mooncake's store `ErrorCode` values unchanged (negative:
//! `MOONCAKE_STORE_*` in `mooncake.h`), and records the reason for `mooncake_last_error()`. A
//! NULL or destroyed handle, a NULL pointer where memory is required, and a string that is not
//! UTF-8 are `INVALID_PARAMS` (-600); so is every call other than setup and
//! `mooncake_store_health_check` on a handle that is not set up. (Mooncake's own C functions
//! return -1 for NULL arguments; -600 says the same thing with Mooncake's store code.)

use std::ffi::{c_char, c_int, c_void};

use super::args::{
    STORES, StoreSlot, key_buffers, keys_arg, params, range_arg, results_arg, slot_ref, store_ref, str_arg, str_or,
    write_results,
};
use super::ops::{PutOptions, batch_put_from, check_len, put_from, put_parts, set_up};
use super::types::{mooncake_replicate_config_t, mooncake_store_t};
use crate::ffi::args::write_c_string;
use crate::ffi::boundary::{StoreCodes, ffi_fn};
use crate::ffi::codes::store_code;
use crate::store::{ErrorCode, StoreConfig, StoreError};

/// Creates a store client handle that is not set up yet (`mooncake_store_setup` or
/// `mooncake_store_init_all` connect it). Returns the handle, owned by the caller and released
/// with `mooncake_store_destroy`; NULL only when memory runs out. Thread-safe; the handle may
/// be used from any thread, by several at once.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_create() -> mooncake_store_t {
    ffi_fn!(StoreCodes, { Ok(STORES.insert(StoreSlot::default())) })
}

/// Closes the client (as `mooncake_store_close`: its segment is withdrawn from the pool and
/// the objects stored there go with it) and frees the handle. NULL is a no-op. The handle must
/// not be used afterwards (a stale handle is `INVALID_PARAMS`). Thread-safe; calls in flight on
/// other threads finish first.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_destroy(store: mooncake_store_t) {
    ffi_fn!(StoreCodes, {
        let Some(slot) = STORES.remove(store)? else {
            return Ok(());
        };
        let client = slot.client.write().take();
        if let Some(client) = client {
            client.close()?;
        }
        Ok(())
    })
}

/// Connects the handle to the master at `master_server_addr` (`"host:port"`; NULL:
/// `"127.0.0.1:50051"`), starts its Transfer Engine on `metadata_server` (`"P2PHANDSHAKE"`,
/// `"http://host:port/metadata"`, …) named `local_hostname` (`"host"` or `"host:port"`;
/// without a port one is picked from `MC_STORE_CLIENT_MIN_PORT..=MC_STORE_CLIENT_MAX_PORT`,
/// 12300–14300), contributes `global_segment_size` bytes to the pool (0: a client that
/// contributes none) and keeps a registered staging buffer of `local_buffer_size` bytes (0:
/// none; `put` and `get` of bytes then fail with `INVALID_PARAMS`, as Mooncake's, while the
/// zero-copy calls work).
/// `protocol` (NULL: `"tcp"`; `"rdma"` uses RDMA where devices exist, else tcp) and
/// `device_name` (NULL: `""`; with `"rdma"`, the RDMA devices to use, comma-separated, `""`
/// for every discovered one). A handle already set up is set up again: the new client replaces
/// the old one (which is closed) only when it started. Returns 0, or a negative code
/// (`RPC_FAIL` -900: master unreachable; `INVALID_PARAMS` -600). All strings are read during
/// the call. Thread-safe.
///
/// # Safety
/// Every pointer must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_setup(
    store: mooncake_store_t,
    local_hostname: *const c_char,
    metadata_server: *const c_char,
    global_segment_size: u64,
    local_buffer_size: u64,
    protocol: *const c_char,
    device_name: *const c_char,
    master_server_addr: *const c_char,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let slot = slot_ref(store)?;
        // SAFETY: NUL-terminated strings or NULL (caller guarantee), read during the call.
        let config = unsafe {
            StoreConfig {
                local_hostname: str_arg(local_hostname, "local_hostname")?.to_string(),
                metadata_server: str_arg(metadata_server, "metadata_server")?.to_string(),
                global_segment_size,
                local_buffer_size,
                protocol: str_or(protocol, "protocol", "tcp")?.to_string(),
                device_name: str_or(device_name, "device_name", "")?.to_string(),
                master_server_addr: str_or(master_server_addr, "master_server_addr", "127.0.0.1:50051")?.to_string(),
            }
        };
        set_up(&slot, &config)
    })
}

/// Mooncake's `initAll`: sets up a handle that is not set up yet with Mooncake's fixed
/// values: `local_hostname` `"localhost:12345"`, metadata `"127.0.0.1:2379"` (etcd), master
/// `"127.0.0.1:50051"`, a 1 GiB staging buffer, and `mount_segment_size` bytes contributed.
/// `protocol` NULL means `"tcp"`, `device_name` NULL `""`. A handle already set up is
/// `INVALID_PARAMS`. Returns 0 or a negative code. Thread-safe.
///
/// # Safety
/// `protocol` and `device_name` must be NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_init_all(
    store: mooncake_store_t,
    protocol: *const c_char,
    device_name: *const c_char,
    mount_segment_size: u64,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let slot = slot_ref(store)?;
        // SAFETY: NUL-terminated strings or NULL (caller guarantee).
        let (protocol, device) =
            unsafe { (str_or(protocol, "protocol", "tcp")?, str_or(device_name, "device_name", "")?) };
        if slot.client.read().is_some() {
            return Err(StoreError::invalid("the store is already set up"));
        }
        let config = StoreConfig {
            local_hostname: "localhost:12345".into(),
            metadata_server: "127.0.0.1:2379".into(),
            global_segment_size: mount_segment_size,
            local_buffer_size: 1 << 30,
            protocol: protocol.into(),
            device_name: device.into(),
            master_server_addr: "127.0.0.1:50051".into(),
        };
        set_up(&slot, &config)
    })
}

/// 0 healthy, 1 not set up or closed, 2 master unreachable (Mooncake's `health_check`);
/// `INVALID_PARAMS` for a NULL or stale handle. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_health_check(store: mooncake_store_t) -> c_int {
    ffi_fn!(StoreCodes, { Ok(slot_ref(store)?.client_now().map_or(1, |c| c.health_check())) })
}

// ---- put -------------------------------------------------------------------------------------

/// Stores `size` bytes at `value` (copied during the call) under `key`. A key that exists
/// already keeps its first value and the call returns 0 (`mooncake_store_upsert` semantics
/// are in `mooncake_store_put_ex`). `config` NULL: one replica, no pin. Returns 0, or
/// `INVALID_PARAMS` (-600: empty key or value, NULL pointers), `NO_AVAILABLE_HANDLE` (-200:
/// no space), `RPC_FAIL` (-900), `TRANSFER_FAIL` (-800). Thread-safe.
///
/// # Safety
/// `key` must be NULL or a NUL-terminated string; `value` readable for `size` bytes; `config`
/// NULL or a valid config; all read during the call only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put(
    store: mooncake_store_t,
    key: *const c_char,
    value: *const c_void,
    size: usize,
    config: *const mooncake_replicate_config_t,
) -> c_int {
    ffi_fn!(StoreCodes, {
        // SAFETY: forwarded caller guarantees (`value` readable for `size` bytes); `value`
        // and `size` are the one part and its size, on this stack frame.
        unsafe { put_parts(store, key, &value, &size, 1, PutOptions::plain(config)) }
    })
}

/// Stores `size` bytes of `buffer` under `key` without copying them through the staging
/// buffer. `buffer` may be inside a buffer registered with `mooncake_store_register_buffer`
/// or any memory of the process (as Mooncake's TCP path takes it; over RDMA register it).
/// `size` 0 stores nothing and returns 0, as Mooncake. Codes as `mooncake_store_put`.
/// Thread-safe; `buffer` must not change during the call.
///
/// # Safety
/// As `mooncake_store_put`; `buffer` readable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_put_from(
    store: mooncake_store_t,
    key: *const c_char,
    buffer: *mut c_void,
    size: usize,
    config: *const mooncake_replicate_config_t,
) -> c_int {
    ffi_fn!(StoreCodes, {
        // SAFETY: forwarded caller guarantees.
        unsafe { put_from(store, key, buffer, size, PutOptions::plain(config)) }
    })
}

/// `mooncake_store_put_from` for `count` keys at once: `keys[i]` from `sizes[i]` bytes at
/// `buffers[i]`. Writes each key's code (0 or negative) into `results_out[i]` and returns 0;
/// returns a negative code (and writes nothing) when the arguments themselves are wrong.
/// Thread-safe.
///
/// # Safety
/// `keys`, `buffers`, `sizes` must hold `count` entries (keys NUL-terminated, each buffer
/// readable for its size); `results_out` writable for `count` ints; `config` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_put_from(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    buffers: *mut *mut c_void,
    sizes: *const usize,
    count: usize,
    config: *const mooncake_replicate_config_t,
    results_out: *mut c_int,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        // SAFETY: forwarded caller guarantees.
        unsafe { batch_put_from(name, store, keys, buffers, sizes, count, PutOptions::plain(config), results_out) }
    })
}

// ---- get -------------------------------------------------------------------------------------

/// Reads the value of `key` into `buffer` (`size` bytes), straight from the replica: `buffer`
/// may be registered with `mooncake_store_register_buffer` or any memory of the process (as
/// Mooncake's TCP path takes it; over RDMA register it).
/// Returns the value's length in bytes, or `OBJECT_NOT_FOUND` (-704), `INVALID_PARAMS` (-600:
/// `size` smaller than the value, NULL pointers), `RPC_FAIL`, `TRANSFER_FAIL`. Grants a read
/// lease on the object. Thread-safe.
///
/// # Safety
/// `key` NULL or a NUL-terminated string; `buffer` writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_get_into(
    store: mooncake_store_t,
    key: *const c_char,
    buffer: *mut c_void,
    size: usize,
) -> i64 {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let key = unsafe { str_arg(key, "key")? };
        let addr = range_arg(buffer, size, "buffer")?;
        let n = client.get_into(key, addr, size as u64)?;
        i64::try_from(n).map_err(|_| StoreError::new(ErrorCode::InternalError, format!("{n} bytes do not fit int64_t")))
    })
}

/// `mooncake_store_get_into` for `count` keys: writes each key's byte count or negative code
/// into `results_out[i]` and returns 0; a negative code (nothing written) for wrong
/// arguments. Thread-safe.
///
/// # Safety
/// `keys`, `buffers`, `sizes` must hold `count` entries (each buffer writable for its size);
/// `results_out` writable for `count` int64_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_get_into(
    store: mooncake_store_t,
    keys: *mut *const c_char,
    buffers: *mut *mut c_void,
    sizes: *const usize,
    count: usize,
    results_out: *mut i64,
) -> c_int {
    ffi_fn!(StoreCodes, |name| {
        let client = store_ref(store)?;
        results_arg(results_out, count)?;
        // SAFETY: forwarded caller guarantees.
        let items = unsafe { key_buffers(keys, buffers, sizes, count)? };
        let results: Vec<i64> = client
            .batch_get_into(&items)
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

// ---- queries ---------------------------------------------------------------------------------

/// 1 when `key` exists (and is complete), 0 when not, or a negative code. Grants a read lease
/// on an existing object, as Mooncake's `IsExist` does. Thread-safe.
///
/// # Safety
/// `key` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_is_exist(store: mooncake_store_t, key: *const c_char) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let key = unsafe { str_arg(key, "key")? };
        if key.is_empty() {
            return Ok(0); // Mooncake: an empty key exists nowhere
        }
        Ok(c_int::from(client.is_exist(key)?))
    })
}

/// `mooncake_store_is_exist` for `count` keys: 1, 0 or a negative code in `results_out[i]`;
/// returns 0, or a negative code (nothing written) for wrong arguments. Thread-safe.
///
/// # Safety
/// `keys` must hold `count` NUL-terminated strings; `results_out` writable for `count` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_batch_is_exist(
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
        let asked: Vec<&str> = keys.iter().copied().filter(|k| !k.is_empty()).collect();
        let mut answers = client.batch_is_exist(&asked).into_iter();
        let results: Vec<c_int> = keys
            .iter()
            .map(|k| match k.is_empty() {
                true => 0,
                false => match answers.next() {
                    Some(Ok(found)) => c_int::from(found),
                    Some(Err(e)) => store_code(e.code),
                    None => store_code(ErrorCode::InternalError),
                },
            })
            .collect();
        // SAFETY: `results_out` is writable for `count` entries (caller guarantee).
        unsafe { write_results(results_out, &results) };
        Ok(())
    })
}

/// The length in bytes of `key`'s value, or `OBJECT_NOT_FOUND` (-704) or another negative
/// code. Grants a read lease. Thread-safe.
///
/// # Safety
/// `key` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_get_size(store: mooncake_store_t, key: *const c_char) -> i64 {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let key = unsafe { str_arg(key, "key")? };
        let n = client.get_size(key)?;
        i64::try_from(n)
            .map_err(|_| StoreError::new(ErrorCode::InternalError, format!("size {n} does not fit int64_t")))
    })
}

/// Writes the client's segment name (`"host:port"`, how other clients and
/// `preferred_segments` name it) NUL-terminated into `buf_out[0..buf_len]`. Returns 0, or
/// `INVALID_PARAMS` for NULL arguments or a buffer too small (then the name is cut, still
/// NUL-terminated). Thread-safe.
///
/// # Safety
/// `buf_out` must be NULL or writable for `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_get_hostname(
    store: mooncake_store_t,
    buf_out: *mut c_char,
    buf_len: usize,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: writable for `buf_len` bytes (caller guarantee).
        unsafe { write_c_string(buf_out, buf_len, &client.hostname()) }.map_err(params)
    })
}

// ---- remove ----------------------------------------------------------------------------------

/// Removes `key`. An object under a read lease (a get, `is_exist` or `get_size` in the last
/// lease TTL, 10 s by default) is `OBJECT_HAS_LEASE` (-706) unless `force` is non-zero.
/// Returns 0, `OBJECT_NOT_FOUND` (-704) or another negative code. Thread-safe.
///
/// # Safety
/// `key` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_remove(store: mooncake_store_t, key: *const c_char, force: c_int) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let key = unsafe { str_arg(key, "key")? };
        if key.is_empty() {
            return Err(StoreError::new(ErrorCode::ObjectNotFound, "the key is empty")); // as Mooncake answers
        }
        client.remove(key, force != 0)
    })
}

/// Removes every object whose key matches the regular expression `pattern` (ECMAScript-like
/// syntax; leased objects only with `force`). Returns how many were removed, or a negative
/// code (`INVALID_PARAMS` for a pattern that does not compile). Thread-safe.
///
/// # Safety
/// `pattern` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_remove_by_regex(
    store: mooncake_store_t,
    pattern: *const c_char,
    force: c_int,
) -> i64 {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: NUL-terminated string (caller guarantee).
        let pattern = unsafe { str_arg(pattern, "pattern")? };
        client.remove_by_regex(pattern, force != 0)
    })
}

/// Removes every object (leased ones only with `force`: without it they are skipped). Returns
/// how many were removed, or a negative code. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_remove_all(store: mooncake_store_t, force: c_int) -> i64 {
    ffi_fn!(StoreCodes, { store_ref(store)?.remove_all(force != 0) })
}

// ---- buffers ---------------------------------------------------------------------------------

/// Registers `size` bytes at `buffer` for zero-copy `put_from` / `get_into`. The memory stays
/// owned by the caller and must stay valid until `mooncake_store_unregister_buffer` (or the
/// store's destruction). Returns 0, or `INVALID_PARAMS` (NULL, size 0, a range overlapping a
/// registered one). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_register_buffer(store: mooncake_store_t, buffer: *mut c_void, size: usize) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        if buffer.is_null() || size == 0 {
            return Err(StoreError::invalid(format!("cannot register {size} bytes at {buffer:p}")));
        }
        client.register_buffer(buffer as u64, size as u64)
    })
}

/// Unregisters the buffer registered at `buffer`. Returns 0, or `INVALID_PARAMS` when no
/// buffer was registered there. Thread-safe; a transfer in flight from or to the buffer
/// finishes first.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_store_unregister_buffer(store: mooncake_store_t, buffer: *mut c_void) -> c_int {
    ffi_fn!(StoreCodes, { store_ref(store)?.unregister_buffer(buffer as u64) })
}
