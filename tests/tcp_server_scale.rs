//! The TCP data server under many and hostile peers (`src/transport/tcp/server.rs`), against a
//! real target process (this binary's ignored `target_process` test, driven over its stdin):
//!
//! - 4,096 idle connections while transfers over both protocols (Mooncake's, as a
//!   `MOONCAKE_TCP_FRAMING=0` engine speaks it, and our framing) all succeed, with the target's
//!   thread count within its documented bound (`MC_TCP_SERVER_THREADS`);
//! - the connection cap sheds the oldest idle connection and new initiators still get in;
//! - a trickled header is cut off at the progress timeout, an idle connection at the idle
//!   deadline, and our initiators reconnect transparently afterwards;
//! - a peer trickling a write cannot hold `unregisterLocalMemory` past the progress timeout;
//! - writes and reads into registered memory that was unmapped or protected fail the request,
//!   not the target.
//!
//! The initiator (this process) learns the target from a handshake stand-in whose descriptor
//! offers TCP, with or without our framing, so each protocol is chosen per segment. Every wait
//! is bounded; nothing asserts on speed. About 60 s in all on a loaded 2-core machine.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::config::Config;
use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;
use mooncake::transport::tcp::frame::{self, ENTRY_LEN, Entry, HEAD_LEN, Head};
use mooncake::transport::tcp::wire::Header;
use support::fake_peer::{FakeServer, Reply};

const COMPLETED: i32 = 4;
const FAILED: i32 = 6;
const MAIN_LEN: usize = 8 << 20;
const VICTIM_LEN: usize = 1 << 20;
const PAGE: usize = 4096;
/// The page of each victim region that the target unmaps or protects.
const HOLE: usize = VICTIM_LEN / 2;

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

// ---------------------------------------------------------------------------------------------
// The target process

fn mmap_region(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as *mut u8
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() << 10
}

/// The target: an engine with four regions, driven by lines on stdin (run only by `Target`).
#[test]
#[ignore = "run by the other tests as a child process"]
fn target_process() {
    if std::env::var_os("SCALE_TEST_TARGET").is_none() {
        return;
    }
    raise_nofile();
    let e = support::engine();
    let mut main = vec![0u8; MAIN_LEN];
    let mut trickle = vec![0u8; VICTIM_LEN];
    let unmap = mmap_region(VICTIM_LEN);
    let protect = mmap_region(VICTIM_LEN);
    for (addr, len) in [
        (main.as_mut_ptr() as u64, MAIN_LEN),
        (trickle.as_mut_ptr() as u64, VICTIM_LEN),
        (unmap as u64, VICTIM_LEN),
        (protect as u64, VICTIM_LEN),
    ] {
        e.register_memory(addr, len as u64, "cpu:0", true).unwrap();
    }
    let tcp = e.tcp().expect("tcp installed");
    println!(
        "TARGET READY {} {} {} {} {}",
        tcp.data_port(),
        main.as_ptr() as u64,
        trickle.as_ptr() as u64,
        unmap as u64,
        protect as u64
    );
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let reply = match line.trim() {
            "unmap" => {
                // SAFETY: one page inside the mapping made above, which the engine still has
                // registered: exactly the fault the server must survive.
                assert_eq!(unsafe { libc::munmap(unmap.add(HOLE) as *mut libc::c_void, PAGE) }, 0);
                "DONE".to_string()
            }
            "protect" => {
                // SAFETY: as above, one page of our own mapping.
                assert_eq!(unsafe { libc::mprotect(protect.add(HOLE) as *mut libc::c_void, PAGE, libc::PROT_NONE) }, 0);
                "DONE".to_string()
            }
            "unregister" => {
                let t = Instant::now();
                e.unregister_memory(trickle.as_ptr() as u64).unwrap();
                format!("UNREGISTERED {}", t.elapsed().as_millis())
            }
            "ping" => format!("PONG {} {} {}", tcp.server_connections(), tcp.server_shed_connections(), vm_rss()),
            other => format!("UNKNOWN {other}"),
        };
        println!("{reply}");
    }
    drop(e);
}

struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    data_port: u16,
    main: u64,
    trickle: u64,
    unmap: u64,
    protect: u64,
}

