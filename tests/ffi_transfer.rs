//! The C ABI's batches, transfers and notifications: every success and failure code.

mod support;

use std::ffi::{CStr, c_int};
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi::*;

#[test]
fn allocate_batch_id() {
    let e = create();
    let b = allocateBatchID(e, 16);
    assert_ne!(b, INVALID_BATCH);
    assert_ne!(allocateBatchID(e, 16), b, "ids are distinct");
    mark_last_error();
    assert_eq!(allocateBatchID(null_mut(), 16), INVALID_BATCH);
    assert!(last_error().starts_with("allocateBatchID"));
    mark_last_error();
    assert_eq!(allocateBatchID(e, usize::MAX / 2), INVALID_BATCH, "an impossible size fails cleanly");
    assert!(last_error().starts_with("allocateBatchID"));
    destroyTransferEngine(e);
}

#[test]
fn submit_transfer_codes() {
    let (a, b) = (create(), create());
    let mut src = vec![5u8; 1 << 16];
    let mut dst = vec![0u8; 1 << 16];
    register(a, &mut src);
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    let batch = allocateBatchID(a, 2);
    let good = request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64, 4096);
    // SAFETY: entries readable for their counts.
    unsafe {
        let mut r = [good];
        r[0].opcode = 7;
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 1), 1, "submitTransfer");
        // 3 AddressNotRegistered is for RDMA routes only (tests/rdma_guest.rs); on this one an
        // unregistered source is taken (tests/engine_unregistered.rs), one that wraps is 1.
        let mut r = [request(OPCODE_WRITE, usize::MAX as *const u8, seg, dst.as_ptr() as u64, 16)];
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 1), 1, "submitTransfer");
        let mut r = [good, good, good];
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 3), 2, "submitTransfer");
        let mut r = [good];
        r[0].target_id = 999;
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 1), 1, "submitTransfer");
        assert_code(submitTransfer(a, batch, null_mut(), 1), 1, "submitTransfer");
        assert_code(submitTransfer(a, 424242, r.as_mut_ptr(), 1), 1, "submitTransfer");
        assert_code(submitTransfer(null_mut(), batch, r.as_mut_ptr(), 1), 1, "submitTransfer");
        let mut r = [good];
        r[0].target_offset = u64::MAX - 10;
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 1), 1, "submitTransfer");
        // none of the refused calls queued anything: the batch still has room for two
        let mut r = [good, request(OPCODE_READ, src.as_ptr(), seg, dst.as_ptr() as u64, 0)];
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 2), 0, "submitTransfer");
        assert_eq!(wait_task(a, batch, 0, Duration::from_secs(10)).status, STATUS_COMPLETED);
        let zero = wait_task(a, batch, 1, Duration::from_secs(10));
        assert_eq!((zero.status, zero.transferred_bytes), (STATUS_COMPLETED, 0), "zero length completes at once");
        assert_code(submitTransfer(a, batch, r.as_mut_ptr(), 1), 2, "submitTransfer");
        assert_code(submitTransfer(a, batch, null_mut(), 0), 0, "submitTransfer");
    }
    assert!(dst[..4096].iter().all(|&x| x == 5));
    // 8 NotSupportedTransport: the peer speaks tcp but this engine uninstalled it
    // SAFETY: valid string.
    assert_eq!(unsafe { uninstallTransport(a, c("tcp").as_ptr()) }, 0);
    let batch2 = allocateBatchID(a, 1);
    let mut r = [good];
    // SAFETY: readable entry.
    assert_code(unsafe { submitTransfer(a, batch2, r.as_mut_ptr(), 1) }, 8, "submitTransfer");
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn submit_to_a_segment_of_another_protocol_is_not_supported_transport() {
    let e = create();
    let mut src = vec![0u8; 64];
    register(e, &mut src);
    let mut d: serde_json::Value = serde_json::from_slice(&descriptor_json("r", 1, 4096, 4096)).unwrap();
    d["protocol"] = "rdma".into();
    let fake = FakeServer::handshake(Reply::Frame(1, d.to_string().into_bytes()));
    let seg = open(e, &format!("127.0.0.1:{}", fake.port));
    assert!(seg >= 1, "{}", last_error());
    let batch = allocateBatchID(e, 1);
    let mut r = [request(OPCODE_WRITE, src.as_ptr(), seg, 4096, 64)];
    // SAFETY: readable entry.
    assert_code(unsafe { submitTransfer(e, batch, r.as_mut_ptr(), 1) }, 8, "submitTransfer");
    destroyTransferEngine(e);
}

