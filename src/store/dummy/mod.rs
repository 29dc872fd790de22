//! Dummy clients: many inference processes of one host share one real client
//! (`mooncake_client`), which owns the segment and the engine, as SGLang deploys Mooncake.
//! The protocol between them is ours: a unix socket for requests and memfds for the bytes.

pub mod client;
pub mod proto;
pub mod server;
mod wire;

pub use client::DummyClient;
pub use server::DummyServer;
