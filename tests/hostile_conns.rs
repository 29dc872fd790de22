//! Peers that announce what they never send, hold connections open and say nothing, or pass
//! more descriptors than asked: against real `mooncake_master`, `mooncake_client` and
//! `mooncake_http_metadata_server` processes and an engine's handshake port (issue 18).
//!
//! Every test asserts outcomes (answers, memory and descriptor counts), never speed; each is
//! bounded by the timeouts of its legitimate requests (10 s each) and runs in 1 to 15 s.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mooncake::proto::{self, Envelope, PROTOCOL_VERSION, Request, Response};
use mooncake::store::Store;
use mooncake::store::dummy::proto::{DUMMY_PROTOCOL, DummyRequest, DummyResponse, socket_name};
use support::servers::free_port;
use support::store::{Master, wait_port};

const MIB: u64 = 1 << 20;
/// How long a legitimate request may take before it counts as failed.
const LEGIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises this process's soft descriptor limit to its hard limit (children inherit it).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Up to `n` connections to `addr` that say nothing. Bounded: it stops at the first connection
/// that cannot be made within 2 s (a server that stopped accepting fills its backlog) and after
/// 60 s in all.
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut held = Vec::with_capacity(n);
    while held.len() < n && std::time::Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    held
}

/// One RPC to the master at `addr` on a fresh connection: `Hello`, then `Health`.
fn master_answers(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, LEGIT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(LEGIT_TIMEOUT)).unwrap();
    let mut scratch = Vec::new();
    let mut call = |id, body| -> Result<Response, String> {
        proto::write_frame(&mut s, &Envelope { id, body }, &mut scratch).map_err(|e| format!("write: {e}"))?;
        let r: Envelope<Response> = proto::read_frame(&mut s, &mut scratch).map_err(|e| format!("read: {e}"))?;
        Ok(r.body)
    };
    match call(1, Request::Hello { protocol: PROTOCOL_VERSION, client: rand_id() })? {
        Response::Hello { .. } => {}
        other => return Err(format!("Hello answered {other:?}")),
    }
    call(2, Request::Health).map(|_| ())
}

fn rand_id() -> u128 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    t ^ (u128::from(std::process::id()) << 64)
}

/// A minimal HTTP/1.1 exchange (`Connection: close`); the status and body.
fn http(addr: SocketAddr, method: &str, target: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect_timeout(&addr, LEGIT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(LEGIT_TIMEOUT)).unwrap();
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status in {text:?}"))?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map_or(out.len(), |p| p + 4);
    Ok((status, out[split..].to_vec()))
}

/// PUT then GET of a fresh key through the HTTP metadata server at `addr`.
fn metadata_put_get(addr: SocketAddr, key: &str) -> Result<(), String> {
    let target = format!("/metadata?key={key}");
    let (put, _) = http(addr, "PUT", &target, Some(b"{\"v\":1}"))?;
    if put != 200 {
        return Err(format!("PUT answered {put}"));
    }
    match http(addr, "GET", &target, None)? {
        (200, body) if body == b"{\"v\":1}" => Ok(()),
        other => Err(format!("GET answered {other:?}")),
    }
}

/// `cmd`, to be started with a soft descriptor limit of `limit`.
fn with_nofile(cmd: &mut Command, limit: u64) -> &mut Command {
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = limit.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Frames announced and never sent.

#[test]
fn a_master_spends_no_memory_on_announced_frames() {
    let master = Master::start(&[]);
    let addr: SocketAddr = master.addr().parse().unwrap();
    master_answers(addr).unwrap();
    let before = vm_rss_kib(master.pid());
    let mut held = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&(proto::MAX_FRAME as u32).to_le_bytes()).unwrap();
        s.write_all(&[0]).unwrap();
        held.push(s);
    }
    // Let the master read what it was sent (it answers in order, so a round trip on a fresh
    // connection does not prove it; give it time, then measure).
    std::thread::sleep(Duration::from_millis(1500));
    master_answers(addr).expect("the master answers beside 24 announced frames");
    let grown = vm_rss_kib(master.pid()).saturating_sub(before);
    eprintln!("mooncake_master VmRSS grew by {grown} KiB after 24 announced 64 MiB frames");
    assert!(grown < 64 * 1024, "24 announced 64 MiB frames grew mooncake_master by {grown} KiB");
    drop(held);
}

/// A `mooncake_client` process serving dummies; killed by PID on drop.
struct RealClient {
    child: Child,
    port: u16,
}

