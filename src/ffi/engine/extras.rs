//! Our additions to the Transfer Engine interface, declared in `mooncake.h`: what Mooncake's
//! Python module does in C++ (waiting for a batch, synchronous transfers, probes, buffer
//! lookup, the local topology), offered to every caller so that each is one call that releases
//! the GIL.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use super::args::{engine_ref, requests};
use super::types::{batch_id_t, buffer_entry_t, notify_msg_t, segment_id_t, transfer_engine_t, transfer_request_t};
use crate::engine::BatchOutcome;
use crate::ffi::args::c_str;
use crate::ffi::boundary::{EngineErr, FfiError, Outcome, ffi_fn, record_last_error, set_last_error};
use crate::ffi::codes::{MOONCAKE_ERR_TIMEOUT, MOONCAKE_ERR_TRANSFER_FAILED};

/// The code of a waited-for batch's end; a failure or a timeout is recorded for
/// `mooncake_last_error()` like any other failure.
fn outcome_code(func: &str, what: &str, outcome: BatchOutcome, timeout_ms: u64) -> c_int {
    match outcome {
        BatchOutcome::Completed => 0,
        BatchOutcome::Failed => {
            // The transport logged the failed task's peer and cause where it happened.
            record_last_error(
                func,
                &format!("{what}: a task failed (see the log for the peer and cause)"),
                Outcome::Logged,
            );
            MOONCAKE_ERR_TRANSFER_FAILED
        }
        BatchOutcome::TimedOut => {
            set_last_error(func, &format!("{what}: tasks still in flight after {timeout_ms} ms"));
            MOONCAKE_ERR_TIMEOUT
        }
    }
}

/// Waits until no task of `batch_id` is in flight, at most `timeout_ms` milliseconds (spinning
/// a few microseconds, then parked: no core is burnt on long transfers). Returns 0 when every
/// task submitted to the batch completed, `MOONCAKE_ERR_TRANSFER_FAILED` when all ended and one
/// failed, `MOONCAKE_ERR_TIMEOUT` when tasks were still in flight (the batch stays allocated),
/// `ERR_INVALID_ARGUMENT` for a NULL engine or an unknown batch. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_wait_batch(engine: transfer_engine_t, batch_id: batch_id_t, timeout_ms: u64) -> c_int {
    ffi_fn!(EngineErr, |name| {
        let outcome = engine_ref(engine)?.wait_batch(batch_id, Duration::from_millis(timeout_ms))?;
        Ok(outcome_code(name, &format!("batch {batch_id}"), outcome, timeout_ms))
    })
}

/// Frees `batch_id` now when no task is in flight, else as soon as its last task has ended
/// (for callers that stop waiting). The id must not be used afterwards. Returns 0, or
/// `ERR_INVALID_ARGUMENT` for a NULL engine or an unknown batch. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_release_batch(engine: transfer_engine_t, batch_id: batch_id_t) -> c_int {
    ffi_fn!(EngineErr, { engine_ref(engine)?.release_batch(batch_id) })
}

/// Moves `count` requests (read during the call) as one batch and waits for all of them, at
/// most `timeout_ms`; with a non-NULL `notify`, the segment of the first entry receives it
/// after the data. The batch is released in every case. Returns 0 when all completed,
/// `MOONCAKE_ERR_TRANSFER_FAILED`, `MOONCAKE_ERR_TIMEOUT`, or the negative code of a refused
/// submission (`ERR_ADDRESS_NOT_REGISTERED`, `ERR_INVALID_ARGUMENT`, …). Thread-safe.
///
/// # Safety
/// `entries` must be NULL or point to `count` requests; `notify` must be NULL or point to a
/// message whose strings are NUL-terminated; all are read during the call only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_transfer_sync(
    engine: transfer_engine_t,
    entries: *mut transfer_request_t,
    count: usize,
    notify: *const notify_msg_t,
    timeout_ms: u64,
) -> c_int {
    ffi_fn!(EngineErr, |name| {
        let engine = engine_ref(engine)?;
        // SAFETY: forwarded caller guarantees.
        let reqs = unsafe { requests(entries, count)? };
        let note = if notify.is_null() {
            None
        } else {
            // SAFETY: non-NULL; the caller guarantees a readable message with C strings.
            let n = unsafe { &*notify };
            // SAFETY: as above.
            let name = unsafe { c_str(n.name, "notify.name")? };
            // SAFETY: as above.
            let msg = unsafe { c_str(n.msg, "notify.msg")? };
            Some((name.to_string(), msg.to_string()))
        };
        let outcome = engine.transfer_sync(&reqs, note, Duration::from_millis(timeout_ms))?;
        Ok(outcome_code(name, &format!("{count} request(s)"), outcome, timeout_ms))
    })
}

