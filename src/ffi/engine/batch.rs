//! Batches and transfers of `transfer_engine_c.h`. `submitTransfer`,
//! `submitTransferWithNotify`, `getTransferStatus` and `freeBatchID` return Mooncake's
//! positive status codes (`MOONCAKE_STATUS_*` in `mooncake.h`); `allocateBatchID` returns
//! `INVALID_BATCH` on failure.

use std::ffi::c_int;

use super::args::{engine_ref, requests, with_engine};
use super::types::{INVALID_BATCH, batch_id_t, notify_msg_t, transfer_engine_t, transfer_request, transfer_status};
use crate::ffi::args::c_str;
use crate::ffi::boundary::{EngineErr, EngineStatus, FfiError, ffi_fn};
use crate::ffi::codes::task_state_code;

/// Allocates a batch that holds `batch_size` tasks over all its submissions. Returns its id,
/// or `INVALID_BATCH` (NULL engine, or not enough memory). Free it with `freeBatchID`.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn allocateBatchID(engine: transfer_engine_t, batch_size: usize) -> batch_id_t {
    ffi_fn!(EngineErr, else INVALID_BATCH, { engine_ref(engine)?.allocate_batch(batch_size) })
}

/// Queues `count` transfers (read during the call) into `batch_id` and returns at once; poll
/// each with `getTransferStatus` (task ids continue across submissions of one batch).
/// All or nothing: returns 0, or 1 InvalidArgument (NULL arguments, bad opcode, unknown batch
/// or segment), 2 TooManyRequests (over the batch size), 3 AddressNotRegistered (a `source`
/// range not inside one registered region on an RDMA route; the local, same-host and TCP
/// routes take unregistered memory, as Mooncake's TCP transport does, and a `source` that is
/// not mapped ends its task `STATUS_FAILED`), 8 NotSupportedTransport (the target's protocol
/// is not installed). A remote range the target refuses ends its task `STATUS_FAILED`.
/// The `source` memory must stay valid until the task has ended. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn submitTransfer(
    engine: transfer_engine_t,
    batch_id: batch_id_t,
    entries: *mut transfer_request,
    count: usize,
) -> c_int {
    ffi_fn!(EngineStatus, {
        let engine = engine_ref(engine)?;
        // SAFETY: forwarded caller guarantees.
        let reqs = unsafe { requests(entries, count)? };
        engine.submit(batch_id, &reqs, None)
    })
}

/// Like `submitTransfer`; in addition, once every task of the batch has completed, the segment
/// of the first entry receives `notify_msg` (both strings copied during the call). No
/// notification is sent when a task fails. Same return codes (1 also for an empty list or NULL
/// strings). Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn submitTransferWithNotify(
    engine: transfer_engine_t,
    batch_id: batch_id_t,
    entries: *mut transfer_request,
    count: usize,
    notify_msg: notify_msg_t,
) -> c_int {
    ffi_fn!(EngineStatus, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated strings read during the call.
        let name = unsafe { c_str(notify_msg.name, "notify_msg.name")? }.to_string();
        // SAFETY: as above.
        let msg = unsafe { c_str(notify_msg.msg, "notify_msg.msg")? }.to_string();
        // SAFETY: forwarded caller guarantees.
        let reqs = unsafe { requests(entries, count)? };
        engine.submit(batch_id, &reqs, Some((name, msg)))
    })
}

/// Writes the state of task `task_id` of `batch_id` into `*status`: `STATUS_WAITING` while in
/// flight, then `STATUS_COMPLETED` or `STATUS_FAILED`; `transferred_bytes` counts bytes
/// confirmed so far. Returns 0, or 1 InvalidArgument (NULL arguments, unknown batch or task).
/// Lock-free on the hot path; thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getTransferStatus(
    engine: transfer_engine_t,
    batch_id: batch_id_t,
    task_id: usize,
    status: *mut transfer_status,
) -> c_int {
    ffi_fn!(EngineStatus, {
        if status.is_null() {
            return Err(FfiError::invalid("status is NULL"));
        }
        let s = with_engine(engine, |e| e.task_status(batch_id, task_id))?;
        // SAFETY: `status` is non-NULL and points to a writable transfer_status.
        unsafe {
            (*status).status = task_state_code(s.status);
            (*status).transferred_bytes = s.transferred_bytes;
        }
        Ok(())
    })
}

/// Frees a batch. Returns 0, 4 BatchBusy while any of its tasks is in flight (nothing is
/// freed), or 1 InvalidArgument (NULL engine, unknown batch). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn freeBatchID(engine: transfer_engine_t, batch_id: batch_id_t) -> c_int {
    ffi_fn!(EngineStatus, { engine_ref(engine)?.free_batch(batch_id) })
}
