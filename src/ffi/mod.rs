//! The C ABI: Mooncake's `transfer_engine_c.h` and `store_c.h`, and our `mooncake.h`.
//!
//! The only `extern "C"` code of the crate, and the only place where the core's kinds
//! ([`crate::error::Code`], the store's `ErrorCode`, [`crate::engine::TaskState`]) become C
//! integers ([`codes`]). Each entry point's body is one `boundary::ffi_fn!`: it checks the
//! arguments (handles are looked up in a [`handles::HandleTable`], never dereferenced),
//! converts them ([`args`]), calls one safe engine or store method, and returns the code of
//! its [`boundary::Family`]; panics never cross the boundary, and every failure is kept for
//! `mooncake_last_error()` as `"<function>: <message>"`. The headers in `include/` are
//! generated from these files by cbindgen (`tests/headers.rs` regenerates and compares them).
//!
//! Layout: the shared pieces here (`boundary`, `handles`, `codes`, `args`, `mooncake` for
//! the library-wide calls, `cli`), the Transfer Engine's entry points in [`engine`] and the
//! Store's in [`store`].

pub mod args;
pub mod boundary;
pub mod cli;
pub mod codes;
pub mod engine;
pub mod handles;
pub mod mooncake;
pub mod store;
