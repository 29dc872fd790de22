//! What the engine's entry points share: the engine handle table and the conversion of C
//! transfer requests.

use std::ffi::c_void;
use std::sync::Arc;

use super::types::{OPCODE_READ, OPCODE_WRITE, transfer_request};
use crate::engine::{TransferEngine, TransferRequest};
use crate::ffi::args::c_slice;
use crate::ffi::boundary::{FfiError, FfiResult};
use crate::ffi::handles::HandleTable;
use crate::transport::Opcode;

/// Live engine handles. A NULL, stale or foreign handle is `ERR_INVALID_ARGUMENT`.
pub static ENGINES: HandleTable<TransferEngine> = HandleTable::new("engine", "a live engine");

/// The engine behind `handle`, or `ERR_INVALID_ARGUMENT` for NULL or a destroyed handle.
pub fn engine_ref(handle: *mut c_void) -> FfiResult<Arc<TransferEngine>> {
    Ok(ENGINES.get(handle)?)
}

/// Runs `f` on the engine behind `handle` under the table's read lock, without cloning its
/// `Arc`: for calls that never block (the status poll). Calls that may wait on the network use
/// [`engine_ref`], so that no lock is held while they wait.
pub fn with_engine<R>(handle: *mut c_void, f: impl FnOnce(&TransferEngine) -> FfiResult<R>) -> FfiResult<R> {
    ENGINES.with(handle, |e| f(e))
}

/// Converts `count` C requests, refusing bad opcodes.
///
/// # Safety
/// `entries` must be NULL or point to `count` readable requests.
pub unsafe fn requests(entries: *mut transfer_request, count: usize) -> FfiResult<Vec<TransferRequest>> {
    // SAFETY: the caller passes `count` readable entries.
    let list = unsafe { c_slice(entries as *const transfer_request, count, "entries")? };
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let opcode = match e.opcode {
                OPCODE_READ => Opcode::Read,
                OPCODE_WRITE => Opcode::Write,
                other => return Err(FfiError::invalid(format!("entry {i}: opcode {other} is neither READ nor WRITE"))),
            };
            Ok(TransferRequest {
                opcode,
                source: e.source as u64,
                target_id: e.target_id,
                target_offset: e.target_offset,
                length: e.length,
            })
        })
        .collect()
}
