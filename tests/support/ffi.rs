//! Calling the C ABI from Rust tests, exactly as a C program would.

use std::ffi::{CStr, CString, c_char, c_void};
use std::time::{Duration, Instant};

pub use mooncake::ffi::codes::*;
pub use mooncake::ffi::engine::*;
pub use mooncake::ffi::mooncake::*;

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// `mooncake_last_error()` as a String.
pub fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(mooncake_last_error()) }.to_string_lossy().into_owned()
}

/// Asserts that `code` is `expected` and that the call left a non-empty, fresh last error that
/// names `func`.
#[track_caller]
pub fn assert_code(code: i32, expected: i32, func: &str) {
    assert_eq!(code, expected, "{func} returned {code}, expected {expected}; last error: {}", last_error());
    if expected != 0 {
        let e = last_error();
        assert!(e.starts_with(func), "last error {e:?} does not name {func}");
    }
}

/// Clears the last error by recording a known marker (a failing call on a NULL engine), so
/// the next assertion sees only what the call under test wrote.
pub fn mark_last_error() {
    let _ = discoverTopology(std::ptr::null_mut());
    assert!(last_error().starts_with("discoverTopology"));
}

/// A P2P engine on 127.0.0.1 with tcp, through `createTransferEngine`.
pub fn create() -> transfer_engine_t {
    let (meta, host) = (c("P2PHANDSHAKE"), c("127.0.0.1"));
    // SAFETY: valid strings for the call.
    let e = unsafe { createTransferEngine(meta.as_ptr(), host.as_ptr(), std::ptr::null(), 0, 1) };
    assert!(!e.is_null(), "createTransferEngine failed: {}", last_error());
    e
}

/// The engine's segment name (`getLocalIpAndPort`: "127.0.0.1:port").
pub fn name_of(e: transfer_engine_t) -> String {
    let mut buf = [0 as c_char; 64];
    // SAFETY: buf is writable for its length.
    assert_eq!(unsafe { getLocalIpAndPort(e, buf.as_mut_ptr(), buf.len()) }, 0);
    // SAFETY: NUL-terminated by the call.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

pub fn open(e: transfer_engine_t, name: &str) -> i32 {
    let n = c(name);
    // SAFETY: valid string.
    unsafe { openSegment(e, n.as_ptr()) }
}

pub fn register(e: transfer_engine_t, buf: &mut [u8]) {
    let loc = c("cpu:0");
    // SAFETY: buf outlives the registration in every test (unregistered or engine destroyed first).
    let rc = unsafe { registerLocalMemory(e, buf.as_mut_ptr() as *mut c_void, buf.len(), loc.as_ptr(), 1) };
    assert_eq!(rc, 0, "registerLocalMemory: {}", last_error());
}

pub fn request(opcode: i32, source: *const u8, target: i32, addr: u64, len: u64) -> transfer_request {
    transfer_request { opcode, source: source as *mut c_void, target_id: target, target_offset: addr, length: len }
}

/// Polls a task until it ends (bounded) and returns its status.
pub fn wait_task(e: transfer_engine_t, batch: u64, task: usize, limit: Duration) -> transfer_status {
    let deadline = Instant::now() + limit;
    loop {
        let mut st = transfer_status { status: -1, transferred_bytes: 0 };
        // SAFETY: st is writable.
        assert_eq!(unsafe { getTransferStatus(e, batch, task, &mut st) }, 0, "{}", last_error());
        if st.status != STATUS_WAITING {
            return st;
        }
        assert!(Instant::now() < deadline, "task {task} did not end within {limit:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Submits `reqs` as one batch and waits for every task; returns the statuses.
pub fn transfer(e: transfer_engine_t, reqs: &mut [transfer_request]) -> Vec<i32> {
    let b = allocateBatchID(e, reqs.len());
    assert_ne!(b, INVALID_BATCH);
    // SAFETY: reqs is readable for its length.
    assert_eq!(unsafe { submitTransfer(e, b, reqs.as_mut_ptr(), reqs.len()) }, 0, "{}", last_error());
    let st = (0..reqs.len()).map(|t| wait_task(e, b, t, Duration::from_secs(30)).status).collect();
    assert_eq!(freeBatchID(e, b), 0);
    st
}
