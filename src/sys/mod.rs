//! What the operating system demands, wrapped thinly: calls that need `unsafe` or a
//! descriptor dance, and nothing about why the crate makes them. The layers above give the
//! answers their meaning (the store turns a failed mapping into its own error codes, topology
//! reads NUMA nodes out of `move_pages`).
//!
//! - [`mapping`]: anonymous and memfd mappings, written and read through bounds checks;
//! - [`fd_passing`]: bytes with a file descriptor attached (`SCM_RIGHTS`) over unix sockets;
//! - [`move_pages`]: the raw `move_pages(2)` system call, as a query of each page's node.
//!
//! This module names no other module of the crate (`tests/layers.rs` checks it).

pub mod fd_passing;
pub mod mapping;
pub mod move_pages;
