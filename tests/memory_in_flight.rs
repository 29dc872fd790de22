//! 10,000 tasks in flight cost little memory: 10,000 small writes wait on a peer that accepts
//! connections and never answers, and the process's resident memory (`VmRSS`) grows by less
//! than 64 MiB over a baseline taken after the registered buffer was allocated and touched and
//! the engine was warmed up (lanes started). Per task the engine keeps its counters in the
//! batch and one queued `Slice`; nothing per task is large. The tasks end when the silent
//! peer's connections close (failed); the batch is freed and the engine destroyed.
//! One test in this binary: another test's allocations would count towards the figure.

mod support;

use std::time::Duration;

use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi as c;

const TASKS: usize = 10_000;
const TASK_LEN: u64 = 4096;
const BOUND: u64 = 64 << 20;

/// The process's resident memory, from `/proc/self/status`.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
    kib << 10
}

#[test]
fn ten_thousand_tasks_in_flight_stay_under_64_mib() {
    let e = c::create();
    // Distinct sources for every task, all inside one registered buffer, touched before the
    // baseline (40 MiB of it, which must not count).
    let mut buf = vec![5u8; TASKS * TASK_LEN as usize];
    c::register(e, &mut buf);
    let silent = FakeServer::silent();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor_json("quiet", silent.port, 1 << 30, 1 << 30)));
    let seg = c::open(e, &format!("127.0.0.1:{}", hs.port));
    let reqs_for = |n: usize, from: usize| -> Vec<c::transfer_request> {
        (from..from + n)
            .map(|i| {
                let off = i as u64 * TASK_LEN;
                c::request(c::OPCODE_WRITE, buf[off as usize..].as_ptr(), seg, (1 << 30) + off, TASK_LEN)
            })
            .collect()
    };
    // Warm-up: lanes towards the peer start (and stay, each holding an unanswered request).
    let warm = c::allocateBatchID(e, 8);
    let mut w = reqs_for(8, 0);
    // SAFETY: `w` holds 8 readable entries.
    assert_eq!(unsafe { c::submitTransfer(e, warm, w.as_mut_ptr(), w.len()) }, 0);
    // The request list is built before the baseline too: it is the caller's, not the engine's.
    let mut reqs = reqs_for(TASKS, 0);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss();

    let batch = c::allocateBatchID(e, TASKS);
    for chunk in reqs.chunks_mut(1000) {
        // SAFETY: `chunk` holds readable entries.
        assert_eq!(unsafe { c::submitTransfer(e, batch, chunk.as_mut_ptr(), chunk.len()) }, 0);
    }
    let mut waiting = 0;
    for task in 0..TASKS {
        let mut st = c::transfer_status { status: -1, transferred_bytes: 0 };
        // SAFETY: `st` is writable.
        assert_eq!(unsafe { c::getTransferStatus(e, batch, task, &mut st) }, 0);
        waiting += usize::from(st.status == c::STATUS_WAITING);
    }
    let during = rss();
    let grown = during.saturating_sub(before);
    eprintln!(
        "{TASKS} tasks in flight ({waiting} seen waiting): VmRSS {} KiB before, {} KiB during, +{} KiB",
        before >> 10,
        during >> 10,
        grown >> 10
    );
    assert!(waiting >= TASKS - 64, "only {waiting} tasks were in flight when measured");
    assert!(grown < BOUND, "resident memory grew by {grown} bytes with {TASKS} tasks in flight");

    // Closing the peer's connections fails everything still in flight.
    drop(silent);
    for task in 0..TASKS {
        assert_eq!(c::wait_task(e, batch, task, Duration::from_secs(60)).status, c::STATUS_FAILED);
    }
    for task in 0..8 {
        assert_eq!(c::wait_task(e, warm, task, Duration::from_secs(60)).status, c::STATUS_FAILED);
    }
    assert_eq!(c::freeBatchID(e, batch), 0);
    assert_eq!(c::freeBatchID(e, warm), 0);
    c::destroyTransferEngine(e);
}
