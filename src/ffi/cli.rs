//! `mooncake_cli_main`: the command-line tools (`crate::cli`) behind one C entry point, so
//! that the Python package's console scripts run them from the library (the wheel ships no
//! executables). Declared in `mooncake.h`, with its exit statuses `CLI_BAD_CALL` and
//! `CLI_INTERNAL_ERROR`.

use std::ffi::{CStr, OsString, c_char, c_int};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

use super::args::{c_slice, c_str};
use super::boundary::{Family, FfiError, ffi_fn, last_error_ptr, set_last_error};
use crate::error::Code;

/// The status returned when the call itself is refused (unknown tool, bad `argv`): a usage
/// error, as the tools return for a bad command line.
pub const CLI_BAD_CALL: c_int = 2;
/// The status returned when a tool panicked (`EX_SOFTWARE`).
pub const CLI_INTERNAL_ERROR: c_int = 70;

/// The exit statuses of `mooncake_cli_main`'s own failures; each is also printed on stderr.
pub enum CliStatus {}

impl Family for CliStatus {
    type Error = FfiError;
    fn code(e: &FfiError) -> c_int {
        if e.code == Code::InvalidArgument { CLI_BAD_CALL } else { CLI_INTERNAL_ERROR }
    }
    fn record(func: &str, e: &FfiError) {
        set_last_error(func, &e.message);
    }
    fn panic_code() -> c_int {
        CLI_INTERNAL_ERROR
    }
    fn after_failure() {
        // SAFETY: `last_error_ptr` returns this thread's last error, a live NUL-terminated
        // string that nothing changes before this line reads it.
        let message = unsafe { CStr::from_ptr(last_error_ptr()) };
        eprintln!("{}", message.to_string_lossy());
    }
}

/// Runs the tool `tool` (`mooncake_master`, `mooncake_client`, `mooncake-bench` (also
/// `mooncake_bench`, `transfer_engine_bench`) or `mooncake_http_metadata_server`) with the
/// command line `argv[0..argc]` (`argv[0]`: the name it was run as, which the tool names itself
/// by) and returns its exit status. A server runs until SIGINT or SIGTERM. Returns 2 when `tool`
/// is unknown or an argument is invalid, 70 when the tool failed internally (a panic); the
/// reason is printed on stderr and kept for `mooncake_last_error()`. The strings are read
/// during the call only and stay the caller's. Runs on the calling thread until the tool ends;
/// thread-safe, but the signals a server tool waits for are the whole process's.
///
/// # Safety
/// `tool` must be NULL or a NUL-terminated string; `argv` must be NULL or point to `argc`
/// pointers, each NULL or a NUL-terminated string, all readable during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_cli_main(tool: *const c_char, argc: c_int, argv: *const *const c_char) -> c_int {
    ffi_fn!(CliStatus, {
        // SAFETY: forwarded caller guarantee on `tool`.
        let tool = unsafe { c_str(tool, "tool")? };
        let count = usize::try_from(argc).map_err(|_| FfiError::invalid(format!("argc {argc} is negative")))?;
        // SAFETY: forwarded caller guarantee: `argv` points to `argc` readable pointers.
        let pointers = unsafe { c_slice(argv, count, "argv")? };
        let mut args = Vec::with_capacity(count);
        for (i, &arg) in pointers.iter().enumerate() {
            if arg.is_null() {
                return Err(FfiError::invalid(format!("argv[{i}] is NULL")));
            }
            // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string.
            let bytes = unsafe { CStr::from_ptr(arg) }.to_bytes().to_vec();
            args.push(OsString::from_vec(bytes));
        }
        let status = crate::cli::run(tool, args).ok_or_else(|| {
            FfiError::invalid(format!("unknown tool {tool:?} (known: {})", crate::cli::TOOLS.join(", ")))
        });
        // The host process (Python) exits without Rust's exit-time flush.
        let _ = std::io::stdout().flush();
        status
    })
}
