//! Notifications of `transfer_engine_c.h`.

use std::ffi::{c_char, c_int};
use std::ptr;

use super::args::engine_ref;
use super::types::{notify_msg, notify_msg_t, transfer_engine_t};
use crate::error::Code;
use crate::ffi::args::c_str;
use crate::ffi::boundary::{EngineErr, FfiError, ffi_fn};

/// Copies `s` into a `malloc`ed NUL-terminated string (NULL when out of memory).
fn malloc_c_string(s: &str) -> *mut c_char {
    let clean = s.replace('\0', " ");
    // SAFETY: malloc of len + 1 bytes; a NULL result is returned to the caller as such.
    let p = unsafe { libc::malloc(clean.len() + 1) } as *mut c_char;
    if !p.is_null() {
        // SAFETY: `p` has room for `len + 1` bytes.
        unsafe {
            ptr::copy_nonoverlapping(clean.as_ptr(), p as *mut u8, clean.len());
            *p.add(clean.len()) = 0;
        }
    }
    p
}

/// Takes every notification received so far. Sets `*size` to their number and returns a
/// `malloc`ed array of that many entries (each `name` and `msg` `malloc`ed too), owned by the
/// caller and released with `freeNotifsMsgBuf`. Returns NULL with `*size == 0` when there are
/// none, and NULL (with `*size == 0` when `size` is writable) on failure: a NULL engine or
/// `size`, or out of memory; `mooncake_last_error()` then says why. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getNotifsFromEngine(engine: transfer_engine_t, size: *mut c_int) -> *mut notify_msg_t {
    ffi_fn!(EngineErr, {
        if size.is_null() {
            return Err(FfiError::invalid("size is NULL"));
        }
        // SAFETY: `size` is non-NULL and writable.
        unsafe { *size = 0 };
        let engine = engine_ref(engine)?;
        let notes = engine.take_notifies();
        if notes.is_empty() {
            return Ok(ptr::null_mut());
        }
        let n = notes.len().min(c_int::MAX as usize);
        // SAFETY: calloc of n entries; checked for NULL below.
        let arr = unsafe { libc::calloc(n, std::mem::size_of::<notify_msg>()) } as *mut notify_msg;
        if arr.is_null() {
            return Err(FfiError::new(Code::Memory, format!("cannot allocate {n} notifications")));
        }
        for (i, (name, msg)) in notes.iter().take(n).enumerate() {
            let entry = notify_msg { name: malloc_c_string(name), msg: malloc_c_string(msg) };
            let failed = entry.name.is_null() || entry.msg.is_null();
            // SAFETY: `i < n`, inside the calloc'ed array.
            unsafe { arr.add(i).write(entry) };
            if failed {
                // SAFETY: `arr` holds `n` entries, NULL or malloc'ed strings.
                unsafe { free_notifs(arr, n) };
                return Err(FfiError::new(Code::Memory, "cannot allocate notification text"));
            }
        }
        // SAFETY: as above.
        unsafe { *size = n as c_int };
        Ok(arr)
    })
}

/// Frees `size` entries of an array from `getNotifsFromEngine`, their strings, and the array.
///
/// # Safety
/// `msg` must be an array of `getNotifsFromEngine` with at least `size` entries, each NULL or
/// `malloc`ed strings, not freed before.
unsafe fn free_notifs(msg: *mut notify_msg, size: usize) {
    for i in 0..size {
        // SAFETY: the caller passes an array of `size` entries from getNotifsFromEngine.
        let e = unsafe { &*msg.add(i) };
        // SAFETY: malloc'ed (or NULL) strings; free(NULL) is a no-op.
        unsafe {
            libc::free(e.name as *mut libc::c_void);
            libc::free(e.msg as *mut libc::c_void);
        }
    }
    // SAFETY: the array itself was calloc'ed.
    unsafe { libc::free(msg as *mut libc::c_void) };
}

/// Frees an array from `getNotifsFromEngine` with its `size` entries. NULL is a no-op.
/// Returns 0, or `ERR_INVALID_ARGUMENT` for a negative size. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freeNotifsMsgBuf(msg: *mut notify_msg_t, size: c_int) -> c_int {
    ffi_fn!(EngineErr, {
        if msg.is_null() {
            return Ok(());
        }
        if size < 0 {
            return Err(FfiError::invalid(format!("size {size} is negative")));
        }
        // SAFETY: the caller passes an array from getNotifsFromEngine with its size.
        unsafe { free_notifs(msg, size as usize) };
        Ok(())
    })
}

/// Sends `notify_msg` (strings read during the call) to the open segment `target_id` and waits
/// for its acknowledgement (`LOCAL_SEGMENT`: to this engine itself, as in Mooncake). Returns 0, `ERR_INVALID_ARGUMENT` (NULL arguments, id out of
/// range), `ERR_METADATA` (segment not open, as Mooncake), `ERR_SOCKET` (peer unreachable),
/// `ERR_REJECT_HANDSHAKE` (not acknowledged).
/// Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn genNotifyInEngine(
    engine: transfer_engine_t,
    target_id: u64,
    notify_msg: notify_msg_t,
) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated strings read during the call.
        let name = unsafe { c_str(notify_msg.name, "notify_msg.name")? };
        // SAFETY: as above.
        let msg = unsafe { c_str(notify_msg.msg, "notify_msg.msg")? };
        let id = i32::try_from(target_id)
            .map_err(|_| FfiError::invalid(format!("target_id {target_id} is out of range")))?;
        engine.send_notify(id, name, msg)
    })
}
