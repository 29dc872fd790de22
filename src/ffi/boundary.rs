//! The one boundary every `extern "C"` function runs in: `ffi_fn!` wraps an entry point's
//! body, catches panics, turns an `Err` into the code of the entry point's code [`Family`], and
//! records the message for `mooncake_last_error()` as `"<function>: <message>"`, the function
//! named after the Rust fn the body is in (never typed by hand).
//!
//! An entry point keeps its `pub unsafe extern "C" fn` signature written out (cbindgen reads
//! the source, not expanded macros) and its body is one `ffi_fn!`:
//!
//! ```ignore
//! #[unsafe(no_mangle)]
//! pub extern "C" fn closeSegment(engine: transfer_engine_t, segment_id: segment_id_t) -> c_int {
//!     ffi_fn!(EngineErr, { engine_ref(engine)?.close_segment(segment_id) })
//! }
//! ```
//!
//! The body returns `Result<T, Family::Error>`. `Ok(())` in a function returning `c_int` is 0;
//! any other `Ok(v)` is returned as is. On failure the function returns the family's code for
//! an `int`/`int64_t` result, NULL for a pointer, nothing for `void`, or the value given with
//! `else` (`ffi_fn!(EngineErr, else INVALID_BATCH, { … })`). `ffi_fn!(Family, |name| { … })`
//! binds the function's name for bodies that log per-item results under it.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::Code;
use crate::store::{ErrorCode, StoreError};

use super::codes::{err_code, status_code, store_code};

/// A failed engine call: the code it returns and the text `mooncake_last_error()` gives. The
/// engine's error carries exactly that, so the boundary uses it as is.
pub type FfiError = crate::engine::Error;

pub type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error and logs it once, as a warning.
pub fn set_last_error(func: &str, message: &str) {
    record_last_error(func, message, Outcome::Failure);
}

/// How a failed call is logged. Callers read some codes as answers, not faults (a missing key
/// for a get, a lease still held for a remove): those are recorded for `mooncake_last_error()`
/// but logged at debug, so that a default log shows only what needs a look. A failure whose
/// cause was already logged where it happened (a transfer task's peer and error) is `Logged`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Failure,
    Expected,
    Logged,
}

/// Records `message` as this thread's last error and logs it once at the level `outcome` asks.
pub fn record_last_error(func: &str, message: &str, outcome: Outcome) {
    let text = format!("{func}: {message}");
    match outcome {
        Outcome::Failure => tracing::warn!("{text}"),
        Outcome::Expected | Outcome::Logged => tracing::debug!("{text}"),
    }
    let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

/// The pointer `mooncake_last_error()` returns: valid until this thread's next failure.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// A family of return codes: the error type its entry points fail with, the integer each
/// error becomes, and how the failure is recorded.
pub trait Family {
    type Error;
    /// The code returned for `e`.
    fn code(e: &Self::Error) -> c_int;
    /// Records `e` for `mooncake_last_error()` (and logs it).
    fn record(func: &str, e: &Self::Error);
    /// The code returned for a panic caught at the boundary.
    fn panic_code() -> c_int;
    /// Runs after a failure was recorded (the command-line entry point prints it).
    fn after_failure() {}
}

/// Transfer Engine functions: `Engine<false>` returns 0 or a negative `ERR_*` value,
/// `Engine<true>` (the four batch calls) 0 or a positive `MOONCAKE_STATUS_*` value. One type
/// for both, because only the encoding of the same [`Code`] differs.
pub enum Engine<const STATUS: bool> {}

/// Transfer Engine functions returning 0 or a negative `ERR_*` value.
pub type EngineErr = Engine<false>;

/// The four batch calls, returning 0 or a positive `MOONCAKE_STATUS_*` value.
pub type EngineStatus = Engine<true>;

impl<const STATUS: bool> Engine<STATUS> {
    fn encode(code: Code) -> c_int {
        if STATUS { status_code(code) } else { err_code(code) }
    }
}

impl<const STATUS: bool> Family for Engine<STATUS> {
    type Error = FfiError;
    fn code(e: &FfiError) -> c_int {
        Self::encode(e.code)
    }
    fn record(func: &str, e: &FfiError) {
        set_last_error(func, &e.message);
    }
    fn panic_code() -> c_int {
        Self::encode(Code::Context)
    }
}

/// Store functions, returning Mooncake's store codes (`MOONCAKE_STORE_*`).
pub enum StoreCodes {}

impl Family for StoreCodes {
    type Error = StoreError;
    fn code(e: &StoreError) -> c_int {
        store_code(e.code)
    }
    fn record(func: &str, e: &StoreError) {
        record_last_error(func, &format!("{} ({})", e.message, e.code), store_outcome(e.code));
    }
    fn panic_code() -> c_int {
        store_code(ErrorCode::InternalError)
    }
}

/// Codes that callers read as answers: a get or exists of a missing key, a remove of an object
/// a reader still leases, a put of a key already stored (Mooncake's clients retry or skip).
fn store_outcome(code: ErrorCode) -> Outcome {
    match code {
        ErrorCode::ObjectNotFound | ErrorCode::ObjectHasLease | ErrorCode::ObjectAlreadyExists => Outcome::Expected,
        _ => Outcome::Failure,
    }
}

/// What a function returns when it fails: the family's code for the integer results, NULL for
/// pointers, nothing for `void`. Other result types name their failure value with `else`.
pub trait Returned {
    fn on_failure(code: c_int) -> Self;
}

impl Returned for c_int {
    fn on_failure(code: c_int) -> c_int {
        code
    }
}

impl Returned for i64 {
    fn on_failure(code: c_int) -> i64 {
        i64::from(code)
    }
}

impl Returned for () {
    fn on_failure(_: c_int) {}
}

impl<T> Returned for *mut T {
    fn on_failure(_: c_int) -> *mut T {
        std::ptr::null_mut()
    }
}

impl<T> Returned for *const T {
    fn on_failure(_: c_int) -> *const T {
        std::ptr::null()
    }
}

/// What a successful body's value becomes: itself, or 0 for `()` in a function returning `int`.
pub trait Success<R> {
    fn into_result(self) -> R;
}

impl<R> Success<R> for R {
    fn into_result(self) -> R {
        self
    }
}

impl Success<c_int> for () {
    fn into_result(self) -> c_int {
        0
    }
}

/// The name of the function that defines the item `_marker` (a local `fn`): the last segment
/// of its path before the marker's own name.
pub fn entry_point_name<M>(_marker: M) -> &'static str {
    let path = std::any::type_name::<M>();
    let path = path.rsplit_once("::").map_or(path, |(fn_path, _marker)| fn_path);
    path.rsplit("::").next().unwrap_or(path)
}

