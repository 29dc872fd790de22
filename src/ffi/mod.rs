//! The C ABI: Mooncake's `transfer_engine_c.h` and `store_c.h`, and our `mooncake.h`.
//!
//! The only `extern "C"` code of the crate. Each entry point checks its arguments, converts
//! them, calls one safe engine method inside [`boundary::boundary`] (panics never cross the
//! boundary) and maps the result to Mooncake's documented code, keeping the message for
//! `mooncake_last_error()`. The headers in `include/` are generated from these files by
//! cbindgen (`tests/headers.rs` regenerates and compares them).

pub mod batch;
pub mod boundary;
pub mod cli;
pub mod codes;
pub mod engine;
pub mod extras;
pub mod memory;
pub mod mooncake;
pub mod notify;
pub mod segment;
pub mod store;
pub mod store_args;
pub mod store_extras;
pub mod types;
