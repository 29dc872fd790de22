//! The pieces every entry point is made of: the panic boundary, the per-thread last error, and
//! argument checks (handles, C strings, arrays).

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::TransferEngine;
use crate::engine::id_map::IdMap;
use crate::error::Code;

/// A failed call: the code it returns and the text `mooncake_last_error()` gives. The engine's
/// error carries exactly that, so the boundary uses it as is.
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

/// Runs `f` inside the panic boundary. On `Err` or on a panic, records the last error and
/// returns `fail(code)`; a panic is reported as `Code::Context` (an internal error).
pub fn boundary<T>(func: &'static str, fail: impl Fn(Code) -> T, f: impl FnOnce() -> FfiResult<T>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(func, &e.message);
            fail(e.code)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(func, &format!("internal error (please report): {what}"));
            fail(Code::Context)
        }
    }
}

/// `boundary` for the functions that return 0 or a negative `ERR_*` value.
pub fn ffi_err(func: &'static str, f: impl FnOnce() -> FfiResult<()>) -> i32 {
    boundary(func, Code::err, || f().map(|()| 0))
}

/// `boundary` for the four batch calls, which return 0 or a positive status code.
pub fn ffi_status(func: &'static str, f: impl FnOnce() -> FfiResult<()>) -> i32 {
    boundary(func, Code::status, || f().map(|()| 0))
}

/// Live engine handles. A handle is the address of its engine; looking it up here (instead of
/// dereferencing it) turns a NULL, stale or foreign pointer into `ERR_INVALID_ARGUMENT`.
static ENGINES: RwLock<Option<IdMap<usize, Arc<TransferEngine>>>> = RwLock::new(None);

pub fn register_engine(engine: TransferEngine) -> *mut c_void {
    let engine = Arc::new(engine);
    let handle = Arc::as_ptr(&engine) as usize;
    ENGINES.write().get_or_insert_with(IdMap::default).insert(handle, engine);
    handle as *mut c_void
}

/// Removes a handle; the engine is returned so that the caller shuts it down.
pub fn unregister_engine(handle: *mut c_void) -> Option<Arc<TransferEngine>> {
    ENGINES.write().as_mut()?.remove(&(handle as usize))
}

/// The engine behind `handle`, or `ERR_INVALID_ARGUMENT` for NULL or a destroyed handle.
pub fn engine_ref(handle: *mut c_void) -> FfiResult<Arc<TransferEngine>> {
    if handle.is_null() {
        return Err(FfiError::invalid("engine is NULL"));
    }
    ENGINES
        .read()
        .as_ref()
        .and_then(|m| m.get(&(handle as usize)).cloned())
        .ok_or_else(|| FfiError::invalid(format!("engine {handle:p} is not a live engine (destroyed?)")))
}

/// Runs `f` on the engine behind `handle` under the registry's read lock, without cloning its
/// `Arc`: for calls that never block (the status poll). Calls that may wait on the network use
/// [`engine_ref`], so that no lock is held while they wait.
pub fn with_engine<R>(handle: *mut c_void, f: impl FnOnce(&TransferEngine) -> FfiResult<R>) -> FfiResult<R> {
    if handle.is_null() {
        return Err(FfiError::invalid("engine is NULL"));
    }
    let engines = ENGINES.read();
    match engines.as_ref().and_then(|m| m.get(&(handle as usize))) {
        Some(e) => f(e),
        None => Err(FfiError::invalid(format!("engine {handle:p} is not a live engine (destroyed?)"))),
    }
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string readable during the call.
pub unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| FfiError::invalid(format!("{what} is not valid UTF-8")))
}

/// Borrows `count` elements at `ptr`; an empty slice for `count == 0` (any `ptr`).
///
/// # Safety
/// When `count > 0`, `ptr` must be NULL or point to `count` initialised elements readable
/// during the call.
pub unsafe fn c_slice<'a, T>(ptr: *const T, count: usize, what: &str) -> FfiResult<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL but its count is {count}")));
    }
    if count > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(FfiError::invalid(format!("{what}: count {count} is too large")));
    }
    // SAFETY: non-NULL, bounded count, and the caller guarantees `count` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Writes `text` NUL-terminated into `buf[..len]`. Text that does not fit is cut (the buffer
/// still ends in NUL) and reported as `ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `buf` must be NULL or writable for `len` bytes.
pub unsafe fn write_c_string(buf: *mut c_char, len: usize, text: &str) -> FfiResult<()> {
    if buf.is_null() || len == 0 {
        return Err(FfiError::invalid("buf_out is NULL or buf_len is 0"));
    }
    let bytes = text.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: `n + 1 <= len` bytes are written into the caller's writable buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
    if n < bytes.len() {
        return Err(FfiError::invalid(format!("buf_len {len} is too small for {} bytes", bytes.len() + 1)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: the pointer is a valid NUL-terminated string owned by this thread.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_err_context_and_a_message() {
        let rc = ffi_err("probe", || panic!("boom"));
        assert_eq!(rc, Code::Context.err());
        assert!(last_error().starts_with("probe: internal error") && last_error().contains("boom"));
        let rc = ffi_status("probe2", || panic!("{}", String::from("owned")));
        assert_eq!(rc, Code::Context.status());
        assert!(last_error().contains("owned"));
    }

    #[test]
    fn errors_keep_their_code_and_success_keeps_the_last_error() {
        assert_eq!(ffi_err("f", || Err(FfiError::new(Code::Socket, "x"))), -102);
        assert_eq!(ffi_status("f", || Err(FfiError::new(Code::Socket, "x"))), 102);
        assert_eq!(ffi_err("g", || Ok(())), 0);
        assert_eq!(last_error(), "f: x", "a successful call does not clear the last error");
    }

    #[test]
    fn strings_and_slices_are_checked() {
        // SAFETY: NULL and a valid C string literal.
        unsafe {
            assert!(c_str(std::ptr::null(), "s").is_err());
            assert_eq!(c_str(c"ok".as_ptr(), "s").unwrap(), "ok");
            assert!(c_str(c"\xff".as_ptr(), "s").is_err());
            assert!(c_slice::<u64>(std::ptr::null(), 3, "v").is_err());
            assert!(c_slice::<u64>(std::ptr::null(), 0, "v").unwrap().is_empty());
            assert!(c_slice::<u64>(std::ptr::dangling::<u64>(), usize::MAX, "v").is_err());
        }
    }
}
