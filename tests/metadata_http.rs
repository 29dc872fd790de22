//! Engines behind an HTTP metadata server: ours (in-process) and the wheel's; our engines and
//! Mooncake's find each other by name and move data both ways; the server restarted mid-run;
//! SIGTERM withdrawing a segment at once; a down server failing within the timeout.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mooncake::config::Config;
use mooncake::engine::TransferEngine;
use mooncake::error::Code;
use mooncake::metadata::http_server::{Flavour, HttpMetadataServer};
use support::wheel::{WheelPeer, python};
use support::*;

fn config() -> Config {
    let mut c = Config::from_env();
    // Tests publish loopback (as Mooncake's tests set MC_TCP_BIND_ADDRESS=127.0.0.1).
    c.bind_address = Some("127.0.0.1".into());
    c.metadata_refresh = Duration::from_millis(100);
    c.metadata_timeout = Duration::from_millis(1500);
    c
}

fn engine_at(url: &str, name: &str) -> mooncake::engine::Result<TransferEngine> {
    engine_behind(url, name, config())
}

fn server(flavour: Flavour) -> HttpMetadataServer {
    let rt = mooncake::runtime::acquire().unwrap();
    HttpMetadataServer::start(&rt, "127.0.0.1:0".parse().unwrap(), flavour).unwrap()
}

#[test]
fn two_engines_meet_through_our_server_and_leave_no_keys() {
    for flavour in [Flavour::Standalone, Flavour::MasterEmbedded] {
        let srv = server(flavour);
        let url = srv.url();
        let a = engine_at(&url, "node-a").unwrap();
        let b = engine_at(&url, "node-b").unwrap();
        let mut mem = vec![0u8; 1 << 20];
        b.register_memory(mem.as_mut_ptr() as u64, 1 << 20, "cpu:0", true).unwrap();
        assert!(srv.get("mooncake/rpc_meta/node-b").is_some() || srv.get("mooncake%2Frpc_meta%2Fnode-b").is_some());
        write_and_read_back(&a, "node-b", mem.as_ptr() as u64, 1 << 20, 7);
        assert_eq!(&mem[..], &pattern(1 << 20, 7)[..]);
        // a duplicate name is refused, and the refused engine leaves the first one's keys alone
        let err = engine_at(&url, "node-b").err().expect("duplicate name must fail");
        assert_eq!(err.code, Code::RejectHandshake, "{}", err.message);
        write_and_read_back(&a, "node-b", mem.as_ptr() as u64, 4096, 8);
        drop(a);
        drop(b);
        assert!(srv.snapshot().is_empty(), "{flavour:?}: keys left after destroy: {:?}", srv.snapshot().keys());
    }
}

#[test]
fn a_down_server_fails_creation_within_the_timeout() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Instant::now();
    let err = engine_at(&format!("http://127.0.0.1:{closed}/metadata"), "x").err().expect("must fail");
    assert_eq!(err.code, Code::Metadata, "{}", err.message);
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
}

#[test]
fn a_server_that_never_answers_fails_within_the_timeout() {
    // accepts connections (the kernel's backlog) but never reads or answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let t = Instant::now();
    let err = engine_at(&format!("http://127.0.0.1:{port}/metadata"), "x").err().expect("must fail");
    assert_eq!(err.code, Code::Metadata, "{}", err.message);
    assert!(err.message.contains("no answer within"), "{}", err.message);
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    drop(silent);
}