impl RealClient {
    fn start(master: &Master) -> RealClient {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mooncake_client"))
            .args([
                "--host=127.0.0.1".to_string(),
                format!("--port={port}"),
                format!("--master_server_address={}", master.addr()),
                format!("--metadata_server={}", master.metadata()),
                "--global_segment_size=64 MB".to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mooncake_client");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(line.starts_with("mooncake_client ready"), "mooncake_client said {line:?}");
        RealClient { child, port }
    }

    fn socket(&self) -> UnixStream {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket_name(self.port).as_bytes()).unwrap();
        let s = UnixStream::connect_addr(&addr).unwrap();
        s.set_read_timeout(Some(LEGIT_TIMEOUT)).unwrap();
        s
    }

    /// A dummy's whole round trip: put and get back through this client.
    fn serves_a_dummy(&self, key: &str) {
        let d = Store::setup_dummy(4 * MIB, MIB, &format!("127.0.0.1:{}", self.port)).expect("dummy");
        let cfg = mooncake::store::ReplicaConfig { replica_num: 1, ..Default::default() };
        d.put_parts(key, &[b"through the dummy"], &cfg, false).unwrap();
        assert_eq!(d.get(key).unwrap(), b"through the dummy");
    }
}

impl Drop for RealClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_client_spends_no_memory_on_frames_its_dummies_announce() {
    let master = Master::start(&[]);
    let real = RealClient::start(&master);
    real.serves_a_dummy("before");
    let pid = real.child.id();
    let before = vm_rss_kib(pid);
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = real.socket();
        s.write_all(&(proto::MAX_FRAME as u32).to_le_bytes()).unwrap();
        s.write_all(&[0]).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(1500));
    real.serves_a_dummy("after");
    let grown = vm_rss_kib(pid).saturating_sub(before);
    eprintln!("mooncake_client VmRSS grew by {grown} KiB after 16 announced 64 MiB frames");
    assert!(grown < 64 * 1024, "16 announced 64 MiB frames grew mooncake_client by {grown} KiB");
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// Descriptors in excess.

fn memfd() -> OwnedFd {
    nix::sys::memfd::memfd_create("mc-excess", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap()
}

/// A dummy `Hello` with three memfds attached; the reply, if any.
fn hello_with_three_fds(s: &mut UnixStream) -> Option<DummyResponse> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let mut frame = Vec::new();
    proto::encode(&Envelope { id: 1, body: DummyRequest::Hello { protocol: DUMMY_PROTOCOL } }, &mut frame).unwrap();
    let fds = [memfd(), memfd(), memfd()];
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(&frame)];
    sendmsg::<()>(s.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&raw)], MsgFlags::empty(), None).unwrap();
    drop(fds);
    let mut scratch = Vec::new();
    proto::read_frame::<DummyResponse>(s, &mut scratch).ok().map(|e| e.body)
}

#[test]
fn descriptors_a_dummy_passes_in_excess_are_closed() {
    let master = Master::start(&[]);
    let real = RealClient::start(&master);
    let pid = real.child.id();
    // One connection first, so that whatever the first dummy opens for good is counted.
    let mut warm = real.socket();
    let _ = hello_with_three_fds(&mut warm);
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = fd_count(pid);
    let mut replies = Vec::new();
    for _ in 0..10 {
        let mut s = real.socket();
        replies.push(hello_with_three_fds(&mut s));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = fd_count(pid);
    eprintln!("mooncake_client descriptors: {before} before, {after} after 10 messages with 3 fds each");
    assert!(after <= before + 2, "30 memfds passed in excess left {} descriptors open", after - before);
    for reply in replies {
        assert!(matches!(reply, Some(DummyResponse::Hello { .. })), "Hello with three fds answered {reply:?}");
    }
    real.serves_a_dummy("still-serving");
}

// ---------------------------------------------------------------------------------------------
// Idle connections.

/// Asks the handshake port at `addr` for its segment descriptor (a type 1 frame).
fn fetch_descriptor(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, LEGIT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(LEGIT_TIMEOUT)).unwrap();
    let json = b"{}\n";
    let mut frame = ((json.len() + 1) as u64).to_le_bytes().to_vec();
    frame.push(1);
    frame.extend_from_slice(json);
    s.write_all(&frame).map_err(|e| format!("write: {e}"))?;
    let mut len = [0u8; 8];
    s.read_exact(&mut len).map_err(|e| format!("read: {e}"))?;
    let mut payload = vec![0u8; u64::from_le_bytes(len).min(1 << 20) as usize];
    s.read_exact(&mut payload).map_err(|e| format!("read: {e}"))?;
    if payload.first() != Some(&1) {
        return Err(format!("reply of type {:?}", payload.first()));
    }
    let v: serde_json::Value = serde_json::from_slice(&payload[1..]).map_err(|e| e.to_string())?;
    if v.get("name").is_none() && v.get("buffers").is_none() {
        return Err(format!("not a descriptor: {v}"));
    }
    Ok(())
}

