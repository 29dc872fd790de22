//! Engine lifecycle, transports and diagnostics of `transfer_engine_c.h`.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use super::args::{ENGINES, engine_ref};
use super::types::{nic_load_stat_t, transfer_engine_t, transport_t};
use crate::engine::{EngineOptions, TransferEngine};
use crate::ffi::args::{c_str, write_c_string};
use crate::ffi::boundary::{EngineErr, FfiError, ffi_fn};

/// Creates an engine. `metadata_conn_string`: `"P2PHANDSHAKE"` (no server: the engine's
/// segment name becomes `"<host of local_server_name>:<random port in 15000..17000>"`),
/// `"http://host:port/path"` (an HTTP metadata server), `"etcd://h1,h2"` or a bare
/// `"host:port"` (etcd; builds with the `etcd` feature) or `"redis://host:port"` (builds with
/// the `redis` feature): the segment name is then `local_server_name`. A scheme this build
/// lacks the feature for, or an unknown one, makes the call return NULL with the reason in
/// `mooncake_last_error()`. `ip_or_host_name` (may be NULL) and `rpc_port` are ignored in P2P
/// mode, as in Mooncake. `auto_discover` non-zero discovers the topology (see
/// `discoverTopology`; a file named by `MC_CUSTOM_TOPO_JSON` gives the NIC priority matrix
/// instead) and installs tcp, and rdma when the topology lists RDMA devices and they open
/// (builds with the `rdma` feature, the default on x86_64; libibverbs is loaded at run time;
/// without usable devices the engine has tcp only). All strings are read during the call only.
/// Returns an engine handle, owned by the caller and released with `destroyTransferEngine`,
/// or NULL on failure. Thread-safe; the handle may be used from any thread.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn createTransferEngine(
    metadata_conn_string: *const c_char,
    local_server_name: *const c_char,
    ip_or_host_name: *const c_char,
    rpc_port: u64,
    auto_discover: c_int,
) -> transfer_engine_t {
    ffi_fn!(EngineErr, {
        // SAFETY: the caller passes NUL-terminated strings (or NULL), read during the call.
        let metadata = unsafe { c_str(metadata_conn_string, "metadata_conn_string")? };
        // SAFETY: as above.
        let name = unsafe { c_str(local_server_name, "local_server_name")? };
        let ip = if ip_or_host_name.is_null() {
            ""
        } else {
            // SAFETY: as above.
            unsafe { c_str(ip_or_host_name, "ip_or_host_name")? }
        };
        let engine = TransferEngine::new(EngineOptions {
            metadata: metadata.to_string(),
            local_server_name: name.to_string(),
            ip_or_host_name: ip.to_string(),
            rpc_port,
            auto_discover: auto_discover != 0,
        })?;
        Ok(ENGINES.insert(engine))
    })
}

/// Destroys an engine: closes its listeners and connections, fails its queued transfers,
/// joins its threads and withdraws its segment. NULL is a no-op. The handle must not be used
/// afterwards (a stale handle passed to any function returns `ERR_INVALID_ARGUMENT`).
/// Thread-safe; calls in flight on other threads finish first.
#[unsafe(no_mangle)]
pub extern "C" fn destroyTransferEngine(engine: transfer_engine_t) {
    ffi_fn!(EngineErr, {
        if let Some(engine) = ENGINES.remove(engine)? {
            engine.shutdown();
        }
        Ok(())
    })
}

/// Discovers the machine again from sysfs: NUMA nodes and their CPUs, network interfaces,
/// RDMA devices (those `MC_TE_FILTERS` / `MC_TE_FILTERS_EXCLUDE` let through) and the NIC
/// priority matrix built from them, which replaces the engine's (as Mooncake's
/// `discoverTopology`, this ignores `MC_CUSTOM_TOPO_JSON`). Read it with
/// `mooncake_local_topology`. Returns 0 (a machine without NUMA support or RDMA devices is
/// not an error), or `ERR_INVALID_ARGUMENT` for a NULL or stale engine. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn discoverTopology(engine: transfer_engine_t) -> c_int {
    ffi_fn!(EngineErr, { engine_ref(engine)?.discover_topology() })
}

/// Writes `"ip:port"` of the handshake (RPC) port into `buf_out[0..buf_len]`, NUL-terminated.
/// Returns 0, or `ERR_INVALID_ARGUMENT` for a NULL engine/buffer or a buffer too small (the
/// text is then cut). Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getLocalIpAndPort(engine: transfer_engine_t, buf_out: *mut c_char, buf_len: usize) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: the caller's buffer is writable for `buf_len` bytes.
        unsafe { write_c_string(buf_out, buf_len, &engine.local_ip_and_port()) }
    })
}

