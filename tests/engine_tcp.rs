//! Two engines in one process, talking over real loopback TCP (the engines do not know they
//! share a process: each opens the other's segment by name).

use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::error::Code;
use mooncake::ffi::codes::task_state_code;
use mooncake::transport::Opcode;
use std::time::{Duration, Instant};

fn engine() -> TransferEngine {
    TransferEngine::new(EngineOptions::p2p("127.0.0.1")).expect("engine")
}

fn wait(e: &TransferEngine, batch: u64, tasks: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st: Vec<_> = (0..tasks).map(|t| e.task_status(batch, t).unwrap()).collect();
        if st.iter().all(|s| task_state_code(s.status) != 0) {
            return st.iter().map(|s| task_state_code(s.status)).collect();
        }
        assert!(Instant::now() < deadline, "tasks did not end");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn write_then_read_back_various_lengths() {
    let target = engine();
    let init = engine();
    let mut remote = vec![0u8; 4 << 20];
    let mut local = pattern(4 << 20, 7);
    target.register_memory(remote.as_mut_ptr() as u64, remote.len() as u64, "cpu:0", true).unwrap();
    init.register_memory(local.as_mut_ptr() as u64, local.len() as u64, "cpu:0", true).unwrap();
    let seg = init.open_segment(target.server_name(), false).unwrap();
    assert!(seg >= 1);
    for &len in &[1usize, 4095, 65537, 1 << 20, (3 << 20) + 17] {
        remote.iter_mut().for_each(|b| *b = 0);
        let b = init.allocate_batch(2).unwrap();
        let req = TransferRequest {
            opcode: Opcode::Write,
            source: local.as_ptr() as u64,
            target_id: seg,
            target_offset: remote.as_ptr() as u64 + 5,
            length: len as u64,
        };
        init.submit(b, &[req], None).unwrap();
        assert_eq!(wait(&init, b, 1), vec![4]);
        assert_eq!(init.task_status(b, 0).unwrap().transferred_bytes, len as u64);
        assert_eq!(&remote[5..5 + len], &local[..len]);
        // read back into a different part of local
        let back = TransferRequest { opcode: Opcode::Read, source: local.as_ptr() as u64 + (len as u64 % 4096), ..req };
        let expect = remote[5..5 + len].to_vec();
        init.submit(b, &[back], None).unwrap();
        assert_eq!(wait(&init, b, 2), vec![4, 4]);
        let off = len % 4096;
        assert_eq!(&local[off..off + len], &expect[..]);
        init.free_batch(b).unwrap();
    }
}

#[test]
fn out_of_region_write_fails_and_touches_nothing() {
    let target = engine();
    let init = engine();
    let mut remote = vec![0xAAu8; 8192];
    let local = vec![1u8; 8192];
    let region = remote.as_mut_ptr() as u64 + 1024;
    target.register_memory(region, 4096, "cpu:0", true).unwrap();
    init.register_memory(local.as_ptr() as u64, 8192, "cpu:0", true).unwrap();
    let seg = init.open_segment(target.server_name(), false).unwrap();
    let b = init.allocate_batch(3).unwrap();
    let mk = |off: u64, len: u64| TransferRequest {
        opcode: Opcode::Write,
        source: local.as_ptr() as u64,
        target_id: seg,
        target_offset: off,
        length: len,
    };
    init.submit(b, &[mk(region + 4000, 200), mk(region - 1, 10), mk(region, 4096)], None).unwrap();
    assert_eq!(wait(&init, b, 3), vec![6, 6, 4]);
    assert!(remote[..1024].iter().all(|&x| x == 0xAA));
    assert!(remote[1024 + 4096..].iter().all(|&x| x == 0xAA));
}

#[test]
fn submission_errors_are_all_or_nothing() {
    let e = engine();
    let buf = vec![0u8; 4096];
    e.register_memory(buf.as_ptr() as u64, 4096, "cpu:0", true).unwrap();
    let b = e.allocate_batch(1).unwrap();
    let ok = TransferRequest {
        opcode: Opcode::Write,
        source: buf.as_ptr() as u64,
        target_id: 0,
        target_offset: buf.as_ptr() as u64,
        length: 16,
    };
    // An unregistered source is taken on this route (tests/engine_unregistered.rs); one that
    // wraps around is refused.
    let wrapping = TransferRequest { source: u64::MAX - 8, ..ok };
    assert_eq!(e.submit(b, &[wrapping], None).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(e.submit(b, &[ok, ok], None).unwrap_err().code, Code::TooManyRequests);
    assert_eq!(e.submit(b, &[TransferRequest { target_id: 9, ..ok }], None).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(e.submit(12345, &[ok], None).unwrap_err().code, Code::InvalidArgument);
    e.submit(b, &[ok], None).unwrap();
    assert_eq!(wait(&e, b, 1), vec![4]);
}

#[test]
fn copy_local_moves_bytes_at_once_and_refuses_targets_outside() {
    let e = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).expect("engine");
    let mut target: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
    let mut source: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let loose = vec![9u8; 4096];
    let (t, s) = (target.as_mut_ptr() as u64, source.as_mut_ptr() as u64);
    e.register_memory(t, 8192, "cpu:0", true).unwrap();
    e.register_memory(s, 4096, "cpu:0", false).unwrap();
    e.copy_local(Opcode::Write, s, t + 100, 4096).unwrap();
    assert_eq!(&target[100..4196], &source[..]);
    target.fill(0);
    e.copy_local(Opcode::Read, s, t + 8, 4096).unwrap();
    assert_eq!(&source[..], &target[8..4104]);
    // A local buffer that was never registered is taken, as Mooncake's TCP path takes it.
    e.copy_local(Opcode::Write, loose.as_ptr() as u64, t, 4096).unwrap();
    assert!(target[..4096].iter().all(|&b| b == 9));
    let refused = [e.copy_local(Opcode::Write, s, t + 8000, 4096), e.copy_local(Opcode::Read, t, s, 4096)];
    for r in refused {
        assert_eq!(r.unwrap_err().code, Code::AddressNotRegistered);
    }
    e.unregister_memory(s).unwrap();
    e.unregister_memory(t).unwrap();
}
