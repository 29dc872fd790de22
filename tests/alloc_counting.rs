//! Submission and status polling stay cheap with thousands of tasks in flight: a global
//! allocator that counts the allocations of each thread shows that
//!
//! - polling a task (`TransferEngine::task_status` and the C `getTransferStatus`) allocates
//!   nothing, also while 4,096 tasks of its batch wait on a peer that never answers;
//! - submitting N requests allocates, on the submitting thread, a number of times that does not
//!   grow with N (N = 16 and N = 4,096 compared), to this engine's own segment and to a real
//!   engine over loopback TCP (there, beyond that flat part, `plan` still clones the peer's
//!   host once per request: see `PLAN_ALLOCS_PER_TCP_REQUEST`).
//!
//! What is counted: every `alloc`, `alloc_zeroed` and `realloc` made by the thread that calls
//! `submit` / `getTransferStatus`, from the call's start to its return. That is the engine's
//! submission path (validation, routing, reservation, slicing) and the transports' `submit`,
//! which queue the slices; what the transports' own threads do afterwards (TCP lanes sending
//! the slices, the data server of the target) runs on other threads and is not counted here.
//!
//! O(1) per poll is a property of the code, not measured here (a timing assertion would be a
//! speed test): `Batch::status` reads the batch's `submitted` counter and the task's own
//! atomics, and the batch is found in an `IdMap` by its id; nothing scans the batch.
//!
//! The tests of this binary take one lock each, so that the numbers they print for all threads
//! together are not mixed with another test's.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mooncake::engine::{TransferEngine, TransferRequest};
use mooncake::ffi::codes::task_state_code;
use mooncake::transport::Opcode;
use parking_lot::Mutex;
use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi as c;

/// Counts allocations per thread (for the assertions) and in all (for the figures printed).
struct Counting;

static ALL_THREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// A `const` thread-local of a type without `Drop`: reading it never allocates and works
    /// at any point of a thread's life, also inside the allocator.
    static THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    ALL_THREADS.fetch_add(1, Ordering::Relaxed);
    let _ = THIS_THREAD.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only an
// atomic and a const thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

/// Allocations this thread made while running `f`, and in all threads together.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    let all = ALL_THREADS.load(Ordering::Relaxed);
    let mine = THIS_THREAD.with(Cell::get);
    let r = f();
    let mine = THIS_THREAD.with(Cell::get) - mine;
    let all = ALL_THREADS.load(Ordering::Relaxed) - all;
    (r, mine, all)
}

/// Task sizes and counts of the submission tests.
const SMALL: usize = 16;
const LARGE: usize = 4096;
const TASK_LEN: u64 = 64;
/// Allocations a submission of `LARGE` requests may make beyond one of `SMALL`: growth of
/// queues that keep their capacity (amortised, not per task) and the like.
const SLACK: u64 = 4;

fn requests(n: usize, source: u64, target_id: i32, target: u64) -> Vec<TransferRequest> {
    (0..n as u64)
        .map(|i| TransferRequest {
            opcode: Opcode::Write,
            source: source + i * TASK_LEN,
            target_id,
            target_offset: target + i * TASK_LEN,
            length: TASK_LEN,
        })
        .collect()
}

/// Submits `n` requests in a fresh batch, waits for them, and returns the submitting thread's
/// allocations during `submit` (and all threads' during the same time).
fn measured_submit(e: &TransferEngine, source: u64, target_id: i32, target: u64, n: usize) -> (u64, u64) {
    let reqs = requests(n, source, target_id, target);
    let batch = e.allocate_batch(n).unwrap();
    let (r, mine, all) = allocations(|| e.submit(batch, &reqs, None));
    r.unwrap();
    let st = support::wait_batch(e, batch, n, Duration::from_secs(60));
    assert!(st.iter().all(|&s| s == 4), "tasks failed: {:?}", st.iter().filter(|&&s| s != 4).count());
    e.free_batch(batch).unwrap();
    (mine, all)
}

/// Allocations per TCP request that `EngineShared::plan` makes today: it clones the peer's host
/// name into the request's `Route` (a `String` inside `PeerAddress`). Not the submission's own
/// doing (`plan` belongs to the routing code); when the route shares its host instead, this
/// becomes 0 and the TCP test below checks the same flat bound as the local one.
const PLAN_ALLOCS_PER_TCP_REQUEST: u64 = 1;

/// Compares submissions of `SMALL` and `LARGE` requests, after a warm-up that starts what
/// starts once (TCP lanes, their queue's capacity). `per_request`: allocations each request is
/// allowed beyond the flat bound.
fn submissions_stay_flat(what: &str, e: &TransferEngine, source: u64, target_id: i32, target: u64, per_request: u64) {
    for _ in 0..2 {
        measured_submit(e, source, target_id, target, LARGE);
    }
    let mut small = Vec::new();
    let mut large = Vec::new();
    for _ in 0..3 {
        small.push(measured_submit(e, source, target_id, target, SMALL));
        large.push(measured_submit(e, source, target_id, target, LARGE));
    }
    eprintln!(
        "{what}: allocations per submit (submitting thread, all threads): {SMALL} tasks {small:?}, {LARGE} tasks {large:?}"
    );
    let small_min = small.iter().map(|s| s.0).min().unwrap();
    let large_min = large.iter().map(|s| s.0).min().unwrap();
    let allowed = small_min + SLACK + per_request * (LARGE - SMALL) as u64;
    assert!(
        large_min <= allowed,
        "{what}: submitting {LARGE} tasks allocated {large_min} times, {SMALL} tasks {small_min} times (at most {allowed} allowed)"
    );
}