/// Installs a transport: `"tcp"`, or `"rdma"` (builds with the `rdma` feature, the default on
/// x86_64; libibverbs is loaded at run time: NULL when it cannot be loaded or no device
/// opens). Installing one twice returns the same handle. `"nvmeof"` and other device transports are not in this build: NULL, with
/// `mooncake_last_error()` saying so. `args` may be NULL; when `args` and `args[0]` are
/// non-NULL, `args[0]` is a NUL-terminated NIC priority matrix in Mooncake's JSON
/// (`{"cpu:0": [["mlx5_0"], ["mlx5_1"]], …}`), read during the call, that replaces the
/// engine's before the transport is installed, as in Mooncake (for any protocol, unless that
/// transport is already installed), less the devices sysfs shows no usable RDMA device for
/// (Mooncake's RDMA transport drops those it cannot open); a malformed one changes nothing
/// and makes the call return NULL with the reason in `mooncake_last_error()`. The handle is owned by the
/// engine (valid until `uninstallTransport` or `destroyTransferEngine`; never free it).
/// Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn installTransport(
    engine: transfer_engine_t,
    proto: *const c_char,
    args: *mut *mut c_void,
) -> transport_t {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated string read during the call.
        let proto = unsafe { c_str(proto, "proto")? };
        // SAFETY: `args` is NULL or points to at least one readable pointer.
        let first = if args.is_null() { ptr::null_mut() } else { unsafe { *args } };
        let matrix = if first.is_null() {
            None
        } else {
            // SAFETY: a non-NULL `args[0]` is a NUL-terminated string read during the call.
            Some(unsafe { c_str(first as *const c_char, "args[0]")? })
        };
        Ok(engine.install_transport_with_matrix(proto, matrix)? as *mut c_void)
    })
}

/// Uninstalls a transport (its connections close and its queued transfers fail). Returns 0
/// (also for a known transport that is not installed), or `ERR_INVALID_ARGUMENT` for NULL
/// arguments or an unknown protocol name. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uninstallTransport(engine: transfer_engine_t, proto: *const c_char) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated string read during the call.
        let proto = unsafe { c_str(proto, "proto")? };
        engine.uninstall_transport(proto)
    })
}

/// Reports per-NIC load of the RDMA transport: each device's bytes posted and not yet
/// completed, and its recent bandwidth (bits per second, an exponential average that decays to
/// 0 after a second without traffic). `*count` is the capacity of `stats` on input and the
/// number of entries written on output (`min(capacity, NICs)`). Without rdma
/// installed: 0 entries. Returns 0, or `ERR_INVALID_ARGUMENT` for NULL arguments. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getNicLoadStats(
    engine: transfer_engine_t,
    stats: *mut nic_load_stat_t,
    count: *mut usize,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        if stats.is_null() || count.is_null() {
            return Err(FfiError::invalid("stats or count is NULL"));
        }
        // SAFETY: `count` is non-NULL and points to a readable, writable size_t.
        let capacity = unsafe { *count };
        let load = engine.nic_load();
        for (i, (name, inflight, bps)) in load.iter().take(capacity).enumerate() {
            let mut entry =
                nic_load_stat_t { device_name: [0; 64], inflight_bytes: *inflight, ewma_bandwidth_bps: *bps };
            for (dst, src) in entry.device_name.iter_mut().zip(name.bytes().take(63)) {
                *dst = src as std::ffi::c_char;
            }
            // SAFETY: the caller gave room for `capacity` entries and `i < capacity`.
            unsafe { stats.add(i).write(entry) };
        }
        // SAFETY: as above.
        unsafe { *count = load.len().min(capacity) };
        Ok(())
    })
}

/// On SIGINT or SIGTERM, shut this engine down (listeners closed, queued transfers failed,
/// segment withdrawn; bounded to 5 s) and then let the signal's default action end the process.
/// Failures (NULL engine, handlers not installable) are recorded for `mooncake_last_error()`.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn enableGracefulShutdown(engine: transfer_engine_t) {
    ffi_fn!(EngineErr, { engine_ref(engine)?.enable_graceful_shutdown() })
}

/// Describes the engine's open links into `buf_out[0..buf_len]` (NUL-terminated): one line per
/// link, or a JSON array when `json` is non-zero. Returns 0, or `ERR_INVALID_ARGUMENT` for NULL
/// arguments or a buffer too small (the text is then cut). Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn showLinks(
    engine: transfer_engine_t,
    buf_out: *mut c_char,
    buf_len: usize,
    json: c_int,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: the caller's buffer is writable for `buf_len` bytes.
        unsafe { write_c_string(buf_out, buf_len, &engine.show_links(json != 0)) }
    })
}