#[test]
fn get_transfer_status_and_free_batch_codes() {
    let e = create();
    let mut buf = vec![3u8; 8192];
    register(e, &mut buf);
    // A peer whose data port accepts and never answers keeps a task in flight.
    let silent = FakeServer::silent();
    let fake = FakeServer::handshake(Reply::Frame(1, descriptor_json("s", silent.port, 1 << 20, 1 << 20)));
    let seg = open(e, &format!("127.0.0.1:{}", fake.port));
    let batch = allocateBatchID(e, 1);
    let mut r = [request(OPCODE_WRITE, buf.as_ptr(), seg, 1 << 20, 4096)];
    let mut st = transfer_status { status: -1, transferred_bytes: 0 };
    // SAFETY: readable entry, writable status.
    unsafe {
        assert_eq!(submitTransfer(e, batch, r.as_mut_ptr(), 1), 0);
        assert_code(getTransferStatus(e, batch, 0, &mut st), 0, "getTransferStatus");
        assert_eq!(st.status, STATUS_WAITING);
        assert_code(freeBatchID(e, batch), 4, "freeBatchID");
        assert_code(getTransferStatus(e, batch, 1, &mut st), 1, "getTransferStatus");
        assert_code(getTransferStatus(e, batch, 0, null_mut()), 1, "getTransferStatus");
        assert_code(getTransferStatus(e, 777777, 0, &mut st), 1, "getTransferStatus");
        assert_code(getTransferStatus(null_mut(), batch, 0, &mut st), 1, "getTransferStatus");
        // uninstalling tcp fails the task in flight; then the batch can be freed
        assert_eq!(uninstallTransport(e, c("tcp").as_ptr()), 0);
    }
    assert_eq!(wait_task(e, batch, 0, Duration::from_secs(5)).status, STATUS_FAILED);
    assert_code(freeBatchID(e, batch), 0, "freeBatchID");
    assert_code(freeBatchID(e, batch), 1, "freeBatchID");
    assert_code(freeBatchID(null_mut(), batch), 1, "freeBatchID");
    destroyTransferEngine(e);
}

