//! A peer that accepts connections and then says nothing: with `MC_TCP_PROGRESS_TIMEOUT_SEC=2`
//! (as Mooncake's own tests of this variable set it) its tasks end FAILED after about 2 s, and a handshake with it fails
//! with `ERR_SOCKET`, instead of hanging. One test in this binary: it sets the variable.

mod support;

use std::time::{Duration, Instant};

use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi::*;

#[test]
fn silent_peers_fail_after_the_progress_timeout() {
    // SAFETY: set before any engine (or other thread of this test binary) reads the environment.
    unsafe { std::env::set_var("MC_TCP_PROGRESS_TIMEOUT_SEC", "2") };
    let e = create();
    let mut buf = vec![1u8; 1 << 20];
    register(e, &mut buf);

    let silent_data = FakeServer::silent();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor_json("quiet", silent_data.port, 1 << 30, 1 << 30)));
    let seg = open(e, &format!("127.0.0.1:{}", hs.port));
    assert!(seg >= 1);
    let batch = allocateBatchID(e, 8);
    let mut reqs: Vec<_> =
        (0..8).map(|i| request(OPCODE_WRITE, buf.as_ptr(), seg, (1 << 30) + i * 4096, 4096)).collect();
    let t = Instant::now();
    // SAFETY: readable entries.
    assert_eq!(unsafe { submitTransfer(e, batch, reqs.as_mut_ptr(), reqs.len()) }, 0);
    for task in 0..8 {
        assert_eq!(wait_task(e, batch, task, Duration::from_secs(20)).status, STATUS_FAILED);
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1500), "failed before the timeout: {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?} for a 2 s progress timeout");
    assert_eq!(freeBatchID(e, batch), 0);

    // a handshake port that accepts and never answers
    let silent_hs = FakeServer::silent();
    let t = Instant::now();
    assert_code(open(e, &format!("127.0.0.1:{}", silent_hs.port)), ERR_SOCKET, "openSegment");
    assert!(t.elapsed() < Duration::from_secs(10), "handshake wait took {:?}", t.elapsed());
    destroyTransferEngine(e);
}
