//! 1,000 create/destroy cycles (with tcp installed, a peer opened and data moved on some of them)
//! leave the process with the file descriptors and threads it had before.
//! One test in this binary, so that no other test's threads are counted.

mod support;

use std::ffi::c_void;
use std::time::{Duration, Instant};

use support::ffi::*;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn settled(fds: usize, threads: usize) -> (usize, usize) {
    // Threads end a moment after they are joined in the kernel's view; poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = (count("/proc/self/fd"), count("/proc/self/task"));
        if (now.0 <= fds && now.1 <= threads) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_destroy_cycles_leak_no_fds_or_threads() {
    let before = (count("/proc/self/fd"), count("/proc/self/task"));
    let mut src = vec![1u8; 1 << 16];
    let mut dst = vec![0u8; 1 << 16];
    for i in 0..1000 {
        let a = create();
        if i == 0 {
            // the counts do move while an engine lives, so the final comparison means something
            assert!(count("/proc/self/task") > before.1 && count("/proc/self/fd") > before.0);
        }
        if i % 50 == 0 {
            let b = create();
            register(a, &mut src);
            register(b, &mut dst);
            let seg = open(a, &name_of(b));
            let mut r = [request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64, 1 << 16)];
            assert_eq!(transfer(a, &mut r), vec![STATUS_COMPLETED]);
            assert_eq!(unregisterLocalMemory(b, dst.as_mut_ptr() as *mut c_void), 0);
            destroyTransferEngine(b);
        }
        destroyTransferEngine(a);
    }
    let after = settled(before.0, before.1);
    assert!(after.0 <= before.0, "file descriptors: {} before, {} after", before.0, after.0);
    assert!(after.1 <= before.1, "threads: {} before, {} after", before.1, after.1);
}