#[test]
fn submitting_to_the_own_segment_allocates_the_same_for_16_and_4096_tasks() {
    let _serial = SERIAL.lock();
    let e = support::engine();
    let len = LARGE * TASK_LEN as usize;
    let src = vec![7u8; len];
    let mut dst = vec![0u8; len];
    e.register_memory(src.as_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    e.register_memory(dst.as_mut_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    submissions_stay_flat("own segment", &e, src.as_ptr() as u64, 0, dst.as_ptr() as u64, 0);
    assert!(dst.iter().all(|&b| b == 7), "the local copies did not land");
}

/// The target is a real engine; the initiator learns its segment from a handshake stand-in
/// whose descriptor offers TCP only (the target's own would also offer the same-host path, and
/// the route would not be TCP).
#[test]
fn submitting_over_tcp_allocates_the_same_for_16_and_4096_tasks() {
    let _serial = SERIAL.lock();
    let target = support::engine();
    let init = support::engine();
    let len = LARGE * TASK_LEN as usize;
    let src = vec![9u8; len];
    let mut dst = vec![0u8; len];
    target.register_memory(dst.as_mut_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    init.register_memory(src.as_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    let data_port = target.segment_descriptor(0).unwrap().tcp_data_port;
    let hs =
        FakeServer::handshake(Reply::Frame(1, descriptor_json("tcp-only", data_port, dst.as_ptr() as u64, len as u64)));
    let seg = init.open_segment(&format!("127.0.0.1:{}", hs.port), false).unwrap();
    submissions_stay_flat("tcp", &init, src.as_ptr() as u64, seg, dst.as_ptr() as u64, PLAN_ALLOCS_PER_TCP_REQUEST);
    assert!(dst.iter().all(|&b| b == 9), "the tcp writes did not land");
    let links = init.links();
    assert!(links.iter().all(|l| l.transport == "tcp") && !links.is_empty(), "not over tcp: {links:?}");
}

/// 4,096 writes wait on a peer that accepts and never answers; every task is polled, through
/// the engine and through the C ABI, while they are in flight.
#[test]
fn polling_allocates_nothing_with_thousands_of_tasks_in_flight() {
    let _serial = SERIAL.lock();
    let e = c::create();
    let mut buf = vec![1u8; LARGE * TASK_LEN as usize];
    c::register(e, &mut buf);
    let silent = FakeServer::silent();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor_json("quiet", silent.port, 1 << 30, 1 << 30)));
    let seg = c::open(e, &format!("127.0.0.1:{}", hs.port));
    let batch = c::allocateBatchID(e, LARGE);
    let mut reqs: Vec<_> = (0..LARGE as u64)
        .map(|i| c::request(c::OPCODE_WRITE, buf.as_ptr(), seg, (1 << 30) + i * TASK_LEN, TASK_LEN))
        .collect();
    // SAFETY: `reqs` holds LARGE readable entries.
    assert_eq!(unsafe { c::submitTransfer(e, batch, reqs.as_mut_ptr(), reqs.len()) }, 0);

    let mut status = c::transfer_status { status: -1, transferred_bytes: 0 };
    let poll_all = |status: &mut c::transfer_status| {
        let mut waiting = 0usize;
        for task in 0..LARGE {
            // SAFETY: `status` is writable.
            let rc = unsafe { c::getTransferStatus(e, batch, task, status) };
            assert_eq!(rc, 0);
            waiting += usize::from(status.status == c::STATUS_WAITING);
        }
        waiting
    };
    poll_all(&mut status); // warm-up: first use of the locks, thread-locals
    let (waiting, mine, all) = allocations(|| (0..4).map(|_| poll_all(&mut status)).sum::<usize>());
    eprintln!("C polls of {} in-flight tasks: {mine} allocations on the polling thread ({all} in all)", 4 * LARGE);
    assert_eq!(mine, 0, "getTransferStatus allocated");
    // Most tasks are still queued behind the unanswered ones: they were polled in flight.
    assert!(waiting >= 4 * (LARGE - 64), "only {waiting} polls saw a waiting task");

    // The same through the Rust API, on an engine of its own.
    let init = support::engine();
    init.register_memory(buf.as_ptr() as u64, buf.len() as u64, "cpu:0", true).unwrap();
    let seg2 = init.open_segment(&format!("127.0.0.1:{}", hs.port), false).unwrap();
    let b2 = init.allocate_batch(LARGE).unwrap();
    init.submit(b2, &requests(LARGE, buf.as_ptr() as u64, seg2, 1 << 30), None).unwrap();
    let poll_rust = || (0..LARGE).filter(|&t| task_state_code(init.task_status(b2, t).unwrap().status) == 0).count();
    poll_rust();
    let (waiting, mine, _) = allocations(|| (0..4).map(|_| poll_rust()).sum::<usize>());
    assert_eq!(mine, 0, "task_status allocated");
    assert!(waiting >= 4 * (LARGE - 64), "only {waiting} polls saw a waiting task");

    // Closing the silent peer's connections fails the tasks; then everything is freed.
    drop(silent);
    for task in 0..LARGE {
        assert_eq!(c::wait_task(e, batch, task, Duration::from_secs(60)).status, c::STATUS_FAILED);
    }
    let st = support::wait_batch(&init, b2, LARGE, Duration::from_secs(60));
    assert!(st.iter().all(|&s| s == 6));
    assert_eq!(c::freeBatchID(e, batch), 0);
    init.free_batch(b2).unwrap();
    c::destroyTransferEngine(e);
}
