//! Argument conversions every entry point shares: C strings in and out, and C arrays.

use std::ffi::{CStr, c_char};

use super::boundary::{FfiError, FfiResult};

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
