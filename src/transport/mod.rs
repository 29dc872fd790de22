//! How bytes move. A [`Slice`] is a piece of one task (a contiguous local range and a
//! contiguous target range of the same length); transports execute slices and report each
//! one's end to the task's [`CompletionSink`]. The engine above picks the transport per request
//! from the two segments' descriptors; callers never choose.
//!
//! - [`local`]: the target segment is this engine: one memcpy, no socket.
//! - [`shm`]: same host, other process: one cross-memory copy, checked by the initiator
//!   against the target's published table (ours only; offered in the descriptor).
//! - [`tcp`]: Mooncake's TCP data protocol, v2 (acknowledged) and v1 (`wire.md` §4).
//! - `rdma` (cargo feature, default): RC queue pairs over libibverbs loaded at run time.

pub mod local;
pub mod log_limit;
pub mod memory;
#[cfg(rdma_transport)]
pub mod rdma;
pub mod shm;
pub mod tcp;

use std::sync::Arc;

pub use memory::{MemoryLease, TargetMemory};

/// Direction of a transfer, as `transfer_request.opcode` encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Remote (target) → local `source`.
    Read,
    /// Local `source` → remote (target).
    Write,
}

/// Receives the end of each slice of a task. Implemented by the engine's batches.
pub trait CompletionSink: Send + Sync {
    /// Slice of task `task` ended; `bytes` were confirmed moved (0 when `ok` is false).
    fn slice_finished(&self, task: usize, bytes: u64, ok: bool);
}

/// One unit of work for a transport.
pub struct Slice {
    pub opcode: Opcode,
    /// Address in this process (the task's `source` plus the slice's offset).
    pub local: usize,
    /// The local range lies in a region registered with the engine (checked at submission).
    /// False: memory the caller vouches for (Mooncake's TCP path takes unregistered memory),
    /// which transports touch only through the kernel, so an unmapped address fails the
    /// slice instead of the process.
    pub verified: bool,
    /// Address in the target process (for the local transport: in this process).
    pub remote: u64,
    pub len: u64,
    /// Where the slice's end is reported.
    pub sink: Arc<dyn CompletionSink>,
    /// The task's index inside its batch.
    pub task: usize,
}

impl Slice {
    /// Reports this slice's end; consumes it, so a slice is reported exactly once.
    pub fn finish(self, ok: bool) {
        let bytes = if ok { self.len } else { 0 };
        self.sink.slice_finished(self.task, bytes, ok);
    }
}

/// Where a request's slices go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The target segment is this engine.
    Local,
    /// Another engine, reached over TCP.
    Tcp(tcp::PeerAddress),
    /// Another process on this host that offered the same-host path.
    Shm(shm::ShmRoute),
    /// A segment that publishes RDMA devices and keys.
    #[cfg(rdma_transport)]
    Rdma(rdma::RdmaRoute),
}

/// One open connection group, as `showLinks` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkInfo {
    pub transport: &'static str,
    pub peer: String,
    pub protocol_version: u8,
    pub connections: usize,
    pub requests_completed: u64,
    pub requests_failed: u64,
    pub bytes: u64,
}

/// A failure to accept work (not a failed transfer: those end their tasks FAILED).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("transport {0} cannot serve route {1:?}")]
    WrongRoute(&'static str, Route),
    #[error("transport is shut down")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What every transport offers the engine.
pub trait Transport: Send + Sync {
    /// The protocol name (`"tcp"`, `"local"`).
    fn name(&self) -> &'static str;
    /// Largest slice this transport wants; requests are cut to this size.
    fn slice_size(&self) -> u64;
    /// Queues `slices` for `route`. Each slice is reported to its sink exactly once: also when
    /// the transport shuts down before running it, and also when this returns an error (the
    /// slices have then been reported as failed).
    fn submit(&self, route: &Route, slices: Vec<Slice>) -> Result<(), Error>;
    /// Open links, for `showLinks`.
    fn links(&self) -> Vec<LinkInfo>;
    /// Stops every thread and fails queued work; returns when nothing of it runs any more.
    fn shutdown(&self);
}
