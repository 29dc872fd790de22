//! The handshake port (Mooncake's "RPC port"): descriptor exchange in P2P mode,
//! notifications, probes, and the RDMA connection exchange (`wire.md` §2).

pub mod client;
pub mod frame;
pub mod server;

pub use client::{ClientLimits, request};
pub use frame::FrameType;
pub use server::{HandshakeServer, HandshakeService, empty_connection_reply};
