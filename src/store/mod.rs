//! The Mooncake Store client: what `store_c.h` and `mooncake.store` call.
//!
//! A [`Store`] owns a Transfer Engine, an RPC connection pool to the master
//! ([`rpc::MasterClient`]), the segment it contributes (`global_segment_size` bytes, mounted
//! with the master) and a registered staging buffer (`local_buffer_size`) for values that do
//! not live in registered memory. A put asks the master for space (`PutStart`), writes every
//! replica, then makes the object visible (`PutEnd`); a get asks for the replicas (which grants
//! a read lease) and reads one. Bytes move by memcpy when the replica is in this process, and
//! otherwise through the engine, which picks the same-host path or TCP.

mod api;
pub mod client;
pub mod dummy;
mod error;
mod get;
mod put;
pub mod rpc;
pub mod segments;
pub mod size;
mod staging;
pub mod standalone;
pub mod tasks;
mod transfer;
// Mooncake's surface beyond put/get: shared engines, batch removal, replica descriptors, sessions.
pub mod session;
pub mod surface;

use std::time::Duration;

pub use crate::proto::{ErrorCode, ReplicaConfig};
pub use api::Store;
pub use error::{StoreError, StoreResult};

/// `setup(...)`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `host` or `host:port`; without a port one is picked from
    /// `MC_STORE_CLIENT_MIN_PORT..=MC_STORE_CLIENT_MAX_PORT` (12300–14300).
    pub local_hostname: String,
    /// The Transfer Engine's metadata connection string (`P2PHANDSHAKE`, `http://…`, …).
    pub metadata_server: String,
    /// Bytes this client contributes to the pool; 0 makes a client that only reads and writes.
    pub global_segment_size: u64,
    /// Bytes of the registered staging buffer that `put`/`get` of bytes pass through (0: none;
    /// those calls then fail with `INVALID_PARAMS`, as Mooncake's).
    pub local_buffer_size: u64,
    /// `"tcp"` or `"rdma"` (which falls back to tcp, as Mooncake does, on a host without a
    /// usable RDMA device).
    pub protocol: String,
    /// With `"rdma"`: the RDMA devices to use, comma-separated (`""`: every discovered one).
    pub device_name: String,
    /// `host:port` of `mooncake_master`.
    pub master_server_addr: String,
}

impl StoreConfig {
    /// A tcp client of `master_server_addr` with a 16 MiB segment and a 16 MiB staging buffer
    /// (callers set the sizes they want).
    pub fn new(local_hostname: &str, metadata_server: &str, master_server_addr: &str) -> StoreConfig {
        StoreConfig {
            local_hostname: local_hostname.into(),
            metadata_server: metadata_server.into(),
            global_segment_size: 16 << 20,
            local_buffer_size: 16 << 20,
            protocol: "tcp".into(),
            device_name: String::new(),
            master_server_addr: master_server_addr.into(),
        }
    }
}

/// One key of a zero-copy batch: the key and a range of memory (registered or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBuffer<'a> {
    pub key: &'a str,
    pub addr: u64,
    pub len: u64,
}

/// One range of `get_into_ranges`: `len` bytes from offset `src` of the object into
/// `buffer + dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
}

/// How long RPCs to the master may take before they fail with `RPC_FAIL`.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

// ---- multi-buffer puts and gets (`multi.rs`) ----
mod multi;
pub use multi::{KeyParts, Part};
mod ranges;
pub use ranges::{KeyRanges, RangePart};