/// Runs `body` inside the panic boundary (use `ffi_fn!`, which names the function). On `Err`
/// or a panic, records the last error under `name()` and returns `fail(code)`; a panic is the
/// family's internal-error code with "internal error (please report)" in the message.
pub fn run<F: Family, T: Success<R>, R>(
    name: impl Fn() -> &'static str,
    fail: impl FnOnce(c_int) -> R,
    body: impl FnOnce() -> Result<T, F::Error>,
) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v.into_result(),
        Ok(Err(e)) => {
            F::record(name(), &e);
            F::after_failure();
            fail(F::code(&e))
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(name(), &format!("internal error (please report): {what}"));
            F::after_failure();
            fail(F::panic_code())
        }
    }
}

/// Wraps an entry point's body in the boundary of code family `$family` (see the module
/// docs). The name recorded for `mooncake_last_error()` is the enclosing fn's.
macro_rules! ffi_fn {
    ($family:ty, |$name:ident| $body:block) => {{
        fn __entry_point() {}
        let $name: &'static str = $crate::ffi::boundary::entry_point_name(__entry_point);
        $crate::ffi::boundary::run::<$family, _, _>(
            || $name,
            <_ as $crate::ffi::boundary::Returned>::on_failure,
            || $body,
        )
    }};
    ($family:ty, else $fail:expr, $body:block) => {{
        fn __entry_point() {}
        $crate::ffi::boundary::run::<$family, _, _>(
            || $crate::ffi::boundary::entry_point_name(__entry_point),
            |_| $fail,
            || $body,
        )
    }};
    ($family:ty, $body:block) => {{
        fn __entry_point() {}
        $crate::ffi::boundary::run::<$family, _, _>(
            || $crate::ffi::boundary::entry_point_name(__entry_point),
            <_ as $crate::ffi::boundary::Returned>::on_failure,
            || $body,
        )
    }};
}
pub(crate) use ffi_fn;

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last_error() -> String {
        // SAFETY: the pointer is a valid NUL-terminated string owned by this thread.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    fn probe_err(r: FfiResult<()>) -> c_int {
        ffi_fn!(EngineErr, { r })
    }

    fn probe_status(r: FfiResult<()>) -> c_int {
        ffi_fn!(EngineStatus, { r })
    }

    fn probe_panic() -> c_int {
        ffi_fn!(EngineErr, {
            std::hint::black_box(true).then(|| panic!("boom"));
            Ok(())
        })
    }

    fn probe_panic_status() -> c_int {
        ffi_fn!(EngineStatus, {
            std::hint::black_box(true).then(|| panic!("{}", String::from("owned")));
            Ok(())
        })
    }

    fn probe_store() -> i64 {
        ffi_fn!(StoreCodes, { Err::<i64, _>(StoreError::new(ErrorCode::ObjectNotFound, "k")) })
    }

    fn probe_pointer() -> *mut u8 {
        ffi_fn!(EngineErr, { Err::<*mut u8, _>(FfiError::invalid("p")) })
    }

    fn probe_else() -> u64 {
        ffi_fn!(EngineErr, else u64::MAX, { Err::<u64, _>(FfiError::invalid("e")) })
    }

    fn probe_named() -> c_int {
        ffi_fn!(EngineErr, |name| { if name == "probe_named" { Ok(()) } else { Err(FfiError::invalid(name)) } })
    }

    #[test]
    fn a_panic_becomes_err_context_and_a_message() {
        assert_eq!(probe_panic(), err_code(Code::Context));
        assert!(last_error().starts_with("probe_panic: internal error") && last_error().contains("boom"));
        assert_eq!(probe_panic_status(), status_code(Code::Context));
        assert!(last_error().starts_with("probe_panic_status: ") && last_error().contains("owned"));
    }

    #[test]
    fn errors_keep_their_code_and_success_keeps_the_last_error() {
        assert_eq!(probe_err(Err(FfiError::new(Code::Socket, "x"))), -102);
        assert_eq!(probe_status(Err(FfiError::new(Code::Socket, "x"))), 102);
        assert_eq!(probe_err(Ok(())), 0);
        assert_eq!(last_error(), "probe_status: x", "a successful call does not clear the last error");
    }

    #[test]
    fn every_family_and_result_type_fails_its_way_under_the_fn_name() {
        assert_eq!(probe_store(), -704);
        assert_eq!(last_error(), "probe_store: k (OBJECT_NOT_FOUND (-704))");
        assert!(probe_pointer().is_null());
        assert_eq!(last_error(), "probe_pointer: p");
        assert_eq!(probe_else(), u64::MAX);
        assert_eq!(last_error(), "probe_else: e");
        assert_eq!(probe_named(), 0, "{}", last_error());
    }
}
