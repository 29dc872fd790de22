//! Liveness judged on the master's own running time (issue 18, item 3): a master stopped for
//! twice `client_ttl` keeps every object of clients that kept heartbeating, and a client that
//! really stops heartbeating is still expired after `client_ttl`. Real `mooncake_master`
//! processes with `--client_ttl=2`, stopped and resumed with SIGSTOP/SIGCONT; segment owners in
//! child processes. About 25 s in all, mostly waiting.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mooncake::proto::ReplicaConfig;
use support::store::{Master, Owner, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const TTL_S: u64 = 2;
const TTL: Duration = Duration::from_secs(TTL_S);
const KEYS: usize = 40;

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a child process of this test by its PID.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// One counter of the master's `/metrics`.
fn metric(master: &Master, name: &str) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", master.metrics_port)).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .round() as u64
}

fn value(i: usize) -> Vec<u8> {
    support::pattern(64 << 10, i as u64)
}

#[test]
fn a_master_stopped_for_twice_client_ttl_loses_no_object() {
    let ttl = format!("--client_ttl={TTL_S}");
    let master = Master::start(&[&ttl]);
    let owner = Owner::start(&master, 16 << 20);
    let client = master.client(16 << 20);
    for i in 0..KEYS {
        client.put_parts(&format!("k{i}"), &[&value(i)], &ReplicaConfig::default(), false).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));

    signal(master.pid(), libc::SIGSTOP);
    std::thread::sleep(2 * TTL);
    signal(master.pid(), libc::SIGCONT);

    // The clients' heartbeats resume: the master hears pings during 3 × client_ttl in which
    // this test sends it nothing.
    std::thread::sleep(Duration::from_millis(500));
    let pings = metric(&master, "master_ping_requests_total");
    std::thread::sleep(3 * TTL);
    assert!(metric(&master, "master_ping_requests_total") > pings, "the heartbeats resumed");
    let lost: Vec<usize> =
        (0..KEYS).filter(|&i| client.get(&format!("k{i}")).map(|v| v != value(i)).unwrap_or(true)).collect();
    assert!(lost.is_empty(), "{} of {KEYS} objects lost or changed: {lost:?}", lost.len());
    assert_eq!(metric(&master, "master_expired_clients_total"), 0);
    assert!(metric(&master, "master_stalls_total") >= 1, "the master noticed its own stall");
    drop(owner);
}

#[test]
fn a_client_that_stops_heartbeating_is_still_expired() {
    let ttl = format!("--client_ttl={TTL_S}");
    let master = Master::start(&[&ttl]);
    let owner = Owner::start(&master, 16 << 20);
    let client = master.client(0);
    let on_owner = ReplicaConfig { preferred_segments: vec![owner.hostname.clone()], ..Default::default() };
    client.put_parts("gone", &[&value(1)], &on_owner, false).unwrap();
    assert!(client.is_exist("gone").unwrap());

    // Stopped, its connections stay open but it sends nothing.
    signal(owner.pid(), libc::SIGSTOP);
    let stopped = Instant::now();
    let deadline = stopped + 10 * TTL;
    while client.is_exist("gone").unwrap() {
        assert!(Instant::now() < deadline, "a silent client was not expired within 10 × client_ttl");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stopped.elapsed() >= TTL, "expired before client_ttl: {:?}", stopped.elapsed());
    assert_eq!(metric(&master, "master_expired_clients_total"), 1);
    signal(owner.pid(), libc::SIGCONT);
    drop(owner);
}
