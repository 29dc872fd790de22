//! The C ABI's engine lifecycle, transports and diagnostics: every success and failure code.

mod support;

use std::ffi::{CStr, c_char};
use std::ptr::null_mut;

use support::ffi::*;

#[test]
fn create_p2p_names_the_segment_host_and_random_port() {
    let (meta, host) = (c("P2PHANDSHAKE"), c("127.0.0.1:23456"));
    // SAFETY: valid strings.
    let e = unsafe { createTransferEngine(meta.as_ptr(), host.as_ptr(), c("ignored").as_ptr(), 9999, 1) };
    assert!(!e.is_null(), "{}", last_error());
    let name = name_of(e);
    let port: u16 = name.strip_prefix("127.0.0.1:").expect("host kept").parse().unwrap();
    assert!((15000..=17000).contains(&port), "port {port} outside Mooncake's range");
    assert_ne!(port, 23456, "the port of local_server_name must be ignored");
    destroyTransferEngine(e);
}

#[test]
fn create_refuses_null_and_unavailable_metadata() {
    let host = c("127.0.0.1");
    mark_last_error();
    // SAFETY: NULL is the case under test.
    assert!(unsafe { createTransferEngine(std::ptr::null(), host.as_ptr(), std::ptr::null(), 0, 1) }.is_null());
    assert!(last_error().starts_with("createTransferEngine") && last_error().contains("metadata_conn_string"));
    assert!(
        // SAFETY: as above.
        unsafe { createTransferEngine(c("P2PHANDSHAKE").as_ptr(), std::ptr::null(), std::ptr::null(), 0, 1) }.is_null()
    );
    assert!(last_error().contains("local_server_name"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!("http://127.0.0.1:{closed}/metadata");
    let mut cases = vec![(down.as_str(), "metadata server"), ("ftp://x", "unknown scheme")];
    if cfg!(not(feature = "etcd")) {
        cases.extend([("etcd://127.0.0.1:2379", "feature `etcd`"), ("127.0.0.1:2379", "feature `etcd`")]);
    }
    if cfg!(not(feature = "redis")) {
        cases.push(("redis://127.0.0.1:6379", "feature `redis`"));
    }
    for (conn, why) in cases {
        mark_last_error();
        // SAFETY: valid strings.
        let e = unsafe { createTransferEngine(c(conn).as_ptr(), host.as_ptr(), std::ptr::null(), 0, 1) };
        assert!(e.is_null(), "{conn} must be refused (service down, or not in this build)");
        assert!(last_error().starts_with("createTransferEngine") && last_error().contains(why), "{}", last_error());
    }
    assert!(
        // SAFETY: valid strings; an empty host is refused.
        unsafe { createTransferEngine(c("P2PHANDSHAKE").as_ptr(), c(":1").as_ptr(), std::ptr::null(), 0, 1) }.is_null()
    );
}

#[test]
fn destroy_accepts_null_and_refuses_stale_handles() {
    destroyTransferEngine(null_mut());
    let e = create();
    destroyTransferEngine(e);
    mark_last_error();
    destroyTransferEngine(e);
    assert!(last_error().starts_with("destroyTransferEngine"), "{}", last_error());
    // Every other function refuses the stale handle with ERR_INVALID_ARGUMENT.
    assert_code(discoverTopology(e), ERR_INVALID_ARGUMENT, "discoverTopology");
    assert_code(syncSegmentCache(e), ERR_INVALID_ARGUMENT, "syncSegmentCache");
    assert_eq!(allocateBatchID(e, 1), INVALID_BATCH);
}

#[test]
fn discover_topology_succeeds_and_refuses_null() {
    let e = create();
    assert_code(discoverTopology(e), 0, "discoverTopology");
    assert_code(discoverTopology(null_mut()), ERR_INVALID_ARGUMENT, "discoverTopology");
    destroyTransferEngine(e);
}

#[test]
fn get_local_ip_and_port_checks_its_buffer() {
    let e = create();
    let name = name_of(e);
    let mut small = [0 as c_char; 8];
    // SAFETY: writable buffers of the given lengths.
    unsafe {
        assert_code(getLocalIpAndPort(e, small.as_mut_ptr(), small.len()), ERR_INVALID_ARGUMENT, "getLocalIpAndPort");
        assert_eq!(CStr::from_ptr(small.as_ptr()).to_str().unwrap(), &name[..7], "cut text stays NUL-terminated");
        assert_code(getLocalIpAndPort(e, null_mut(), 64), ERR_INVALID_ARGUMENT, "getLocalIpAndPort");
        assert_code(getLocalIpAndPort(e, small.as_mut_ptr(), 0), ERR_INVALID_ARGUMENT, "getLocalIpAndPort");
        assert_code(getLocalIpAndPort(null_mut(), small.as_mut_ptr(), 8), ERR_INVALID_ARGUMENT, "getLocalIpAndPort");
    }
    destroyTransferEngine(e);
}

#[test]
fn install_transport_tcp_is_idempotent_and_others_are_refused() {
    let (meta, host) = (c("P2PHANDSHAKE"), c("127.0.0.1"));
    // SAFETY: valid strings; no auto-discovery, so tcp is installed by hand.
    let e = unsafe { createTransferEngine(meta.as_ptr(), host.as_ptr(), std::ptr::null(), 0, 0) };
    assert!(!e.is_null());
    // SAFETY: valid strings; args may be NULL.
    unsafe {
        let t1 = installTransport(e, c("tcp").as_ptr(), null_mut());
        assert!(!t1.is_null(), "{}", last_error());
        assert_eq!(installTransport(e, c("tcp").as_ptr(), null_mut()), t1);
        // rdma: refused on a host without RDMA devices (tests/rdma_guest.rs installs it on
        // soft-RoCE); nvmeof is not in this build.
        for proto in ["rdma", "nvmeof", "bogus"] {
            mark_last_error();
            assert!(installTransport(e, c(proto).as_ptr(), null_mut()).is_null());
            assert!(last_error().starts_with("installTransport") && last_error().contains(proto));
        }
        assert!(installTransport(e, std::ptr::null(), null_mut()).is_null());
        assert!(installTransport(null_mut(), c("tcp").as_ptr(), null_mut()).is_null());
        assert_code(uninstallTransport(e, c("tcp").as_ptr()), 0, "uninstallTransport");
        assert_code(uninstallTransport(e, c("tcp").as_ptr()), 0, "uninstallTransport");
        assert_code(uninstallTransport(e, c("rdma").as_ptr()), 0, "uninstallTransport");
        assert_code(uninstallTransport(e, c("bogus").as_ptr()), ERR_INVALID_ARGUMENT, "uninstallTransport");
        assert_code(uninstallTransport(e, std::ptr::null()), ERR_INVALID_ARGUMENT, "uninstallTransport");
        assert_code(uninstallTransport(null_mut(), c("tcp").as_ptr()), ERR_INVALID_ARGUMENT, "uninstallTransport");
        // a new install after uninstall works again
        assert!(!installTransport(e, c("tcp").as_ptr(), null_mut()).is_null());
    }
    destroyTransferEngine(e);
}

#[test]
fn nic_load_stats_of_a_tcp_engine_are_empty() {
    let e = create();
    let mut stats: [nic_load_stat_t; 2] = [
        nic_load_stat { device_name: [0; 64], inflight_bytes: 0, ewma_bandwidth_bps: 0.0 },
        nic_load_stat { device_name: [0; 64], inflight_bytes: 0, ewma_bandwidth_bps: 0.0 },
    ];
    let mut count = stats.len();
    // SAFETY: valid pointers.
    unsafe {
        assert_code(getNicLoadStats(e, stats.as_mut_ptr(), &mut count), 0, "getNicLoadStats");
        assert_eq!(count, 0);
        assert_code(getNicLoadStats(e, null_mut(), &mut count), ERR_INVALID_ARGUMENT, "getNicLoadStats");
        assert_code(getNicLoadStats(e, stats.as_mut_ptr(), null_mut()), ERR_INVALID_ARGUMENT, "getNicLoadStats");
        assert_code(
            getNicLoadStats(null_mut(), stats.as_mut_ptr(), &mut count),
            ERR_INVALID_ARGUMENT,
            "getNicLoadStats",
        );
    }
    destroyTransferEngine(e);
}

#[test]
fn show_links_reports_open_links_as_text_and_json() {
    let (a, b) = (create(), create());
    let mut buf = vec![0u8; 1 << 20];
    register(a, &mut buf);
    let mut dst = vec![0u8; 4096];
    register(b, &mut dst);
    let seg = open(a, &name_of(b));
    let mut req = [request(OPCODE_WRITE, buf.as_ptr(), seg, dst.as_ptr() as u64, 4096)];
    assert_eq!(transfer(a, &mut req), vec![STATUS_COMPLETED]);
    let mut out = vec![0 as c_char; 4096];
    // SAFETY: writable buffer.
    unsafe {
        assert_code(showLinks(a, out.as_mut_ptr(), out.len(), 1), 0, "showLinks");
        let json: serde_json::Value = serde_json::from_str(CStr::from_ptr(out.as_ptr()).to_str().unwrap()).unwrap();
        // Both engines live in this process, so the same-host transport carried the write.
        assert_eq!(json[0]["transport"], "shm");
        assert_eq!(json[0]["requests_completed"], 1);
        assert_code(showLinks(a, out.as_mut_ptr(), out.len(), 0), 0, "showLinks");
        let text = CStr::from_ptr(out.as_ptr()).to_str().unwrap();
        assert!(text.contains(&format!("shm pid {}", std::process::id())), "{text}");
        assert_code(showLinks(a, out.as_mut_ptr(), 4, 0), ERR_INVALID_ARGUMENT, "showLinks");
        assert_code(showLinks(a, null_mut(), 10, 0), ERR_INVALID_ARGUMENT, "showLinks");
        assert_code(showLinks(null_mut(), out.as_mut_ptr(), out.len(), 0), ERR_INVALID_ARGUMENT, "showLinks");
    }
    destroyTransferEngine(a);
    destroyTransferEngine(b);
}

#[test]
fn warmup_efa_is_a_no_op() {
    let e = create();
    assert_code(warmupEfaSegment(e, c("x").as_ptr()), 0, "warmupEfaSegment");
    assert_code(warmupEfaSegment(e, std::ptr::null()), 0, "warmupEfaSegment");
    assert_code(warmupEfaSegment(null_mut(), std::ptr::null()), ERR_INVALID_ARGUMENT, "warmupEfaSegment");
    destroyTransferEngine(e);
}

#[test]
fn graceful_shutdown_refuses_a_null_engine() {
    mark_last_error();
    enableGracefulShutdown(null_mut());
    assert!(last_error().starts_with("enableGracefulShutdown"), "{}", last_error());
}

#[test]
fn version_matches_cargo_and_last_error_starts_empty() {
    // SAFETY: static strings.
    let v = unsafe { CStr::from_ptr(mooncake_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let fresh = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(fresh, "", "a thread without failures has an empty last error");
}
