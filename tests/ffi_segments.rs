//! The C ABI's segments: opening peers (and misbehaving ones), caching, closing.

mod support;

use std::ptr::null_mut;

use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi::*;

#[test]
fn open_segment_peer_own_and_bad_names() {
    let (a, b) = (create(), create());
    let name_b = name_of(b);
    let seg = open(a, &name_b);
    assert!(seg >= 1, "{}", last_error());
    assert_eq!(open(a, &name_b), seg, "cached: same id");
    assert_eq!(open(a, &format!("//{name_b}")), seg, "leading slashes are trimmed, as Mooncake does");
    assert_eq!(open(a, &name_of(a)), LOCAL_SEGMENT);
    mark_last_error();
    // SAFETY: NULL is the case under test.
    assert_code(unsafe { openSegment(a, std::ptr::null()) }, ERR_INVALID_ARGUMENT, "openSegment");
    assert_code(open(a, ""), ERR_INVALID_ARGUMENT, "openSegment");
    assert_code(open(a, "///"), ERR_INVALID_ARGUMENT, "openSegment");
    // SAFETY: valid string.
    assert_code(unsafe { openSegment(null_mut(), c(&name_b).as_ptr()) }, ERR_INVALID_ARGUMENT, "openSegment");
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn open_segment_of_an_unreachable_peer_is_err_socket() {
    let e = create();
    assert_code(open(e, &format!("127.0.0.1:{}", closed_port())), ERR_SOCKET, "openSegment");
    let closing = FakeServer::handshake(Reply::Close);
    assert_code(open(e, &format!("127.0.0.1:{}", closing.port)), ERR_SOCKET, "openSegment");
    destroyTransferEngine(e);
}

#[test]
fn open_segment_of_a_peer_with_bad_json_is_err_malformed_json() {
    let e = create();
    for body in [b"{not json".to_vec(), b"null\n".to_vec(), b"[1,2]".to_vec(), {
        let mut d: serde_json::Value = serde_json::from_slice(&descriptor_json("x", 1, 4096, 4096)).unwrap();
        d["buffers"][0]["name"] = "".into();
        d.to_string().into_bytes()
    }] {
        let fake = FakeServer::handshake(Reply::Frame(1, body.clone()));
        assert_code(open(e, &format!("127.0.0.1:{}", fake.port)), ERR_MALFORMED_JSON, "openSegment");
    }
    destroyTransferEngine(e);
}

#[test]
fn open_segment_answered_with_the_wrong_type_is_err_reject_handshake() {
    let e = create();
    let fake = FakeServer::handshake(Reply::Frame(3, b"{\"status\":\"success\"}".to_vec()));
    assert_code(open(e, &format!("127.0.0.1:{}", fake.port)), ERR_REJECT_HANDSHAKE, "openSegment");
    destroyTransferEngine(e);
}

/// Name resolution fails without any traffic leaving the machine: the check runs in a child
/// process inside a fresh network namespace (`unshare -n`), where no resolver is reachable.
#[test]
fn open_segment_of_an_unresolvable_host_is_err_dns() {
    if std::env::var_os("MOONCAKE_DNS_CHILD").is_some() {
        let e = create();
        assert_code(open(e, "no-such-host.invalid:15000"), ERR_DNS, "openSegment");
        destroyTransferEngine(e);
        return;
    }
    let status = std::process::Command::new("unshare")
        .arg("-n")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "open_segment_of_an_unresolvable_host_is_err_dns", "--nocapture", "--test-threads=1"])
        .env("MOONCAKE_DNS_CHILD", "1")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) if s.code() == Some(1) && std::env::var_os("MOONCAKE_REQUIRE_NETNS").is_none() && !is_root() => {
            eprintln!("SKIPPED: unshare -n needs root");
        }
        Ok(s) => panic!("the DNS check failed in its namespace: {s}"),
        Err(e) if std::env::var_os("MOONCAKE_REQUIRE_NETNS").is_none() => eprintln!("SKIPPED: unshare: {e}"),
        Err(e) => panic!("unshare: {e}"),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn open_segment_no_cache_refetches_and_keeps_the_id() {
    let (a, b) = (create(), create());
    let mut first = vec![0u8; 4096];
    register(b, &mut first);
    let name_b = name_of(b);
    let seg = open(a, &name_b);
    let mut second = vec![0u8; 4096];
    register(b, &mut second);
    let mut src = vec![9u8; 4096];
    register(a, &mut src);
    // SAFETY: valid string.
    assert_eq!(unsafe { openSegmentNoCache(a, c(&name_b).as_ptr()) }, seg, "{}", last_error());
    // SAFETY: NULL is the case under test.
    assert_code(unsafe { openSegmentNoCache(a, std::ptr::null()) }, ERR_INVALID_ARGUMENT, "openSegmentNoCache");
    // SAFETY: valid string.
    assert_code(
        unsafe { openSegmentNoCache(a, c(&format!("127.0.0.1:{}", closed_port())).as_ptr()) },
        ERR_SOCKET,
        "openSegmentNoCache",
    );
    let mut req = [request(OPCODE_WRITE, src.as_ptr(), seg, second.as_ptr() as u64, 4096)];
    assert_eq!(transfer(a, &mut req), vec![STATUS_COMPLETED]);
    assert!(second.iter().all(|&x| x == 9));
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn close_segment_and_remove_local_segment() {
    let (a, b) = (create(), create());
    let mut src = vec![1u8; 64];
    register(a, &mut src);
    let name_b = name_of(b);
    let seg = open(a, &name_b);
    assert_code(closeSegment(a, seg), 0, "closeSegment");
    assert_code(closeSegment(a, seg), ERR_INVALID_ARGUMENT, "closeSegment");
    assert_code(closeSegment(a, LOCAL_SEGMENT), 0, "closeSegment");
    assert_code(closeSegment(null_mut(), seg), ERR_INVALID_ARGUMENT, "closeSegment");
    // a closed id is refused at submission (status family: 1 InvalidArgument)
    let batch = allocateBatchID(a, 1);
    let mut req = [request(OPCODE_WRITE, src.as_ptr(), seg, 4096, 64)];
    // SAFETY: readable entries.
    assert_code(unsafe { submitTransfer(a, batch, req.as_mut_ptr(), 1) }, 1, "submitTransfer");
    let seg2 = open(a, &name_b);
    assert!(seg2 > seg, "ids are not reused");
    // SAFETY: valid strings.
    unsafe {
        assert_code(removeLocalSegment(a, c(&name_b).as_ptr()), 0, "removeLocalSegment");
        assert_code(removeLocalSegment(a, c("not-open:1").as_ptr()), 0, "removeLocalSegment");
        assert_code(removeLocalSegment(a, c(&name_of(a)).as_ptr()), ERR_INVALID_ARGUMENT, "removeLocalSegment");
        assert_code(removeLocalSegment(a, c("/").as_ptr()), ERR_INVALID_ARGUMENT, "removeLocalSegment");
        assert_code(removeLocalSegment(a, std::ptr::null()), ERR_INVALID_ARGUMENT, "removeLocalSegment");
        assert_code(removeLocalSegment(null_mut(), c(&name_b).as_ptr()), ERR_INVALID_ARGUMENT, "removeLocalSegment");
    }
    assert_ne!(open(a, &name_b), seg2, "a removed segment gets a new id when opened again");
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn sync_segment_cache_refreshes_and_reports_dead_peers() {
    let (a, b) = (create(), create());
    assert_code(syncSegmentCache(a), 0, "syncSegmentCache");
    let seg = open(a, &name_of(b));
    assert!(seg >= 1);
    assert_code(syncSegmentCache(a), 0, "syncSegmentCache");
    destroyTransferEngine(b);
    assert_code(syncSegmentCache(a), ERR_SOCKET, "syncSegmentCache");
    assert_code(syncSegmentCache(null_mut()), ERR_INVALID_ARGUMENT, "syncSegmentCache");
    destroyTransferEngine(a);
}
