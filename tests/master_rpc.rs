//! `mooncake_master` as a process: the RPC protocol over TCP, connection loss, the HTTP
//! endpoints, signals and the command line. Every master is started on free loopback ports
//! and stopped by PID.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mooncake::proto::{
    self, ClientId, Envelope, ErrorCode, PROTOCOL_VERSION, ReplicaConfig, Request, Response, SegmentId,
};

const BIN: &str = env!("CARGO_BIN_EXE_mooncake_master");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A master process; killed (by PID) on drop.
struct MasterProc {
    child: Child,
    rpc: u16,
    metrics: u16,
    http: u16,
}

impl MasterProc {
    fn start(extra: &[&str]) -> MasterProc {
        // Free ports are picked, then bound by the master: another process may take one in
        // between (the master then exits with "Address already in use"); try fresh ones.
        for _ in 0..5 {
            if let Some(m) = MasterProc::try_start(extra) {
                return m;
            }
        }
        panic!("mooncake_master exited early five times");
    }

    fn try_start(extra: &[&str]) -> Option<MasterProc> {
        let (rpc, metrics, http) = (free_port(), free_port(), free_port());
        let mut args = vec![
            "--rpc_address=127.0.0.1".to_string(),
            format!("--rpc_port={rpc}"),
            "--metrics_host=127.0.0.1".to_string(),
            format!("--metrics_port={metrics}"),
            "--enable_http_metadata_server=true".to_string(),
            "--http_metadata_server_host=127.0.0.1".to_string(),
            format!("--http_metadata_server_port={http}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(BIN).args(&args).stdout(Stdio::null()).spawn().expect("start mooncake_master");
        let mut m = MasterProc { child, rpc, metrics, http };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", rpc)).is_err() || TcpStream::connect(("127.0.0.1", metrics)).is_err() {
            if m.child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "mooncake_master did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(m)
    }

    fn connect(&self, client: ClientId) -> Conn {
        connect(self.rpc, client)
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "mooncake_master did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connection to the master at `port` that said `Hello` as `client`.
fn connect(port: u16, client: ClientId) -> Conn {
    let mut c = Conn::raw(port);
    match c.call(Request::Hello { protocol: PROTOCOL_VERSION, client }) {
        Response::Hello { protocol, lease_ttl_ms, client_ttl_ms } => {
            assert_eq!((protocol, lease_ttl_ms, client_ttl_ms), (PROTOCOL_VERSION, 10_000, 10_000));
        }
        other => panic!("Hello answered {other:?}"),
    }
    c
}

/// A blocking client connection.
struct Conn {
    stream: TcpStream,
    scratch: Vec<u8>,
    next: u64,
}

impl Conn {
    fn raw(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn { stream, scratch: Vec::new(), next: 1 }
    }

    fn call(&mut self, body: Request) -> Response {
        let id = self.next;
        self.next += 1;
        proto::write_frame(&mut self.stream, &Envelope { id, body }, &mut self.scratch).unwrap();
        let reply: Envelope<Response> = proto::read_frame(&mut self.stream, &mut self.scratch).unwrap();
        assert_eq!(reply.id, id);
        reply.body
    }

    /// Whether the master closed this connection (bounded by the read timeout).
    fn is_closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

fn mount(c: &mut Conn, client: ClientId, segment: SegmentId, name: &str, base: u64, size: u64) {
    let r = c.call(Request::MountSegment { client, segment, name: name.into(), base, size });
    assert_eq!(r, Response::Done);
}

fn put(c: &mut Conn, client: ClientId, key: &str, size: u64, config: ReplicaConfig) -> proto::PutSlot {
    let Response::Put(slot) = c.call(Request::PutStart { client, key: key.into(), size, config, upsert: false }) else {
        panic!("PutStart failed")
    };
    assert_eq!(c.call(Request::PutEnd { client, key: key.into(), put_id: slot.put_id }), Response::Done);
    slot
}

#[test]
fn hello_mount_put_get_remove() {
    let m = MasterProc::start(&[]);
    let mut c = m.connect(7);
    assert_eq!(c.call(Request::Health), Response::Done);
    mount(&mut c, 7, 70, "host-a:1", 0x10_0000, 1 << 20);
    assert_eq!(c.call(Request::Ping { client: 7 }), Response::Pong { known: true });
    let Response::Put(slot) = c.call(Request::PutStart {
        client: 7,
        key: "k".into(),
        size: 1000,
        config: ReplicaConfig { replica_num: 1, ..Default::default() },
        upsert: false,
    }) else {
        panic!()
    };
    assert_eq!(c.call(Request::GetReplicas { key: "k".into() }), Response::Error(ErrorCode::ReplicaIsNotReady));
    assert_eq!(c.call(Request::PutEnd { client: 7, key: "k".into(), put_id: slot.put_id }), Response::Done);
    assert_eq!(
        c.call(Request::PutEnd { client: 7, key: "k".into(), put_id: slot.put_id }),
        Response::Error(ErrorCode::ObjectNotFound)
    );
    let Response::Object(info) = c.call(Request::GetReplicas { key: "k".into() }) else { panic!() };
    assert_eq!(info.size, 1000);
    assert_eq!(info.replicas, slot.replicas);
    assert!((0x10_0000..0x20_0000).contains(&info.replicas[0].addr));
    assert_eq!(c.call(Request::Remove { key: "k".into(), force: false }), Response::Error(ErrorCode::ObjectHasLease));
    assert_eq!(c.call(Request::Remove { key: "k".into(), force: true }), Response::Done);
    assert_eq!(c.call(Request::GetReplicas { key: "k".into() }), Response::Error(ErrorCode::ObjectNotFound));
    // The removed value's reader lease still runs: the owner must keep the memory that long.
    let Response::Unmounted { wait_ms } = c.call(Request::UnmountSegment { client: 7, segment: 70 }) else { panic!() };
    assert!((8_000..=10_000).contains(&wait_ms), "{wait_ms}");
    assert_eq!(c.call(Request::UnmountSegment { client: 7, segment: 70 }), Response::Error(ErrorCode::SegmentNotFound));
}

#[test]
fn bad_frames_and_bad_hellos_close_only_their_connection() {
    let m = MasterProc::start(&[]);
    let mut good = m.connect(1);

    let mut garbage = m.connect(2);
    garbage.stream.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
    assert!(garbage.is_closed_by_peer());

    let mut too_long = Conn::raw(m.rpc);
    too_long.stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(too_long.is_closed_by_peer());

    let mut no_hello = Conn::raw(m.rpc);
    assert_eq!(no_hello.call(Request::Health), Response::Error(ErrorCode::InvalidParams));
    assert!(no_hello.is_closed_by_peer());

    let mut old = Conn::raw(m.rpc);
    let r = old.call(Request::Hello { protocol: PROTOCOL_VERSION + 1, client: 3 });
    assert_eq!(r, Response::Error(ErrorCode::InvalidParams));
    assert!(old.is_closed_by_peer());

    assert_eq!(good.call(Request::Health), Response::Done);
    assert_eq!(good.call(Request::BatchExists { keys: vec!["x".into()] }), Response::Flags(vec![Ok(false)]));
}

#[test]
fn a_client_whose_connections_all_close_loses_its_segment() {
    let m = MasterProc::start(&[]);
    let mut a1 = m.connect(0xa);
    let a2 = m.connect(0xa);
    mount(&mut a1, 0xa, 1, "a:1", 0x1000, 1 << 20);
    let mut b = m.connect(0xb);
    mount(&mut b, 0xb, 2, "b:1", 0x9000_0000, 1 << 20);
    let on_a = ReplicaConfig { replica_num: 1, preferred_segments: vec!["a:1".into()], ..Default::default() };
    put(&mut b, 0xb, "on-a", 100, on_a);
    put(&mut b, 0xb, "both", 100, ReplicaConfig { replica_num: 2, ..Default::default() });

    a2.stream.shutdown(Shutdown::Both).unwrap();
    drop(a2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.call(Request::BatchExists { keys: vec!["on-a".into()] }), Response::Flags(vec![Ok(true)]));

    a1.stream.shutdown(Shutdown::Both).unwrap();
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = b.call(Request::BatchExists { keys: vec!["on-a".into()] });
        if r == Response::Flags(vec![Ok(false)]) {
            break;
        }
        assert!(Instant::now() < deadline, "the segment of a client that left is still mounted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let Response::Object(info) = b.call(Request::GetReplicas { key: "both".into() }) else { panic!() };
    assert_eq!(info.replicas.len(), 1);
    assert_eq!(info.replicas[0].segment_name, "b:1");
}

#[test]
fn an_in_process_master_binds_free_ports_and_stops() {
    let config = mooncake::master::MasterConfig {
        rpc_address: "127.0.0.1".into(),
        rpc_port: 0,
        rpc_threads: 1,
        metrics_host: "127.0.0.1".into(),
        metrics_port: 0,
        enable_http_metadata_server: true,
        http_metadata_server_host: "127.0.0.1".into(),
        http_metadata_server_port: 0,
        ..Default::default()
    };
    let mut master = mooncake::master::Master::start(config).unwrap();
    let (rpc, metrics) = (master.rpc_addr(), master.metrics_addr());
    assert!(rpc.port() != 0 && metrics.port() != 0);
    let http_port = master.http_metadata_addr().expect("metadata server").port();
    let mut c = connect(rpc.port(), 42);
    mount(&mut c, 42, 1, "in-process:1", 0, 4096);
    assert!(master.with_state(|st| st.is_known(42)));
    assert_eq!(http(metrics.port(), "GET", "/health", b"").0, 200);
    assert_eq!(http(http_port, "GET", "/health", b"").0, 200);
    master.stop();
    assert!(TcpStream::connect(rpc).is_err(), "the rpc port is closed after stop");
    assert!(c.stream.read(&mut [0u8; 1]).map_or(true, |n| n == 0), "connections are closed");
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

#[test]
fn metrics_health_and_the_metadata_server_answer_over_http() {
    let m = MasterProc::start(&[]);
    let mut c = m.connect(5);
    mount(&mut c, 5, 50, "host-m:1", 0, 1 << 20);
    put(&mut c, 5, "k", 4000, ReplicaConfig::default());
    assert!(matches!(c.call(Request::GetReplicas { key: "k".into() }), Response::Object(_)));

    let (status, body) = http(m.metrics, "GET", "/health", b"");
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let (status, text) = http(m.metrics, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    for needle in [
        "master_key_count 1\n",
        "master_active_clients 1\n",
        "master_put_start_requests_total 1\n",
        "segment_total_capacity_bytes{segment=\"host-m:1\"} 1048576\n",
        "segment_allocated_bytes{segment=\"host-m:1\"} 4032\n",
        "master_rpc_latency_seconds_count{kind=\"GetReplicas\"} 1\n",
        "master_rpc_latency_seconds_bucket{kind=\"PutStart\",le=\"+Inf\"} 1\n",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(http(m.metrics, "GET", "/nothing", b"").0, 404);

    assert_eq!(http(m.http, "PUT", "/metadata?key=mooncake/ram/x", b"{\"v\":1}").0, 200);
    assert_eq!(http(m.http, "GET", "/metadata?key=mooncake/ram/x", b""), (200, "{\"v\":1}".to_string()));
    assert_eq!(http(m.http, "GET", "/health", b""), (200, "OK".to_string()));
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    for signal in [nix::sys::signal::Signal::SIGTERM, nix::sys::signal::Signal::SIGINT] {
        let mut m = MasterProc::start(&[]);
        let _c = m.connect(9);
        let pid = nix::unistd::Pid::from_raw(m.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = m.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{signal}: {status}");
    }
}

#[test]
fn bad_command_lines_exit_one() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["--bogus=1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ERROR: unknown command line flag 'bogus'"), "{err}");
    let (code, err) = run(&["--enable_ha=true"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not available in this build"), "{err}");
    assert_eq!(run(&["--help"]).0, Some(1));
    assert_eq!(run(&["--version"]).0, Some(0));
    // A port in use is an error too.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (code, err) = run(&["--rpc_address=127.0.0.1", &format!("--rpc_port={port}"), "--metrics_port=0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot listen for rpc"), "{err}");
}

/// The round trip of one `GetReplicas` over loopback (run with `--ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check"]
fn rpc_round_trip() {
    let m = MasterProc::start(&[]);
    let mut c = m.connect(1);
    mount(&mut c, 1, 1, "bench:1", 0, 1 << 30);
    put(&mut c, 1, "k", 4096, ReplicaConfig::default());
    for (name, request) in [("Health", Request::Health), ("GetReplicas", Request::GetReplicas { key: "k".into() })] {
        for _ in 0..1000 {
            c.call(request.clone());
        }
        let mut took: Vec<Duration> = (0..10_000)
            .map(|_| {
                let t = Instant::now();
                c.call(request.clone());
                t.elapsed()
            })
            .collect();
        took.sort();
        println!(
            "{name}: median {:?}, p90 {:?}, p99 {:?} over {} calls",
            took[took.len() / 2],
            took[took.len() * 9 / 10],
            took[took.len() * 99 / 100],
            took.len()
        );
    }
    // The master's own share: its histogram's mean for GetReplicas.
    let (_, text) = http(m.metrics, "GET", "/metrics", b"");
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).expect(name);
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let sum = value("master_rpc_latency_seconds_sum{kind=\"GetReplicas\"}");
    let count = value("master_rpc_latency_seconds_count{kind=\"GetReplicas\"}");
    println!("GetReplicas inside the master: mean {:.2} µs", sum / count * 1e6);
}