impl Target {
    fn start(env: &[(&str, &str)]) -> Target {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["target_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("SCALE_TEST_TARGET", "1")
            .env("MC_TCP_BIND_ADDRESS", "127.0.0.1")
            .env("MOONCAKE_SHM", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start target");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let line = read_line_with(&mut stdout, "TARGET READY ");
        let v: Vec<u64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
        Target { child, stdin, stdout, data_port: v[0] as u16, main: v[1], trickle: v[2], unmap: v[3], protect: v[4] }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command and returns the reply line (the target must still be alive).
    fn cmd(&mut self, c: &str) -> String {
        writeln!(self.stdin, "{c}").expect("target alive (stdin)");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the target died (command {c:?})");
        line.trim().to_string()
    }

    /// (open connections, shed so far, VmRSS bytes)
    fn ping(&mut self) -> (usize, u64, u64) {
        let r = self.cmd("ping");
        let v: Vec<u64> = r
            .strip_prefix("PONG ")
            .unwrap_or_else(|| panic!("bad reply {r:?}"))
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0] as usize, v[1], v[2])
    }

    /// Threads of the target process, and how many of them are the data server's workers.
    fn threads(&self) -> (usize, usize) {
        let dir = format!("/proc/{}/task", self.pid());
        let mut all = 0;
        let mut server = 0;
        for t in std::fs::read_dir(dir).unwrap().flatten() {
            all += 1;
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            server += usize::from(comm.trim() == "mc-tcp-srv");
        }
        (all, server)
    }

    fn wait_connections(&mut self, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (open, _, _) = self.ping();
            if open >= at_least {
                return open;
            }
            assert!(Instant::now() < deadline, "the target holds {open} connections, not {at_least}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn read_line_with(r: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the target exited before it was ready");
        if let Some((_, rest)) = line.trim().split_once(prefix) {
            return rest.to_string();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The initiator (this process)

/// A descriptor of the target with all four regions; `framing` adds our offer.
fn descriptor(t: &Target, framing: bool) -> Vec<u8> {
    let buffers: Vec<serde_json::Value> =
        [(t.main, MAIN_LEN), (t.trickle, VICTIM_LEN), (t.unmap, VICTIM_LEN), (t.protect, VICTIM_LEN)]
            .iter()
            .map(|&(addr, len)| serde_json::json!({"name": "target", "addr": addr, "length": len}))
            .collect();
    let mut v = serde_json::json!({
        "name": "target", "protocol": "tcp", "tcp_data_host": "127.0.0.1", "tcp_data_port": t.data_port,
        "tcp_proto_version": 2, "rdma_server_name": "", "timestamp": "", "buffers": buffers,
    });
    if framing {
        v["libmooncake"] = serde_json::json!({ "tcp_framing": frame::FRAMING_VERSION });
    }
    v.to_string().into_bytes()
}

/// An initiator engine with a segment per protocol towards the target.
struct Initiator {
    e: TransferEngine,
    _hs: Vec<FakeServer>,
    /// [Mooncake's protocol, our framing]
    segs: [i32; 2],
    local: Vec<u8>,
    back: Vec<u8>,
}

impl Initiator {
    fn new(t: &Target) -> Initiator {
        let mut cfg = Config::from_env();
        cfg.tcp_lanes_per_peer = 4;
        cfg.tcp_progress_timeout = Duration::from_secs(10);
        cfg.tcp_status_timeout = Duration::from_secs(10);
        let e = TransferEngine::with_config(EngineOptions::p2p("127.0.0.1"), cfg).expect("engine");
        let mut local = support::pattern(MAIN_LEN / 2, 7);
        let mut back = vec![0u8; MAIN_LEN / 2];
        e.register_memory(local.as_mut_ptr() as u64, local.len() as u64, "cpu:0", true).unwrap();
        e.register_memory(back.as_mut_ptr() as u64, back.len() as u64, "cpu:0", true).unwrap();
        let hs: Vec<FakeServer> =
            [false, true].iter().map(|&f| FakeServer::handshake(Reply::Frame(1, descriptor(t, f)))).collect();
        let segs = [0, 1].map(|i| e.open_segment(&format!("127.0.0.1:{}", hs[i].port), false).unwrap());
        Initiator { e, _hs: hs, segs, local, back }
    }

    fn run(&self, reqs: &[TransferRequest]) -> Vec<i32> {
        let batch = self.e.allocate_batch(reqs.len()).unwrap();
        self.e.submit(batch, reqs, None).unwrap();
        let st = support::wait_batch(&self.e, batch, reqs.len(), Duration::from_secs(60));
        self.e.free_batch(batch).unwrap();
        st
    }

    /// Writes `len` bytes of the pattern to `remote` in blocks of `block` over protocol `proto`
    /// (0: Mooncake's, 1: ours), reads them back and compares; panics on any failure.
    fn write_read(&mut self, proto: usize, remote: u64, len: usize, block: usize) {
        let reqs = |op, base: u64| -> Vec<TransferRequest> {
            (0..len / block)
                .map(|i| TransferRequest {
                    opcode: op,
                    source: base + (i * block) as u64,
                    target_id: self.segs[proto],
                    target_offset: remote + (i * block) as u64,
                    length: block as u64,
                })
                .collect()
        };
        let w = reqs(Opcode::Write, self.local.as_ptr() as u64);
        assert!(self.run(&w).iter().all(|&s| s == COMPLETED), "writes over protocol {proto} failed");
        self.back[..len].fill(0);
        let r = reqs(Opcode::Read, self.back.as_ptr() as u64);
        assert!(self.run(&r).iter().all(|&s| s == COMPLETED), "reads over protocol {proto} failed");
        assert!(self.back[..len] == self.local[..len], "data read back over protocol {proto} differs");
    }

    /// Both protocols, small blocks (framed) and large ones (Mooncake's lanes either way).
    fn both_protocols(&mut self, t: &Target) {
        self.write_read(0, t.main, 2 << 20, 64 << 10);
        self.write_read(1, t.main + (2 << 20), 2 << 20, 16 << 10);
        self.write_read(1, t.main + (4 << 20), 4 << 20, 1 << 20);
    }

    /// One request alone in its batch; its status.
    fn one(&self, proto: usize, op: Opcode, remote: u64, len: usize) -> i32 {
        let source = if op == Opcode::Write { self.local.as_ptr() } else { self.back.as_ptr() } as u64;
        self.run(&[TransferRequest {
            opcode: op,
            source,
            target_id: self.segs[proto],
            target_offset: remote,
            length: len as u64,
        }])[0]
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the data port");
    s.set_nodelay(true).unwrap();
    s
}

/// Whether the server closed `s` within `limit` (end of stream or reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an ack or status frame
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn idle_connections_do_not_stop_transfers_and_threads_stay_bounded() {
    raise_nofile();
    let mut t = Target::start(&[("MC_TCP_SERVER_THREADS", "2")]);
    let mut init = Initiator::new(&t);
    init.both_protocols(&t);
    let (threads_before, _) = t.threads();
    let (_, _, rss_before) = t.ping();

    const IDLE: usize = 4096;
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(t.data_port)).collect();
    let open = t.wait_connections(IDLE);
    let (_, _, rss_idle) = t.ping();
    let (threads_idle, _) = t.threads();

    // Legitimate transfers, both protocols, while the idle connections stay open.
    init.both_protocols(&t);
    let (threads_during, server_threads) = t.threads();
    let per_conn = rss_idle.saturating_sub(rss_before) / IDLE as u64;
    eprintln!(
        "{open} open connections: target threads {threads_before} before, {threads_idle} idle, {threads_during} \
         during transfers ({server_threads} server threads); VmRSS +{} KiB ({per_conn} B per connection)",
        rss_idle.saturating_sub(rss_before) >> 10
    );
    assert!(
        threads_idle <= threads_before + 2 && threads_during <= threads_before + 2,
        "threads grew with connections"
    );
    assert!(per_conn < 8 << 10, "{per_conn} bytes of resident memory per idle connection");
    assert_eq!(server_threads, 2, "MC_TCP_SERVER_THREADS=2 gives two server threads");
    drop(idle);
}

#[test]
fn the_connection_cap_sheds_the_oldest_idle_connection() {
    raise_nofile();
    // 1024: the old server's fixed cap, which never shed.
    let mut t = Target::start(&[("MC_TCP_SERVER_MAX_CONNECTIONS", "1024")]);
    let mut idle: Vec<TcpStream> = (0..1024).map(|_| connect(t.data_port)).collect();
    t.wait_connections(1024);
    let mut init = Initiator::new(&t);
    init.both_protocols(&t);
    let (open, shed, _) = t.ping();
    assert!(shed >= 1 && open <= 1024, "open {open}, shed {shed}");
    assert!(closed_within(&mut idle[0], Duration::from_secs(10)), "the oldest idle connection is still open");
}

#[test]
fn slow_headers_and_idle_connections_are_cut_off_and_initiators_reconnect() {
    let mut t = Target::start(&[
        ("MC_TCP_PROGRESS_TIMEOUT_SEC", "2"),
        ("MC_TCP_SERVER_FIRST_REQUEST_TIMEOUT_SEC", "3"),
        ("MC_TCP_SERVER_IDLE_TIMEOUT_SEC", "3"),
    ]);
    let port = t.data_port;
    let main = t.main;
    // A Mooncake header and a framed head + table, one byte every 400 ms (about 10 s and 16 s
    // in all): each must be cut off at the 2 s progress timeout of its first byte.
    let trickle = |bytes: Vec<u8>, framed: bool| {
        std::thread::spawn(move || {
            let mut s = connect(port);
            if framed {
                s.write_all(&frame::hello(frame::FRAMING_VERSION)).unwrap();
            }
            for (i, b) in bytes.iter().enumerate() {
                if s.write_all(std::slice::from_ref(b)).is_err() || closed_within(&mut s, Duration::from_millis(400)) {
                    return i;
                }
            }
            bytes.len()
        })
    };
    let header = Header { size: 4096, addr: main, write: true, v2: true }.encode().to_vec();
    let mut framed = vec![0u8; HEAD_LEN + ENTRY_LEN];
    Head { magic: frame::REQUEST_MAGIC, count: 1, seq: 1 }.encode(&mut framed);
    Entry { addr: main, len: 4096, write: true }.encode(&mut framed[HEAD_LEN..]);
    let (mooncake, ours) = (trickle(header.clone(), false), trickle(framed.clone(), true));
    let idle_mooncake = std::thread::spawn(move || closed_within(&mut connect(port), Duration::from_secs(20)));
    let mut init = Initiator::new(&t);
    init.both_protocols(&t);
    let sent = (mooncake.join().unwrap(), ours.join().unwrap());
    assert!(sent.0 < header.len() && sent.1 < framed.len(), "trickled headers were served whole: {sent:?}");
    assert!(idle_mooncake.join().unwrap(), "a silent connection was not closed at the first-request deadline");
    // Our pooled connections, which carried requests, were closed at the (set) idle deadline
    // meanwhile: the next transfers reconnect.
    std::thread::sleep(Duration::from_secs(4));
    init.both_protocols(&t);
    t.ping();
}

#[test]
fn unregister_returns_while_peers_trickle_writes_into_the_region() {
    let mut t = Target::start(&[("MC_TCP_PROGRESS_TIMEOUT_SEC", "2")]);
    let (port, region) = (t.data_port, t.trickle);
    // A Mooncake write and a framed write of 4 KiB each, whose payload comes one byte every
    // 500 ms (within the progress timeout: they make progress) for up to 30 s.
    let trickle = |framed: bool| {
        std::thread::spawn(move || {
            let mut s = connect(port);
            if framed {
                let mut f = frame::hello(frame::FRAMING_VERSION).to_vec();
                let mut head = vec![0u8; HEAD_LEN + ENTRY_LEN];
                Head { magic: frame::REQUEST_MAGIC, count: 1, seq: 1 }.encode(&mut head);
                Entry { addr: region + 8192, len: 4096, write: true }.encode(&mut head[HEAD_LEN..]);
                f.extend(head);
                s.write_all(&f).unwrap();
            } else {
                s.write_all(&Header { size: 4096, addr: region, write: true, v2: true }.encode()).unwrap();
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if s.write_all(&[1]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let tricklers = [trickle(false), trickle(true)];
    std::thread::sleep(Duration::from_millis(1500));
    let r = t.cmd("unregister");
    let ms: u64 = r.strip_prefix("UNREGISTERED ").unwrap_or_else(|| panic!("bad reply {r:?}")).parse().unwrap();
    eprintln!("unregisterLocalMemory returned after {ms} ms while two peers trickled writes into the region");
    assert!(ms < 10_000, "unregister took {ms} ms with a 2 s progress timeout");
    t.ping();
    for h in tricklers {
        h.join().unwrap();
    }
}

#[test]
fn faulting_registered_memory_fails_requests_not_the_target() {
    let mut t = Target::start(&[]);
    let mut init = Initiator::new(&t);
    init.both_protocols(&t);
    assert_eq!(t.cmd("unmap"), "DONE");
    assert_eq!(t.cmd("protect"), "DONE");
    for victim in [t.unmap, t.protect] {
        for proto in [1, 0] {
            for op in [Opcode::Write, Opcode::Read] {
                let st = init.one(proto, op, victim + HOLE as u64, PAGE);
                assert_eq!(st, FAILED, "{op:?} over protocol {proto} into an inaccessible page: status {st}");
                t.ping(); // the target is alive
            }
        }
    }
    // The rest goes on: the same regions outside the page, and the main region.
    assert_eq!(init.one(1, Opcode::Write, t.protect, PAGE), COMPLETED);
    assert_eq!(init.one(0, Opcode::Read, t.unmap, PAGE), COMPLETED);
    init.both_protocols(&t);
}
