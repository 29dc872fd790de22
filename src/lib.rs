//! libmooncake: Mooncake's Transfer Engine and Store, rebuilt in Rust.
//!
//! The crate is layered (see `docs/ARCHITECTURE.md`, "Layers"; `tests/layers.rs` enforces it),
//! from the top:
//! - [`ffi`]: the only `extern "C"` surface (`transfer_engine_c.h`, `store_c.h`, `mooncake.h`);
//!   [`cli`] and [`bench`](mod@bench): the tools (`mooncake_master`, `mooncake_client`, the
//!   HTTP metadata server, `mooncake-bench`) that `src/bin/` launches;
//! - [`store`]: the Mooncake Store client (real clients with an engine and a segment, and the
//!   dummy clients that share one); [`master`]: `mooncake_master`, the store's metadata
//!   service. Neither names the other: they share only [`proto`];
//! - [`engine`]: the Transfer Engine itself (regions, segments, batches, notifications);
//! - [`transport`]: how bytes move (local memcpy, same-host cross-memory copies, Mooncake's TCP
//!   protocol, and RDMA over libibverbs loaded at run time with the `rdma` feature);
//! - [`metadata`]: how segment descriptors are found (P2P handshake, HTTP, etcd, redis), the
//!   handshake port and the HTTP metadata server;
//! - [`topology`]: NUMA nodes, NICs and RDMA devices from sysfs, and the pages' NUMA node;
//! - base modules: [`config`] (the `MC_*` variables), [`runtime`] (the one background tokio
//!   runtime), [`logging`], [`gflags`], [`error`], [`proto`] (the master protocol: requests,
//!   replies, Mooncake's store `ErrorCode`, framing) and `sys` (thin wrappers of what the OS
//!   demands: mappings, fd passing, `move_pages`).
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