/// Writes up to `*count` of the buffers segment `segment_id` publishes (its cached descriptor;
/// `LOCAL_SEGMENT`: this engine's own) into `buffers`, in descriptor order, and sets `*count` to
/// how many it has. Returns 0, or `ERR_INVALID_ARGUMENT` for NULL arguments or a segment that
/// is not open. Thread-safe.
///
/// # Safety
/// `buffers` must be writable for `*count` entries; `count` must point to a writable size_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_segment_buffers(
    engine: transfer_engine_t,
    segment_id: segment_id_t,
    buffers: *mut buffer_entry_t,
    count: *mut usize,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        if count.is_null() || buffers.is_null() {
            return Err(FfiError::invalid("buffers or count is NULL"));
        }
        let desc = engine
            .segment_descriptor(segment_id)
            .ok_or_else(|| FfiError::invalid(format!("segment id {segment_id} is not open")))?;
        // SAFETY: `count` is non-NULL and writable.
        let capacity = unsafe { *count };
        for (i, b) in desc.buffers.iter().take(capacity).enumerate() {
            // SAFETY: `i < capacity`, inside the caller's writable array.
            unsafe { buffers.add(i).write(buffer_entry_t { addr: b.addr as *mut _, length: b.length as usize }) };
        }
        // SAFETY: as above.
        unsafe { *count = desc.buffers.len() };
        Ok(())
    })
}

/// Sends a handshake probe to `segment_name` (`"host:port"`) and waits for its answer
/// (Mooncake's `send_probe`). Returns 0 when the peer answered, else `ERR_SOCKET`, `ERR_DNS`,
/// `ERR_MALFORMED_JSON` or `ERR_REJECT_HANDSHAKE`; `ERR_INVALID_ARGUMENT` for NULL arguments.
/// Thread-safe.
///
/// # Safety
/// `segment_name` must be NULL or a NUL-terminated string (read during the call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_send_probe(engine: transfer_engine_t, segment_name: *const c_char) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated string read during the call.
        let name = unsafe { c_str(segment_name, "segment_name")? };
        engine.send_probe(name)
    })
}

/// Writes Mooncake's JSON text of a topology into `buf[0..buf_len]`, NUL-terminated, and
/// returns its length in bytes without the NUL, as `snprintf` does: a result `>= buf_len`
/// means the text was cut (still NUL-terminated when `buf_len > 0`); call again with
/// `result + 1` bytes. `buf` may be NULL when `buf_len` is 0, to ask for the length.
/// The text is Mooncake's `Topology::toString` (what its Python `get_local_topology` returns):
/// the NIC priority matrix, `{"cpu:<node>": [[preferred RDMA devices], [other ones]], …}`,
/// one entry per NUMA node, tab-indented as Mooncake prints it (`"{}\n"` when empty).
/// With `engine` non-NULL: that engine's topology (discovered at creation under
/// `auto_discover` or by `discoverTopology`, or given to `installTransport`); `device_names`
/// must then be NULL or empty. With `engine` NULL: a fresh discovery of this machine, as
/// Mooncake's Python module makes one with a temporary engine (`MC_TE_FILTERS`,
/// `MC_TE_FILTERS_EXCLUDE` and `MC_CUSTOM_TOPO_JSON` apply), keeping only the RDMA devices
/// `device_names` lists (comma-separated; NULL or empty: all). Returns a negative
/// `ERR_INVALID_ARGUMENT` for a stale engine, `device_names` with an engine, or a NULL `buf`
/// with a non-zero `buf_len`. Thread-safe.
///
/// # Safety
/// `device_names` must be NULL or a NUL-terminated string (read during the call); `buf` must
/// be NULL or writable for `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_local_topology(
    engine: transfer_engine_t,
    device_names: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
) -> c_int {
    ffi_fn!(EngineErr, {
        let devices = if device_names.is_null() {
            ""
        } else {
            // SAFETY: NUL-terminated string read during the call.
            unsafe { c_str(device_names, "device_names")? }
        };
        if buf.is_null() && buf_len > 0 {
            return Err(FfiError::invalid(format!("buf is NULL but buf_len is {buf_len}")));
        }
        let text = if engine.is_null() {
            crate::engine::discover_local(devices).to_mooncake_json()
        } else {
            let engine = engine_ref(engine)?;
            if !devices.is_empty() {
                return Err(FfiError::invalid("device_names is for a fresh discovery (engine NULL)"));
            }
            engine.topology().to_mooncake_json()
        };
        let len = c_int::try_from(text.len()).map_err(|_| FfiError::invalid("the topology text is too long"))?;
        if buf_len > 0 {
            let n = text.len().min(buf_len - 1);
            // SAFETY: `n + 1 <= buf_len` bytes into the caller's writable, non-NULL buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
                *buf.add(n) = 0;
            }
        }
        Ok(len)
    })
}
