//! Our additions in `mooncake.h`: waiting for batches, synchronous transfers, buffer lookup,
//! probes. Every code each returns.

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi::*;

fn pair() -> (transfer_engine_t, transfer_engine_t) {
    (create(), create())
}

#[test]
fn wait_batch_and_release_batch() {
    let (a, b) = pair();
    let mut src = vec![4u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    register(a, &mut src);
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    let batch = allocateBatchID(a, 4);
    let mut reqs = [
        request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64, 1 << 19),
        request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64 + (1 << 19), 1 << 19),
    ];
    // SAFETY: readable entries.
    assert_eq!(unsafe { submitTransfer(a, batch, reqs.as_mut_ptr(), 2) }, 0);
    assert_code(mooncake_wait_batch(a, batch, 10_000), 0, "mooncake_wait_batch");
    assert!(dst.iter().all(|&x| x == 4));
    let mut bad = [request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64 + (1 << 20), 8)];
    // SAFETY: readable entry.
    assert_eq!(unsafe { submitTransfer(a, batch, bad.as_mut_ptr(), 1) }, 0);
    assert_code(mooncake_wait_batch(a, batch, 10_000), MOONCAKE_ERR_TRANSFER_FAILED, "mooncake_wait_batch");
    assert_code(mooncake_wait_batch(a, 987654, 10), ERR_INVALID_ARGUMENT, "mooncake_wait_batch");
    assert_code(mooncake_wait_batch(null_mut(), batch, 10), ERR_INVALID_ARGUMENT, "mooncake_wait_batch");
    assert_code(mooncake_release_batch(a, batch), 0, "mooncake_release_batch");
    assert_code(freeBatchID(a, batch), 1, "freeBatchID");
    assert_code(mooncake_release_batch(a, batch), ERR_INVALID_ARGUMENT, "mooncake_release_batch");
    assert_code(mooncake_release_batch(null_mut(), 1), ERR_INVALID_ARGUMENT, "mooncake_release_batch");
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn wait_batch_times_out_and_a_released_busy_batch_is_freed_later() {
    let e = create();
    let mut buf = vec![1u8; 4096];
    register(e, &mut buf);
    let silent = FakeServer::silent();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor_json("s", silent.port, 1 << 20, 1 << 20)));
    let seg = open(e, &format!("127.0.0.1:{}", hs.port));
    let batch = allocateBatchID(e, 1);
    let mut r = [request(OPCODE_WRITE, buf.as_ptr(), seg, 1 << 20, 4096)];
    // SAFETY: readable entry.
    assert_eq!(unsafe { submitTransfer(e, batch, r.as_mut_ptr(), 1) }, 0);
    let t = Instant::now();
    assert_code(mooncake_wait_batch(e, batch, 200), MOONCAKE_ERR_TIMEOUT, "mooncake_wait_batch");
    assert!(t.elapsed() >= Duration::from_millis(150), "returned before its timeout");
    assert_code(mooncake_release_batch(e, batch), 0, "mooncake_release_batch");
    // still in flight: kept; the task can still be polled
    let mut st = transfer_status { status: -1, transferred_bytes: 0 };
    // SAFETY: writable status.
    assert_eq!(unsafe { getTransferStatus(e, batch, 0, &mut st) }, 0);
    assert_eq!(st.status, STATUS_WAITING);
    // SAFETY: valid string.
    assert_eq!(unsafe { uninstallTransport(e, c("tcp").as_ptr()) }, 0);
    assert_eq!(wait_task(e, batch, 0, Duration::from_secs(5)).status, STATUS_FAILED);
    let _ = allocateBatchID(e, 1); // the next allocation frees the idle released batch
    let mut st = transfer_status { status: 0, transferred_bytes: 0 };
    // SAFETY: writable status.
    assert_code(unsafe { getTransferStatus(e, batch, 0, &mut st) }, 1, "getTransferStatus");
    destroyTransferEngine(e);
}

