//! Helpers shared by the process-level tests.
#![allow(dead_code, unused_imports)] // each test binary uses a different part of this module

pub mod fake_peer;
pub mod ffi;
pub mod servers;
pub mod store;
pub mod wheel;

use std::time::{Duration, Instant};

use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::ffi::codes::task_state_code;

/// The byte pattern every test writes: byte `i` of a range seeded `seed` (the wheel peer's
/// numpy version computes the same bytes).
pub fn pattern_byte(i: u64, seed: u64) -> u8 {
    (i.wrapping_mul(2654435761).wrapping_add(seed) >> 7) as u8
}

pub fn fill(buf: &mut [u8], seed: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(i as u64, seed);
    }
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(&mut v, seed);
    v
}

/// An engine on 127.0.0.1 with P2P handshake and tcp.
pub fn engine() -> TransferEngine {
    TransferEngine::new(EngineOptions::p2p("127.0.0.1")).expect("engine")
}

/// Polls every task of `batch` until all have ended; returns their statuses.
pub fn wait_batch(e: &TransferEngine, batch: u64, tasks: usize, limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let st: Vec<i32> =
            (0..tasks).map(|t| task_state_code(e.task_status(batch, t).expect("status").status)).collect();
        if st.iter().all(|&s| s != 0) {
            return st;
        }
        assert!(Instant::now() < deadline, "tasks did not end within {limit:?}: {st:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Submits `reqs` in one batch, waits, frees the batch, and returns the statuses.
pub fn run_batch(e: &TransferEngine, reqs: &[TransferRequest]) -> Vec<i32> {
    let b = e.allocate_batch(reqs.len()).expect("batch");
    e.submit(b, reqs, None).expect("submit");
    let st = wait_batch(e, b, reqs.len(), Duration::from_secs(60));
    e.free_batch(b).expect("free");
    st
}

/// Deterministic scattered block offsets: `count` distinct block indexes out of `slots`.
pub fn scattered(count: usize, slots: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..slots).collect();
    let mut s = seed | 1;
    for i in (1..slots).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        idx.swap(i, (s % (i as u64 + 1)) as usize);
    }
    idx.truncate(count);
    idx
}

/// Registers a pattern and a zeroed read-back buffer in `from`, writes the pattern to
/// `remote` of segment `to_name`, reads it back and compares; both buffers are unregistered.
pub fn write_and_read_back(from: &TransferEngine, to_name: &str, remote: u64, len: u64, seed: u64) {
    let mut local = pattern(len as usize, seed);
    let mut back = vec![0u8; len as usize];
    from.register_memory(local.as_mut_ptr() as u64, len, "cpu:0", true).unwrap();
    from.register_memory(back.as_mut_ptr() as u64, len, "cpu:0", true).unwrap();
    let seg = from.open_segment(to_name, false).unwrap();
    let w = TransferRequest {
        opcode: mooncake::transport::Opcode::Write,
        source: local.as_ptr() as u64,
        target_id: seg,
        target_offset: remote,
        length: len,
    };
    assert_eq!(run_batch(from, &[w]), vec![4]);
    let r = TransferRequest { opcode: mooncake::transport::Opcode::Read, source: back.as_ptr() as u64, ..w };
    assert_eq!(run_batch(from, &[r]), vec![4]);
    assert!(back == local, "read-back differs");
    from.unregister_memory(local.as_ptr() as u64).unwrap();
    from.unregister_memory(back.as_ptr() as u64).unwrap();
}

/// An engine named `name` behind the metadata service `url`, with `config`.
pub fn engine_behind(
    url: &str,
    name: &str,
    config: mooncake::config::Config,
) -> mooncake::engine::Result<TransferEngine> {
    TransferEngine::with_config(
        EngineOptions {
            metadata: url.to_string(),
            local_server_name: name.to_string(),
            ip_or_host_name: String::new(),
            rpc_port: 0,
            auto_discover: true,
        },
        config,
    )
}
