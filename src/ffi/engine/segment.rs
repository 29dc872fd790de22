//! Segments of `transfer_engine_c.h`.

use std::ffi::{c_char, c_int};

use super::args::engine_ref;
use super::types::{segment_id_t, transfer_engine_t};
use crate::ffi::args::c_str;
use crate::ffi::boundary::{EngineErr, FfiResult, ffi_fn};

/// Opens `name` for `openSegment` (`refresh` false) and `openSegmentNoCache` (true).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string readable during the call.
unsafe fn open(engine: transfer_engine_t, name: *const c_char, refresh: bool) -> FfiResult<segment_id_t> {
    let engine = engine_ref(engine)?;
    // SAFETY: NUL-terminated string read during the call.
    let name = unsafe { c_str(name, "segment_name")? };
    engine.open_segment(name, refresh)
}

/// Opens a peer's segment by name (P2P: `"host:port"`, fetched over that handshake port) and
/// returns its id (>= 1; `LOCAL_SEGMENT` for this engine's own name). Cached: a second call
/// returns the same id without network traffic. Returns a negative code on failure:
/// `ERR_INVALID_ARGUMENT`, `ERR_DNS`, `ERR_SOCKET` (peer unreachable), `ERR_MALFORMED_JSON`,
/// `ERR_REJECT_HANDSHAKE`. `segment_name` is read during the call. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openSegment(engine: transfer_engine_t, segment_name: *const c_char) -> segment_id_t {
    // SAFETY: forwarded caller guarantees.
    ffi_fn!(EngineErr, { unsafe { open(engine, segment_name, false) } })
}

/// Like `openSegment`, but fetches the descriptor again even when it is cached (the id of an
/// open segment is kept). Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openSegmentNoCache(engine: transfer_engine_t, segment_name: *const c_char) -> segment_id_t {
    // SAFETY: forwarded caller guarantees.
    ffi_fn!(EngineErr, { unsafe { open(engine, segment_name, true) } })
}

/// Closes a segment id; later transfers to it are refused. `LOCAL_SEGMENT` is a no-op.
/// Returns 0, or `ERR_INVALID_ARGUMENT` for a NULL engine or an id that is not open.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn closeSegment(engine: transfer_engine_t, segment_id: segment_id_t) -> c_int {
    ffi_fn!(EngineErr, { engine_ref(engine)?.close_segment(segment_id) })
}

/// Pre-connects EFA endpoints; this build has no EFA, so it returns 0 (or
/// `ERR_INVALID_ARGUMENT` for a NULL engine). `segment_name` may be NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn warmupEfaSegment(engine: transfer_engine_t, segment_name: *const c_char) -> c_int {
    let _ = segment_name;
    ffi_fn!(EngineErr, { engine_ref(engine).map(|_| ()) })
}

/// Drops the cached descriptor of `segment_name` (as Mooncake's does; a name not cached is
/// fine). Returns 0, or `ERR_INVALID_ARGUMENT` for NULL/empty names or this engine's own name.
/// Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL or valid as described above for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn removeLocalSegment(engine: transfer_engine_t, segment_name: *const c_char) -> c_int {
    ffi_fn!(EngineErr, {
        let engine = engine_ref(engine)?;
        // SAFETY: NUL-terminated string read during the call.
        let name = unsafe { c_str(segment_name, "segment_name")? };
        engine.remove_local_segment(name)
    })
}

/// Fetches every cached remote descriptor again. Returns 0, or the code of the first failure
/// (every segment is still tried). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn syncSegmentCache(engine: transfer_engine_t) -> c_int {
    ffi_fn!(EngineErr, { engine_ref(engine)?.sync_segment_cache() })
}