fn handshake_serves_beside_idle_connections(idle: usize) {
    raise_nofile();
    let engine = support::engine();
    let addr: SocketAddr = format!("127.0.0.1:{}", engine.rpc_port()).parse().unwrap();
    fetch_descriptor(addr).unwrap();
    let held = idle_connections(addr, idle);
    assert!(held.len() >= idle * 9 / 10, "only {} of {idle} connections opened", held.len());
    let failures: Vec<String> = (0..10).filter_map(|_| fetch_descriptor(addr).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 10 descriptor fetches failed beside {idle} idle connections: {failures:?}",
        failures.len()
    );
    drop(held);
}

#[test]
fn handshake_serves_beside_300_idle_connections() {
    handshake_serves_beside_idle_connections(300);
}

#[test]
fn handshake_serves_beside_4096_idle_connections() {
    handshake_serves_beside_idle_connections(4096);
}

fn metadata_server_serves_beside_held_connections(addr: SocketAddr, held: usize, what: &str) {
    metadata_put_get(addr, "warm").unwrap();
    let conns = idle_connections(addr, held);
    assert!(conns.len() >= held * 9 / 10, "only {} of {held} connections opened", conns.len());
    let failures: Vec<String> = (0..5).filter_map(|i| metadata_put_get(addr, &format!("k{held}-{i}")).err()).collect();
    assert!(
        failures.is_empty(),
        "{what}: {} of 5 PUT+GET failed beside {held} held connections: {failures:?}",
        failures.len()
    );
    drop(conns);
}

#[test]
fn our_http_metadata_server_serves_beside_held_connections() {
    raise_nofile();
    let rt = mooncake::runtime::acquire().unwrap();
    let s = mooncake::metadata::http_server::HttpMetadataServer::start(
        &rt,
        "127.0.0.1:0".parse().unwrap(),
        mooncake::metadata::http_server::Flavour::Standalone,
    )
    .unwrap();
    for held in [1100, 4096] {
        metadata_server_serves_beside_held_connections(s.local_addr(), held, "in-process server");
    }
}

/// A process on `port` started by `cmd`; killed by PID on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_http_metadata_server_command_serves_beside_held_connections_with_1024_descriptors() {
    raise_nofile();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mooncake_http_metadata_server"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]).stdout(Stdio::null());
    let _p = Proc(with_nofile(&mut cmd, 1024).spawn().unwrap());
    wait_port(port, "mooncake_http_metadata_server");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for held in [1100, 4096] {
        metadata_server_serves_beside_held_connections(addr, held, "mooncake_http_metadata_server");
    }
}

#[test]
fn a_master_with_1024_descriptors_serves_beside_4096_idle_connections_on_each_port() {
    raise_nofile();
    // The same master as `Master::start`, with its descriptors limited as a default system's.
    let (rpc, metrics, http_port) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mooncake_master"));
    cmd.args([
        "--rpc_address=127.0.0.1".to_string(),
        format!("--rpc_port={rpc}"),
        "--metrics_host=127.0.0.1".to_string(),
        format!("--metrics_port={metrics}"),
        "--enable_http_metadata_server=true".to_string(),
        "--http_metadata_server_host=127.0.0.1".to_string(),
        format!("--http_metadata_server_port={http_port}"),
    ])
    .stdout(Stdio::null());
    let _p = Proc(with_nofile(&mut cmd, 1024).spawn().unwrap());
    for port in [rpc, metrics, http_port] {
        wait_port(port, "mooncake_master");
    }
    let addr = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    // A client that said Hello before the flood keeps its connection through it.
    let mut client = TcpStream::connect(addr(rpc)).unwrap();
    client.set_read_timeout(Some(LEGIT_TIMEOUT)).unwrap();
    let mut scratch = Vec::new();
    let hello = Envelope { id: 1, body: Request::Hello { protocol: PROTOCOL_VERSION, client: rand_id() } };
    proto::write_frame(&mut client, &hello, &mut scratch).unwrap();
    let _: Envelope<Response> = proto::read_frame(&mut client, &mut scratch).unwrap();
    let held = idle_connections(addr(rpc), 4096);
    master_answers(addr(rpc)).expect("an RPC beside 4096 idle connections");
    proto::write_frame(&mut client, &Envelope { id: 2, body: Request::Health }, &mut scratch).unwrap();
    let r: Envelope<Response> = proto::read_frame(&mut client, &mut scratch).expect("the held client was cut off");
    assert_eq!(r.id, 2);
    drop(held);
    let held = idle_connections(addr(metrics), 4096);
    match http(addr(metrics), "GET", "/health", None) {
        Ok((200, _)) => {}
        other => panic!("GET /health beside 4096 idle connections: {other:?}"),
    }
    drop(held);
    metadata_server_serves_beside_held_connections(addr(http_port), 4096, "the master's metadata server");
    master_answers(addr(rpc)).expect("an RPC after the floods");
}
