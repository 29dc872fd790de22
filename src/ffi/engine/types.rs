//! Types and constants of `transfer_engine_c.h`, laid out exactly as Mooncake declares them.
#![allow(non_camel_case_types)] // Mooncake's C names are the contract.

use std::ffi::{c_char, c_int, c_void};

/// Handle of an open segment (same type as `segment_id_t`).
pub type segment_handle_t = i32;
/// Id of an open segment; `LOCAL_SEGMENT` (0) is the engine's own segment, peers are >= 1.
pub type segment_id_t = i32;
/// Id of a batch, from `allocateBatchID`; `INVALID_BATCH` on failure.
pub type batch_id_t = u64;

/// The engine's own segment.
pub const LOCAL_SEGMENT: segment_id_t = 0;
/// Returned by `allocateBatchID` on failure.
pub const INVALID_BATCH: batch_id_t = u64::MAX;

/// Remote (target) memory -> local `source`.
pub const OPCODE_READ: c_int = 0;
/// Local `source` -> remote (target) memory.
pub const OPCODE_WRITE: c_int = 1;

/// One transfer of a batch.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct transfer_request {
    /// `OPCODE_READ` or `OPCODE_WRITE`.
    pub opcode: c_int,
    /// Local memory inside one region registered with this engine.
    pub source: *mut c_void,
    /// `LOCAL_SEGMENT` or an id from `openSegment`.
    pub target_id: segment_id_t,
    /// Absolute address inside a buffer the target registered (Mooncake calls it an offset).
    pub target_offset: u64,
    /// Bytes to move; 0 completes at once.
    pub length: u64,
}
pub type transfer_request_t = transfer_request;

/// A notification: who sent it (`name`) and its text (`msg`), both NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct notify_msg {
    pub name: *mut c_char,
    pub msg: *mut c_char,
}
pub type notify_msg_t = notify_msg;

/// Task state values of `transfer_status.status`.
pub const STATUS_WAITING: c_int = 0;
pub const STATUS_PENDING: c_int = 1;
pub const STATUS_INVALID: c_int = 2;
pub const STATUS_CANCELED: c_int = 3;
pub const STATUS_COMPLETED: c_int = 4;
pub const STATUS_TIMEOUT: c_int = 5;
pub const STATUS_FAILED: c_int = 6;

/// Status of one task: its state and the bytes confirmed moved so far.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct transfer_status {
    pub status: c_int,
    pub transferred_bytes: u64,
}
pub type transfer_status_t = transfer_status;

/// RDMA flavour of `segment_desc` (declared for source compatibility; no function uses it).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct segment_desc_rdma {
    pub addr: *mut c_void,
    pub size: u64,
    pub location: *const c_char,
}

/// NVMe-oF flavour of `segment_desc`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct segment_desc_nvmeof {
    pub file_path: *const c_char,
    pub subsystem_name: *const c_char,
    pub proto: *const c_char,
    pub ip: *const c_char,
    pub port: u64,
}

/// The union inside `segment_desc` (anonymous in Mooncake's header; same layout).
#[repr(C)]
#[derive(Clone, Copy)]
pub union segment_desc_union {
    pub rdma: segment_desc_rdma,
    pub nvmeof: segment_desc_nvmeof,
}

/// A segment description (RDMA / NVMe-oF), as Mooncake declares it.
#[repr(C)]
pub struct segment_desc {
    pub r#type: c_int,
    pub desc_: segment_desc_union,
}
pub type segment_desc_t = segment_desc;

/// One region for `registerLocalMemoryBatch`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct buffer_entry {
    pub addr: *mut c_void,
    pub length: usize,
}
pub type buffer_entry_t = buffer_entry;

/// Opaque engine handle from `createTransferEngine`.
pub type transfer_engine_t = *mut c_void;
/// Opaque transport handle from `installTransport`.
pub type transport_t = *mut c_void;

/// Load of one NIC, from `getNicLoadStats`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct nic_load_stat {
    pub device_name: [c_char; 64],
    pub inflight_bytes: u64,
    pub ewma_bandwidth_bps: f64,
}
pub type nic_load_stat_t = nic_load_stat;