fn drain_notifies(e: transfer_engine_t, want: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < want {
        assert!(Instant::now() < deadline, "notifications missing: {got:?}");
        let mut n: c_int = -1;
        // SAFETY: writable size; the array is freed below with its size.
        unsafe {
            let arr = getNotifsFromEngine(e, &mut n);
            assert!(n >= 0);
            for i in 0..n as usize {
                let m = &*arr.add(i);
                got.push((
                    CStr::from_ptr(m.name).to_string_lossy().into_owned(),
                    CStr::from_ptr(m.msg).to_string_lossy().into_owned(),
                ));
            }
            assert_eq!(freeNotifsMsgBuf(arr, n), 0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

#[test]
fn notifications_with_a_batch_and_on_their_own() {
    let (a, b) = (create(), create());
    let mut src = vec![8u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    register(a, &mut src);
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    let batch = allocateBatchID(a, 4);
    let mut reqs: Vec<_> =
        (0..4).map(|i| request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64 + i * 65536, 65536)).collect();
    let (name, msg) = (c("initiator-a"), c("layer 7 ready"));
    let note = notify_msg { name: name.as_ptr() as *mut _, msg: msg.as_ptr() as *mut _ };
    // SAFETY: readable entries and strings.
    unsafe {
        assert_code(submitTransferWithNotify(a, batch, reqs.as_mut_ptr(), 4, note), 0, "submitTransferWithNotify");
    }
    let got = drain_notifies(b, 1);
    assert_eq!(got, vec![("initiator-a".to_string(), "layer 7 ready".to_string())]);
    // the notification came after the data
    assert!(dst[..4 * 65536].iter().all(|&x| x == 8));
    for t in 0..4 {
        assert_eq!(wait_task(a, batch, t, Duration::from_secs(5)).status, STATUS_COMPLETED);
    }
    // SAFETY: valid entries/strings, or the NULL cases under test.
    unsafe {
        let bad = notify_msg { name: null_mut(), msg: msg.as_ptr() as *mut _ };
        let b2 = allocateBatchID(a, 1);
        assert_code(submitTransferWithNotify(a, b2, reqs.as_mut_ptr(), 1, bad), 1, "submitTransferWithNotify");
        assert_code(submitTransferWithNotify(a, b2, reqs.as_mut_ptr(), 0, note), 1, "submitTransferWithNotify");
        assert_code(submitTransferWithNotify(a, 99999, reqs.as_mut_ptr(), 1, note), 1, "submitTransferWithNotify");
        assert_code(
            submitTransferWithNotify(null_mut(), b2, reqs.as_mut_ptr(), 1, note),
            1,
            "submitTransferWithNotify",
        );

        assert_code(genNotifyInEngine(a, seg as u64, note), 0, "genNotifyInEngine");
        assert_code(genNotifyInEngine(a, 4242, note), ERR_METADATA, "genNotifyInEngine");
        assert_code(genNotifyInEngine(a, u64::MAX, note), ERR_INVALID_ARGUMENT, "genNotifyInEngine");
        assert_code(genNotifyInEngine(a, seg as u64, bad), ERR_INVALID_ARGUMENT, "genNotifyInEngine");
        assert_code(genNotifyInEngine(null_mut(), seg as u64, note), ERR_INVALID_ARGUMENT, "genNotifyInEngine");
    }
    assert_eq!(drain_notifies(b, 1), vec![("initiator-a".to_string(), "layer 7 ready".to_string())]);
    // SAFETY: NULL/negative cases under test.
    unsafe {
        let mut n: c_int = 5;
        assert!(getNotifsFromEngine(b, &mut n).is_null());
        assert_eq!(n, 0, "no notifications: NULL and size 0");
        mark_last_error();
        assert!(getNotifsFromEngine(b, null_mut()).is_null());
        assert!(last_error().starts_with("getNotifsFromEngine"));
        assert!(getNotifsFromEngine(null_mut(), &mut n).is_null());
        assert!(last_error().starts_with("getNotifsFromEngine"));
        assert_code(freeNotifsMsgBuf(null_mut(), 3), 0, "freeNotifsMsgBuf");
        let mut one: c_int = 0;
        let arr = getNotifsFromEngine(b, &mut one);
        assert_eq!(one, 0);
        assert!(arr.is_null());
        let fake = std::ptr::dangling_mut::<notify_msg_t>();
        assert_code(freeNotifsMsgBuf(fake, -1), ERR_INVALID_ARGUMENT, "freeNotifsMsgBuf");
    }
    // a peer that is gone: ERR_SOCKET
    destroyTransferEngine(b);
    // SAFETY: valid strings.
    assert_code(unsafe { genNotifyInEngine(a, seg as u64, note) }, ERR_SOCKET, "genNotifyInEngine");
    destroyTransferEngine(a);
}

/// Notifications of batches completed one after the other arrive in that order (through the
/// C ABI, P2P; `metadata_backends.rs` has the etcd/redis case, where CI found them reordered).
#[test]
fn batch_notifications_arrive_in_completion_order() {
    let (a, b) = (create(), create());
    let mut src = vec![3u8; 4096];
    let mut dst = vec![0u8; 4096];
    register(a, &mut src);
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    const N: usize = 50;
    for i in 0..N {
        let batch = allocateBatchID(a, 1);
        let mut req = [request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64, 64)];
        let (name, msg) = (c(&format!("n{i}")), c(&format!("m{i}")));
        let note = notify_msg { name: name.as_ptr() as *mut _, msg: msg.as_ptr() as *mut _ };
        // SAFETY: readable entries and strings.
        unsafe {
            assert_code(submitTransferWithNotify(a, batch, req.as_mut_ptr(), 1, note), 0, "submitTransferWithNotify");
        }
        assert_eq!(wait_task(a, batch, 0, Duration::from_secs(5)).status, STATUS_COMPLETED);
        assert_code(freeBatchID(a, batch), 0, "freeBatchID");
    }
    let got = drain_notifies(b, N);
    let want: Vec<_> = (0..N).map(|i| (format!("n{i}"), format!("m{i}"))).collect();
    assert_eq!(got, want);
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn a_batch_with_a_failed_task_sends_no_notification() {
    let (a, b) = (create(), create());
    let mut src = vec![8u8; 4096];
    let mut dst = vec![0u8; 4096];
    register(a, &mut src);
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    let batch = allocateBatchID(a, 2);
    let mut reqs = [
        request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64, 4096),
        request(OPCODE_WRITE, src.as_ptr(), seg, dst.as_ptr() as u64 + 4096, 16),
    ];
    let (name, msg) = (c("n"), c("m"));
    let note = notify_msg { name: name.as_ptr() as *mut _, msg: msg.as_ptr() as *mut _ };
    // SAFETY: readable entries and strings.
    assert_eq!(unsafe { submitTransferWithNotify(a, batch, reqs.as_mut_ptr(), 2, note) }, 0);
    assert_eq!(wait_task(a, batch, 1, Duration::from_secs(5)).status, STATUS_FAILED);
    std::thread::sleep(Duration::from_millis(300));
    let mut n: c_int = 0;
    // SAFETY: writable size.
    assert!(unsafe { getNotifsFromEngine(b, &mut n) }.is_null());
    assert_eq!(n, 0);
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn notifications_to_the_local_segment_reach_this_engine() {
    let e = create();
    let mut buf = vec![1u8; 8192];
    register(e, &mut buf);
    let (name, msg) = (c("me"), c("hi"));
    let note = notify_msg { name: name.as_ptr() as *mut _, msg: msg.as_ptr() as *mut _ };
    // SAFETY: valid strings.
    assert_code(unsafe { genNotifyInEngine(e, LOCAL_SEGMENT as u64, note) }, 0, "genNotifyInEngine");
    assert_eq!(drain_notifies(e, 1), vec![("me".to_string(), "hi".to_string())]);
    let batch = allocateBatchID(e, 1);
    let mut r = [request(OPCODE_WRITE, buf.as_ptr(), LOCAL_SEGMENT, buf.as_ptr() as u64 + 4096, 4096)];
    // SAFETY: readable entry and strings.
    assert_eq!(unsafe { submitTransferWithNotify(e, batch, r.as_mut_ptr(), 1, note) }, 0);
    assert_eq!(drain_notifies(e, 1), vec![("me".to_string(), "hi".to_string())]);
    destroyTransferEngine(e);
}
