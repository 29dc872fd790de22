//! libmooncake: Mooncake's Transfer Engine rebuilt in Rust.
//!
//! The crate is layered (see `docs/ARCHITECTURE.md`):
//! - [`ffi`]: the only `extern "C"` surface (`transfer_engine_c.h`, `mooncake.h`);
//! - [`engine`]: the Transfer Engine itself (regions, segments, batches, notifications);
//! - [`transport`]: how bytes move (local memcpy, Mooncake's TCP protocol);
//! - [`metadata`]: how segment descriptors are found (P2P handshake), and the handshake port;
//! - [`runtime`]: the one background tokio runtime used by metadata calls;
//! - [`topology`]: NUMA nodes, NICs and RDMA devices from sysfs, and the pages' NUMA node.
//!
//! Data flows down these layers and never back up; upward notifications go through traits
//! that the upper layer implements (for example [`metadata::HandshakeService`]).

pub mod config;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod gflags;
pub mod logging;
pub mod master;
pub mod metadata;
pub mod proto;
pub mod runtime;
pub mod store;
pub(crate) mod sys;
pub mod topology;
pub mod transport;

pub mod bench;
pub mod cli;

/// The library version, `"MAJOR.MINOR.PATCH"`, as `mooncake_version()` returns it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
