//! Our additions, declared in `mooncake.h`.

use std::ffi::c_char;

use super::boundary::{EngineErr, ffi_fn, last_error_ptr};

/// The text of the last failure on the calling thread: which call, which argument or peer,
/// and why. Returns "" when this thread has had no failure. As with `errno`, a successful call
/// does not clear it. The string is owned by the library and stays valid until the next call
/// into the library on this thread; do not free it. Thread-safe (per-thread storage).
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_last_error() -> *const c_char {
    ffi_fn!(EngineErr, { Ok(last_error_ptr()) })
}

/// The library version, `"MAJOR.MINOR.PATCH"` (a static string; do not free).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mooncake_version() -> *const c_char {
    ffi_fn!(EngineErr, { Ok(concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char) })
}