#[test]
fn engines_republish_after_the_server_restarts() {
    let rt = mooncake::runtime::acquire().unwrap();
    let mut srv = HttpMetadataServer::start(&rt, "127.0.0.1:0".parse().unwrap(), Flavour::Standalone).unwrap();
    let addr: SocketAddr = srv.local_addr();
    let url = srv.url();
    let a = engine_at(&url, "r-a").unwrap();
    let b = engine_at(&url, "r-b").unwrap();
    let mut mem = vec![0u8; 1 << 16];
    b.register_memory(mem.as_mut_ptr() as u64, 1 << 16, "cpu:0", true).unwrap();
    srv.stop();
    // while it is down: opening a segment fails within the timeout, with ERR_METADATA
    let t = Instant::now();
    let err = a.open_segment("r-b", false).unwrap_err();
    assert_eq!(err.code, Code::Metadata, "{}", err.message);
    assert!(t.elapsed() < Duration::from_secs(10));
    // an empty server comes back on the same port: both engines publish themselves again
    let srv = HttpMetadataServer::start(&rt, addr, Flavour::Standalone).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.get("mooncake/ram/r-b").is_none() || srv.get("mooncake/rpc_meta/r-a").is_none() {
        assert!(Instant::now() < deadline, "engines did not re-publish: {:?}", srv.snapshot().keys());
        std::thread::sleep(Duration::from_millis(20));
    }
    let desc = String::from_utf8(srv.get("mooncake/ram/r-b").unwrap()).unwrap();
    assert!(desc.contains(&(mem.as_ptr() as u64).to_string()), "the re-published descriptor lacks the buffer: {desc}");
    write_and_read_back(&a, "r-b", mem.as_ptr() as u64, 1 << 16, 9);
    drop(a);
    drop(b);
    assert!(srv.snapshot().is_empty(), "keys left after destroy: {:?}", srv.snapshot().keys());
}

fn mixed_fleet(url: &str) {
    let Some(py) = python() else { return };
    let name = format!("wheel-{}", std::process::id());
    let mut wheel = WheelPeer::start_with(
        &py,
        8 << 20,
        &[("MC_TCP_BIND_ADDRESS", "127.0.0.1")],
        &["--metadata", url, "--name", &name],
    );
    assert_eq!(wheel.session, name);
    let ours = engine_at(url, &format!("ours-{}", std::process::id())).unwrap();
    // ours -> the wheel, by name through the server
    write_and_read_back(&ours, &name, wheel.addr, 1 << 20, 11);
    assert_eq!(wheel.bytes(0, 64), pattern(64, 11));
    // the wheel -> ours
    let mut mem = vec![0u8; 1 << 20];
    ours.register_memory(mem.as_mut_ptr() as u64, 1 << 20, "cpu:0", true).unwrap();
    wheel.fill(0, 1 << 20, 13);
    assert_eq!(wheel.transfer("write", ours.server_name(), &[0], &[mem.as_ptr() as u64], &[1 << 20]), 0);
    assert_eq!(&mem[..], &pattern(1 << 20, 13)[..]);
    mem.iter_mut().for_each(|b| *b = 0xAB);
    assert_eq!(wheel.transfer("read", ours.server_name(), &[0], &[mem.as_ptr() as u64], &[4096]), 0);
    assert!(wheel.bytes(0, 4096).iter().all(|&b| b == 0xAB));
}

#[test]
fn mixed_fleet_through_our_server() {
    let srv = server(Flavour::Standalone);
    mixed_fleet(&srv.url());
}

#[test]
fn mixed_fleet_through_the_wheels_server() {
    let Some(py) = python() else { return };
    let bin = py.parent().unwrap().join("mooncake_http_metadata_server");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the wheel's metadata server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the wheel's metadata server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    mixed_fleet(&format!("http://127.0.0.1:{port}/metadata"));
    let _ = child.kill();
    let _ = child.wait();
}

/// The child role of the SIGTERM test: an engine with graceful shutdown on, published in the
/// server named by MOONCAKE_SIGTERM_CHILD.
#[test]
fn sigterm_child() {
    let Ok(url) = std::env::var("MOONCAKE_SIGTERM_CHILD") else { return };
    let e = engine_at(&url, "sigterm-child").unwrap();
    e.enable_graceful_shutdown().unwrap();
    println!("\nREADY");
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(3);
}

#[test]
fn sigterm_withdraws_the_segment_at_once() {
    if std::env::var_os("MOONCAKE_SIGTERM_CHILD").is_some() {
        return;
    }
    use std::io::BufRead;
    let srv = server(Flavour::Standalone);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigterm_child", "--nocapture", "--test-threads=1"])
        .env("MOONCAKE_SIGTERM_CHILD", srv.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        if line.trim() == "READY" {
            break;
        }
    }
    assert!(srv.get("mooncake/ram/sigterm-child").is_some());
    // SAFETY: signalling our own child by its PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(srv.snapshot().is_empty(), "keys left after SIGTERM: {:?}", srv.snapshot().keys());
}
