//! Dummy clients: many inference processes of one host share one real client
//! (`mooncake_client`), which owns the segment and the engine, as SGLang deploys Mooncake.
//! The protocol between them is ours: a unix socket for requests and memfds for the bytes.
//! It stays here ([`proto`], and `wire`) rather than in `crate::proto`: both of its ends are
//! store code (the dummy, and the real client's [`DummyServer`]), so no other module reads it.

pub mod client;
pub mod proto;
pub mod server;
mod surface;
mod wire;

pub use client::DummyClient;
pub use server::DummyServer;