#[test]
fn transfer_sync_codes() {
    let (a, b) = pair();
    let mut src = vec![6u8; 1 << 16];
    let mut dst = vec![0u8; 1 << 16];
    register(a, &mut src);
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    let mut ok = [request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64, 1 << 16)];
    let (name, msg) = (c("sync"), c("done"));
    let note = notify_msg { name: name.as_ptr() as *mut _, msg: msg.as_ptr() as *mut _ };
    // SAFETY: readable entries and message.
    unsafe {
        assert_code(
            mooncake_transfer_sync(a, ok.as_mut_ptr(), 1, std::ptr::null(), 10_000),
            0,
            "mooncake_transfer_sync",
        );
        assert!(dst.iter().all(|&x| x == 6));
        assert_code(mooncake_transfer_sync(a, ok.as_mut_ptr(), 1, &note, 10_000), 0, "mooncake_transfer_sync");
        let mut bad = [request(OPCODE_READ, src.as_ptr(), seg, dst.as_ptr() as u64 + (1 << 16), 1)];
        assert_code(
            mooncake_transfer_sync(a, bad.as_mut_ptr(), 1, std::ptr::null(), 10_000),
            MOONCAKE_ERR_TRANSFER_FAILED,
            "mooncake_transfer_sync",
        );
        // A source that was never registered is taken (as Mooncake's TCP transport); one that
        // is not even mapped fails the transfer, not the process.
        let loose = [3u8; 8];
        let mut unreg = [request(OPCODE_WRITE, loose.as_ptr(), seg, dst.as_ptr() as u64, 8)];
        assert_code(
            mooncake_transfer_sync(a, unreg.as_mut_ptr(), 1, std::ptr::null(), 10_000),
            0,
            "mooncake_transfer_sync",
        );
        assert!(dst[..8].iter().all(|&x| x == 3));
        let mut unmapped = [request(OPCODE_WRITE, 0x1000 as *const u8, seg, dst.as_ptr() as u64, 8)];
        assert_code(
            mooncake_transfer_sync(a, unmapped.as_mut_ptr(), 1, std::ptr::null(), 10_000),
            MOONCAKE_ERR_TRANSFER_FAILED,
            "mooncake_transfer_sync",
        );
        assert_code(
            mooncake_transfer_sync(a, null_mut(), 1, std::ptr::null(), 10),
            ERR_INVALID_ARGUMENT,
            "mooncake_transfer_sync",
        );
        let nameless = notify_msg { name: null_mut(), msg: msg.as_ptr() as *mut _ };
        assert_code(
            mooncake_transfer_sync(a, ok.as_mut_ptr(), 1, &nameless, 10),
            ERR_INVALID_ARGUMENT,
            "mooncake_transfer_sync",
        );
        assert_code(
            mooncake_transfer_sync(null_mut(), ok.as_mut_ptr(), 1, std::ptr::null(), 10),
            ERR_INVALID_ARGUMENT,
            "mooncake_transfer_sync",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut n = 0;
        // SAFETY: writable size; the array is freed with its size.
        let arr = unsafe { getNotifsFromEngine(b, &mut n) };
        if n > 0 {
            // SAFETY: array of n entries from the library.
            unsafe { freeNotifsMsgBuf(arr, n) };
            break;
        }
        assert!(Instant::now() < deadline, "the sync transfer's notification did not arrive");
        std::thread::sleep(Duration::from_millis(2));
    }
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn transfer_sync_times_out_on_a_silent_peer() {
    let e = create();
    let mut buf = vec![1u8; 4096];
    register(e, &mut buf);
    let silent = FakeServer::silent();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor_json("s", silent.port, 1 << 20, 1 << 20)));
    let seg = open(e, &format!("127.0.0.1:{}", hs.port));
    let mut r = [request(OPCODE_WRITE, buf.as_ptr(), seg, 1 << 20, 4096)];
    // SAFETY: readable entry.
    let rc = unsafe { mooncake_transfer_sync(e, r.as_mut_ptr(), 1, std::ptr::null(), 300) };
    assert_code(rc, MOONCAKE_ERR_TIMEOUT, "mooncake_transfer_sync");
    destroyTransferEngine(e);
}

#[test]
fn segment_buffers_lists_the_descriptor() {
    let (a, b) = pair();
    let mut one = vec![0u8; 4096];
    let mut two = vec![0u8; 8192];
    register(b, &mut one);
    register(b, &mut two);
    let seg = open(a, &name_of(b));
    let mut out = [buffer_entry { addr: null_mut(), length: 0 }; 1];
    let mut count = out.len();
    // SAFETY: writable array and count.
    unsafe {
        assert_code(mooncake_segment_buffers(a, seg, out.as_mut_ptr(), &mut count), 0, "mooncake_segment_buffers");
        assert_eq!(count, 2, "the count says how many there are");
        let first = if one.as_ptr() < two.as_ptr() { (one.as_ptr(), 4096) } else { (two.as_ptr(), 8192) };
        assert_eq!((out[0].addr as *const u8, out[0].length), first, "first in address order");
        let mut own = [buffer_entry { addr: null_mut(), length: 0 }; 4];
        let mut n = own.len();
        assert_code(
            mooncake_segment_buffers(a, LOCAL_SEGMENT, own.as_mut_ptr(), &mut n),
            0,
            "mooncake_segment_buffers",
        );
        assert_eq!(n, 0, "a has registered nothing");
        assert_code(
            mooncake_segment_buffers(a, 77, out.as_mut_ptr(), &mut count),
            ERR_INVALID_ARGUMENT,
            "mooncake_segment_buffers",
        );
        assert_code(
            mooncake_segment_buffers(a, seg, null_mut(), &mut count),
            ERR_INVALID_ARGUMENT,
            "mooncake_segment_buffers",
        );
        assert_code(
            mooncake_segment_buffers(a, seg, out.as_mut_ptr(), null_mut()),
            ERR_INVALID_ARGUMENT,
            "mooncake_segment_buffers",
        );
        assert_code(
            mooncake_segment_buffers(null_mut(), seg, out.as_mut_ptr(), &mut count),
            ERR_INVALID_ARGUMENT,
            "mooncake_segment_buffers",
        );
    }
    let _keep: *const c_void = one.as_ptr() as *const c_void;
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn send_probe_codes() {
    let (a, b) = pair();
    // SAFETY: valid strings or the NULL cases under test.
    unsafe {
        assert_code(mooncake_send_probe(a, c(&name_of(b)).as_ptr()), 0, "mooncake_send_probe");
        assert_code(mooncake_send_probe(a, c(&name_of(a)).as_ptr()), 0, "mooncake_send_probe");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert_code(
            mooncake_send_probe(a, c(&format!("127.0.0.1:{closed}")).as_ptr()),
            ERR_SOCKET,
            "mooncake_send_probe",
        );
        let wrong = FakeServer::handshake(Reply::Frame(1, b"{}".to_vec()));
        assert_code(
            mooncake_send_probe(a, c(&format!("127.0.0.1:{}", wrong.port)).as_ptr()),
            ERR_REJECT_HANDSHAKE,
            "mooncake_send_probe",
        );
        assert_code(mooncake_send_probe(a, std::ptr::null()), ERR_INVALID_ARGUMENT, "mooncake_send_probe");
        assert_code(mooncake_send_probe(null_mut(), c("x:1").as_ptr()), ERR_INVALID_ARGUMENT, "mooncake_send_probe");
    }
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}
