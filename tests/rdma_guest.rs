//! The RDMA transport on real verbs: soft-RoCE devices in the QEMU guest of
//! `tools/rdma-vm` (`ci/test-rdma.sh` boots it with two NICs and two NUMA nodes and
//! runs this binary there). On a machine without RDMA devices every test says so and returns,
//! unless `MOONCAKE_REQUIRE_RDMA=1` (set by `ci/test-rdma.sh`), which makes that a failure.
//!
//! Every transfer is between two processes: the test's engine and a peer engine in a child
//! copy of this binary (`rdma_peer_process`), which owns a pattern-filled buffer and answers
//! commands on stdin. The same-host path is off (`MOONCAKE_SHM=off`), so bytes move over RDMA.
//! One test takes Mooncake's wheel as the peer instead (`tests/rdma/wheel_peer.py` in the venv
//! of `ci/setup-wheel.sh`; skipped without it unless `MOONCAKE_REQUIRE_WHEEL=1`).
#![cfg(rdma_transport)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;
use support::{fill, pattern, pattern_byte, wait_batch};

const COMPLETED: i32 = 4;
const FAILED: i32 = 6;

/// True when RDMA devices are here; otherwise the test returns (or fails when required).
fn rdma_here(test: &str) -> bool {
    match mooncake::transport::rdma::probe() {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var_os("MOONCAKE_REQUIRE_RDMA").is_none(), "{test}: RDMA required but absent: {e}");
            eprintln!("{test}: skipped, no RDMA here ({e})");
            false
        }
    }
}

fn engine() -> TransferEngine {
    // SAFETY: (set_var) only tests of this binary run, one at a time (--test-threads=1 in
    // the guest), before any engine thread reads the environment.
    unsafe { std::env::set_var("MOONCAKE_SHM", "off") };
    let e = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).expect("engine");
    assert!(e.transports().contains(&"rdma"), "rdma not installed: {:?}", e.transports());
    e
}

/// A registered, page-aligned local buffer.
struct Buffer {
    ptr: *mut u8,
    len: usize,
}

impl Buffer {
    fn new(len: usize) -> Buffer {
        // SAFETY: anonymous private mapping of `len` bytes, unmapped in Drop.
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
        Buffer { ptr: p.cast(), len }
    }
    fn addr(&self) -> u64 {
        self.ptr as u64
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The peer engine in a child process.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    segment: String,
    addr: u64,
}

impl Peer {
    // A child that fails to get ready is killed by the guest's poweroff at the latest.
    #[allow(clippy::zombie_processes)]
    fn start(len: u64, seed: u64, env: &[(&str, &str)]) -> Peer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "rdma_peer_process", "--ignored", "--nocapture", "--test-threads=1"])
            .env("MOONCAKE_RDMA_PEER_LEN", len.to_string())
            .env("MOONCAKE_RDMA_PEER_SEED", seed.to_string())
            .env("MOONCAKE_SHM", "off")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the peer process");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "the peer exited before it was ready");
            // The harness prints "test rdma_peer_process ... " without a newline first.
            if let Some(rest) = line.trim().split_once("READY ").map(|(_, r)| r) {
                let f: Vec<&str> = rest.split(' ').collect();
                return Peer { child, stdin, out, segment: f[0].into(), addr: f[1].parse().unwrap() };
            }
            assert!(Instant::now() < deadline, "the peer did not get ready");
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "the peer exited during {cmd:?}");
            if let Some(answer) = line.trim().split_once("ANSWER ").map(|(_, r)| r) {
                return answer.to_string();
            }
        }
    }

    /// The peer's bytes `[off, off+len)` hold the pattern of `seed` computed at `off + i`.
    fn check(&mut self, seed: u64, off: u64, len: u64) {
        assert_eq!(self.ask(&format!("check {seed} {off} {len}")), "ok", "peer bytes at {off}+{len}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        quit_or_kill(&mut self.child, &mut self.stdin);
    }
}

/// Asks a child that reads commands to quit; kills it (by PID) when it has not exited 10 s later.
fn quit_or_kill(child: &mut Child, stdin: &mut ChildStdin) {
    let _ = writeln!(stdin, "quit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The peer process: an engine with one remotely accessible buffer of the pattern `seed`.
#[test]
#[ignore = "run by the other tests as a child process"]
fn rdma_peer_process() {
    let Ok(len) = std::env::var("MOONCAKE_RDMA_PEER_LEN") else { return };
    let len: usize = len.parse().unwrap();
    let seed: u64 = std::env::var("MOONCAKE_RDMA_PEER_SEED").unwrap().parse().unwrap();
    let e = engine();
    let mut buf = Buffer::new(len);
    fill(buf.bytes(), seed);
    e.register_memory(buf.addr(), len as u64, "cpu:0", true).unwrap();
    println!("READY {} {} {}", e.server_name(), buf.addr(), len);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        let answer = match f.as_slice() {
            ["check", seed, off, n] => {
                let (seed, off, n): (u64, usize, usize) =
                    (seed.parse().unwrap(), off.parse().unwrap(), n.parse().unwrap());
                let bytes = &buf.bytes()[off..off + n];
                match bytes.iter().enumerate().find(|(i, b)| **b != pattern_byte((off + i) as u64, seed)) {
                    None => "ok".to_string(),
                    Some((i, b)) => format!("mismatch at {} ({b:#x})", off + i),
                }
            }
            ["fill", seed] => {
                fill(buf.bytes(), seed.parse().unwrap());
                "ok".into()
            }
            ["unregister"] => match e.unregister_memory(buf.addr()) {
                Ok(()) => "ok".into(),
                Err(err) => format!("error {err}"),
            },
            ["descriptor"] => e.local_descriptor().to_json().to_string(),
            ["quit"] => break,
            other => format!("unknown command {other:?}"),
        };
        println!("ANSWER {answer}");
    }
}

fn request(op: Opcode, source: u64, seg: i32, target: u64, len: u64) -> TransferRequest {
    TransferRequest { opcode: op, source, target_id: seg, target_offset: target, length: len }
}

fn run(e: &TransferEngine, reqs: &[TransferRequest], limit: Duration) -> Vec<i32> {
    let b = e.allocate_batch(reqs.len()).unwrap();
    e.submit(b, reqs, None).unwrap();
    let st = wait_batch(e, b, reqs.len(), limit);
    e.free_batch(b).unwrap();
    st
}

#[test]
fn two_processes_move_data_both_ways_in_4k_and_1m_batches() {
    if !rdma_here("both_ways") {
        return;
    }
    const LEN: u64 = 8 << 20;
    let mut peer = Peer::start(LEN, 1, &[]);
    let e = engine();
    let mut local = Buffer::new(LEN as usize);
    e.register_memory(local.addr(), LEN, "cpu:0", true).unwrap();
    let seg = e.open_segment(&peer.segment, false).unwrap();
    let d = e.segment_descriptor(seg).unwrap();
    assert_eq!(d.protocol, "rdma");
    assert!(!d.devices.is_empty() && d.buffers.iter().all(|b| b.rkey.len() == d.devices.len()));

    // Writes: 64 scattered 4 KiB blocks in one batch, then 4 × 1 MiB.
    fill(local.bytes(), 7);
    let blocks = support::scattered(64, (LEN / 4096) as usize / 2, 3);
    let reqs: Vec<_> = blocks
        .iter()
        .map(|&b| request(Opcode::Write, local.addr() + b as u64 * 4096, seg, peer.addr + b as u64 * 4096, 4096))
        .collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    for &b in &blocks {
        peer.check(7, b as u64 * 4096, 4096);
    }
    let half = LEN / 2;
    let reqs: Vec<_> = (0..4)
        .map(|i| {
            request(Opcode::Write, local.addr() + half + i * (1 << 20), seg, peer.addr + half + i * (1 << 20), 1 << 20)
        })
        .collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    peer.check(7, half, 4 << 20);

    // Reads: the peer refills with another pattern; 4 KiB and 1 MiB batches come back.
    assert_eq!(peer.ask("fill 9"), "ok");
    local.bytes().fill(0);
    let reqs: Vec<_> = blocks
        .iter()
        .map(|&b| request(Opcode::Read, local.addr() + b as u64 * 4096, seg, peer.addr + b as u64 * 4096, 4096))
        .collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    for &b in &blocks {
        let off = b * 4096;
        assert!(
            local.bytes()[off..off + 4096].iter().enumerate().all(|(i, &x)| x == pattern_byte((off + i) as u64, 9))
        );
    }
    let reqs: Vec<_> = (0..4)
        .map(|i| {
            request(Opcode::Read, local.addr() + half + i * (1 << 20), seg, peer.addr + half + i * (1 << 20), 1 << 20)
        })
        .collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    let want = pattern(LEN as usize, 9);
    assert!(local.bytes()[half as usize..] == want[half as usize..], "1 MiB reads differ");
    let links = e.show_links(true);
    assert!(links.contains("\"rdma\""), "{links}");
}

#[test]
fn out_of_region_access_is_refused_and_unregistered_memory_is_untouchable() {
    if !rdma_here("out_of_region") {
        return;
    }
    const LEN: u64 = 1 << 20;
    let mut peer = Peer::start(LEN, 2, &[]);
    let e = engine();
    let mut local = Buffer::new(LEN as usize);
    fill(local.bytes(), 5);
    e.register_memory(local.addr(), LEN, "cpu:0", true).unwrap();
    let seg = e.open_segment(&peer.segment, false).unwrap();
    // Past the end of the peer's buffer, and straddling it: refused, nothing sent.
    let st = run(
        &e,
        &[
            request(Opcode::Write, local.addr(), seg, peer.addr + LEN, 4096),
            request(Opcode::Write, local.addr(), seg, peer.addr + LEN - 2048, 4096),
            request(Opcode::Read, local.addr(), seg, peer.addr - 4096, 4096),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(st, [FAILED, FAILED, FAILED]);
    peer.check(2, 0, LEN);
    // The peer unregisters its buffer; our cached descriptor still has its rkey, so the
    // request reaches the peer's NIC, which refuses it: no byte lands.
    assert_eq!(peer.ask("unregister"), "ok");
    let st = run(&e, &[request(Opcode::Write, local.addr(), seg, peer.addr, 4096)], Duration::from_secs(60));
    assert_eq!(st, [FAILED]);
    peer.check(2, 0, LEN);
    // Our own memory: a local range that is not registered is refused at submit.
    let b = e.allocate_batch(1).unwrap();
    let other = Buffer::new(4096);
    assert!(e.submit(b, &[request(Opcode::Write, other.addr(), seg, peer.addr, 4096)], None).is_err());
}

#[test]
fn a_killed_peer_fails_its_tasks_in_bounded_time() {
    if !rdma_here("killed_peer") {
        return;
    }
    const LEN: u64 = 16 << 20;
    let peer = Peer::start(LEN, 3, &[]);
    let e = engine();
    let mut local = Buffer::new(LEN as usize);
    fill(local.bytes(), 4);
    e.register_memory(local.addr(), LEN, "cpu:0", true).unwrap();
    let seg = e.open_segment(&peer.segment, false).unwrap();
    assert_eq!(
        run(&e, &[request(Opcode::Write, local.addr(), seg, peer.addr, 4096)], Duration::from_secs(60)),
        [COMPLETED]
    );
    let reqs: Vec<_> = (0..128)
        .map(|i| {
            request(Opcode::Write, local.addr() + (i % 16) * (1 << 20), seg, peer.addr + (i % 16) * (1 << 20), 1 << 20)
        })
        .collect();
    let b = e.allocate_batch(reqs.len()).unwrap();
    e.submit(b, &reqs, None).unwrap();
    // SAFETY: signals the peer child by its pid.
    unsafe { libc::kill(peer.child.id() as i32, libc::SIGKILL) };
    let started = Instant::now();
    let st = wait_batch(&e, b, reqs.len(), Duration::from_secs(90));
    eprintln!("killed peer: tasks ended after {:?}: {st:?}", started.elapsed());
    assert!(st.iter().all(|&s| s == COMPLETED || s == FAILED));
    // Once it is gone, new work fails too (the handshake is refused), quickly.
    let started = Instant::now();
    assert_eq!(
        run(&e, &[request(Opcode::Write, local.addr(), seg, peer.addr, 4096)], Duration::from_secs(60)),
        [FAILED]
    );
    eprintln!("after the kill, a new task failed in {:?}", started.elapsed());
}

fn ip_link(dev: &str, state: &str) {
    let st = Command::new("ip").args(["link", "set", dev, state]).status().expect("run ip");
    assert!(st.success(), "ip link set {dev} {state}");
}

/// Bytes moved by the links of each local device, from `showLinks`.
fn bytes_by_device(e: &TransferEngine) -> std::collections::HashMap<String, u64> {
    let mut m = std::collections::HashMap::new();
    for l in e.links().into_iter().filter(|l| l.transport == "rdma") {
        let dev = l.peer.rsplit(" via ").next().unwrap().to_string();
        *m.entry(dev).or_insert(0) += l.bytes;
    }
    m
}

#[test]
fn slices_stripe_over_both_nics_and_survive_one_going_down() {
    if !rdma_here("striping") {
        return;
    }
    let devices = mooncake::transport::rdma::probe().unwrap();
    if devices.len() < 2 {
        assert!(std::env::var_os("MOONCAKE_REQUIRE_RDMA").is_none(), "two RDMA devices required, found {devices:?}");
        return;
    }
    const LEN: u64 = 16 << 20;
    let mut peer = Peer::start(LEN, 5, &[]);
    let e = engine();
    assert_eq!(e.rdma().unwrap().device_names().len(), 2);
    let mut local = Buffer::new(LEN as usize);
    fill(local.bytes(), 6);
    e.register_memory(local.addr(), LEN, "cpu:0", true).unwrap();
    let seg = e.open_segment(&peer.segment, false).unwrap();
    let mb = 1u64 << 20;
    let reqs: Vec<_> =
        (0..16).map(|i| request(Opcode::Write, local.addr() + i * mb, seg, peer.addr + i * mb, mb)).collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    peer.check(6, 0, LEN);
    let used = bytes_by_device(&e);
    assert!(used.len() == 2 && used.values().all(|&b| b > 0), "both NICs carry slices: {used:?}");
    let load = e.nic_load();
    assert_eq!(load.len(), 2);
    assert!(load.iter().all(|(_, inflight, _)| *inflight == 0), "{load:?}");

    // rxe1's link goes down while 128 MiB are written: every task still completes, over rxe0.
    fill(local.bytes(), 8);
    let reqs: Vec<_> = (0..128)
        .map(|i| request(Opcode::Write, local.addr() + (i % 16) * mb, seg, peer.addr + (i % 16) * mb, mb))
        .collect();
    let b = e.allocate_batch(reqs.len()).unwrap();
    e.submit(b, &reqs, None).unwrap();
    ip_link("veth1", "down");
    let started = Instant::now();
    let st = wait_batch(&e, b, reqs.len(), Duration::from_secs(240));
    eprintln!("rxe1 down mid-transfer: tasks ended after {:?}", started.elapsed());
    assert!(st.iter().all(|&s| s == COMPLETED), "{st:?}");
    e.free_batch(b).unwrap();
    peer.check(8, 0, LEN);
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.rdma().unwrap().device_states().iter().any(|(n, up)| n == "rxe1" && *up) {
        assert!(Instant::now() < deadline, "rxe1 still in rotation with its link down");
        std::thread::sleep(Duration::from_millis(50));
    }
    // With it down, new work goes over rxe0 only.
    let before = bytes_by_device(&e);
    assert!(run(&e, &reqs[..8], Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    let after = bytes_by_device(&e);
    assert_eq!(after.get("rxe1").copied().unwrap_or(0), before.get("rxe1").copied().unwrap_or(0), "{after:?}");

    // Back up: rxe1 returns to rotation and carries slices again (its peer NIC was paused
    // after its failure; a short pause is configured by the caller's environment).
    ip_link("veth1", "up");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.rdma().unwrap().device_states().iter().all(|(_, up)| *up) {
        assert!(Instant::now() < deadline, "rxe1 did not come back: {:?}", e.rdma().unwrap().device_states());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = bytes_by_device(&e).get("rxe1").copied().unwrap_or(0);
    fill(local.bytes(), 10);
    let reqs: Vec<_> =
        (0..16).map(|i| request(Opcode::Write, local.addr() + i * mb, seg, peer.addr + i * mb, mb)).collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    peer.check(10, 0, LEN);
    let after = bytes_by_device(&e).get("rxe1").copied().unwrap_or(0);
    assert!(after > before, "rxe1 carries slices again ({before} -> {after})");
}

#[test]
fn large_overlapping_and_chunked_registrations() {
    if !rdma_here("registrations") {
        return;
    }
    let e = engine();
    const BIG: usize = 256 << 20;
    let big = Buffer::new(BIG);
    let started = Instant::now();
    e.register_memory(big.addr(), BIG as u64, "cpu:0", true).unwrap();
    eprintln!("registering 256 MiB on every device took {:?}", started.elapsed());
    let d = e.local_descriptor();
    assert_eq!(d.buffers.len(), 1);
    assert_eq!((d.buffers[0].addr, d.buffers[0].length), (big.addr(), BIG as u64));
    assert_eq!(d.buffers[0].rkey.len(), d.devices.len());
    let err = e.register_memory(big.addr() + 4096, 4096, "cpu:0", true).unwrap_err();
    assert_eq!(err.code, mooncake::error::Code::AddressOverlapped);
    assert_eq!(e.local_descriptor().buffers.len(), 1, "a refused registration leaves nothing behind");
    // A private region is registered for local use but never published.
    let private = Buffer::new(1 << 20);
    e.register_memory(private.addr(), 1 << 20, "cpu:0", false).unwrap();
    assert_eq!(e.local_descriptor().buffers.len(), 1);
    e.unregister_memory(private.addr()).unwrap();
    e.unregister_memory(big.addr()).unwrap();
    assert!(e.local_descriptor().buffers.is_empty());
    e.register_memory(big.addr(), BIG as u64, "cpu:0", true).unwrap();
    e.unregister_memory(big.addr()).unwrap();

    // A peer whose MRs are at most 1 MiB publishes its 4 MiB buffer as four; transfers
    // inside each work, one across two of them is refused.
    let mut peer = Peer::start(4 << 20, 11, &[("MC_MAX_MR_SIZE", "1048576")]);
    let desc: serde_json::Value = serde_json::from_str(&peer.ask("descriptor")).unwrap();
    assert_eq!(desc["buffers"].as_array().unwrap().len(), 4, "{desc}");
    let mut local = Buffer::new(4 << 20);
    fill(local.bytes(), 12);
    e.register_memory(local.addr(), 4 << 20, "cpu:0", true).unwrap();
    let seg = e.open_segment(&peer.segment, false).unwrap();
    let mb = 1u64 << 20;
    let reqs: Vec<_> =
        (0..4).map(|i| request(Opcode::Write, local.addr() + i * mb, seg, peer.addr + i * mb, mb)).collect();
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    peer.check(12, 0, 4 << 20);
    let across = request(Opcode::Write, local.addr(), seg, peer.addr + mb - 2048, 4096);
    assert_eq!(run(&e, &[across], Duration::from_secs(60)), [FAILED]);
}

/// Binds `len` bytes at `addr` to NUMA node `node` and touches them.
fn bind_to_node(buf: &mut Buffer, node: u32) {
    const MPOL_BIND: i64 = 2;
    const MPOL_MF_MOVE: i64 = 2;
    let mask: u64 = 1 << node;
    // SAFETY: mbind on our own mapping with a one-word node mask.
    let rc = unsafe {
        libc::syscall(libc::SYS_mbind, buf.ptr, buf.len, MPOL_BIND, &mask as *const u64, 64u64, MPOL_MF_MOVE)
    };
    assert_eq!(rc, 0, "mbind: {}", std::io::Error::last_os_error());
    buf.bytes().fill(1);
}

#[test]
fn star_location_names_the_numa_node_of_the_pages() {
    if !rdma_here("star_location") {
        return;
    }
    let nodes = mooncake::engine::discover_local("").node_ids();
    if nodes.len() < 2 {
        assert!(std::env::var_os("MOONCAKE_REQUIRE_RDMA").is_none(), "two NUMA nodes required, found {nodes:?}");
        return;
    }
    let e = engine();
    for node in [1u32, 0] {
        let mut buf = Buffer::new(1 << 20);
        bind_to_node(&mut buf, node);
        e.register_memory(buf.addr(), 1 << 20, "*", true).unwrap();
        let d = e.local_descriptor();
        let b = d.buffers.iter().find(|b| b.addr == buf.addr()).unwrap();
        assert_eq!(b.name, format!("cpu:{node}"));
        let m = d.priority_matrix.as_ref().unwrap();
        assert!(m.entries.contains_key(&b.name), "the matrix names the location of every buffer");
        e.unregister_memory(buf.addr()).unwrap();
    }
}

/// Mooncake's wheel (`mooncake-transfer-engine-non-cuda`, the venv of `ci/setup-wheel.sh`)
/// with its own RDMA engine, driven by `tests/rdma/wheel_peer.py serve`: it owns one buffer
/// filled with its pattern and, on command, checks or moves bytes as the initiator.
struct WheelRdma {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    segment: String,
    addr: u64,
}

/// The wheel script's pattern: byte `i` of seed `s` is `(i * 31 + s) & 0xff`.
fn wheel_byte(i: u64, seed: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(seed) & 0xff) as u8
}

impl WheelRdma {
    // The script's own watchdog (--timeout) ends it; Drop kills it by PID before that.
    #[allow(clippy::zombie_processes)]
    fn start(python: &std::path::Path, len: u64, seed: u64) -> WheelRdma {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rdma/wheel_peer.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["serve", "--size", &len.to_string(), "--pattern", &seed.to_string(), "--timeout", "600"])
            .env("MC_LOG_LEVEL", "WARNING")
            .env("GLOG_minloglevel", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the wheel");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Under TCG the wheel takes 15-45 s to import and initialise; its watchdog bounds this.
        assert!(out.read_line(&mut line).unwrap() > 0, "the wheel exited before it was ready");
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("the wheel did not start: {line}"));
        WheelRdma {
            child,
            stdin,
            out,
            segment: v["segment"].as_str().unwrap().to_string(),
            addr: v["addr"].as_u64().unwrap(),
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        assert!(self.out.read_line(&mut line).unwrap() > 0, "the wheel exited during {cmd:?}");
        line.trim().to_string()
    }
}

impl Drop for WheelRdma {
    fn drop(&mut self) {
        quit_or_kill(&mut self.child, &mut self.stdin);
    }
}

#[test]
fn mooncakes_wheel_and_ours_move_data_over_rdma_both_ways() {
    if !rdma_here("wheel") {
        return;
    }
    let Some(python) = support::wheel::python() else { return };
    const LEN: u64 = 4 << 20;
    let mb = 1u64 << 20;
    let e = engine();
    let mut local = Buffer::new(LEN as usize);
    for (i, b) in local.bytes().iter_mut().enumerate() {
        *b = wheel_byte(i as u64, 11);
    }
    e.register_memory(local.addr(), LEN, "cpu:0", true).unwrap();
    let mut wheel = WheelRdma::start(&python, LEN, 7);

    // Ours as the initiator: the wheel's descriptor, then writes and reads over its NICs.
    let seg = e.open_segment(&wheel.segment, false).unwrap();
    let d = e.segment_descriptor(seg).unwrap();
    assert_eq!(d.protocol, "rdma");
    assert!(!d.devices.is_empty() && d.buffers.iter().all(|b| b.rkey.len() == d.devices.len()), "{d:?}");
    let blocks = support::scattered(16, 256, 5);
    let mut reqs: Vec<_> = blocks
        .iter()
        .map(|&b| request(Opcode::Write, local.addr() + b as u64 * 4096, seg, wheel.addr + b as u64 * 4096, 4096))
        .collect();
    reqs.push(request(Opcode::Write, local.addr() + 2 * mb, seg, wheel.addr + 2 * mb, mb));
    assert!(run(&e, &reqs, Duration::from_secs(120)).iter().all(|&s| s == COMPLETED));
    for &b in &blocks {
        assert_eq!(wheel.ask(&format!("check 11 {} 4096", b * 4096)), "ok", "4 KiB block {b} in the wheel");
    }
    assert_eq!(wheel.ask(&format!("check 11 {} {mb}", 2 * mb)), "ok", "1 MiB in the wheel");
    assert_eq!(wheel.ask(&format!("check 7 {} {mb}", 3 * mb)), "ok", "bytes nobody wrote are the wheel's");
    local.bytes().fill(0);
    let st = run(
        &e,
        &[request(Opcode::Read, local.addr() + 3 * mb, seg, wheel.addr + 3 * mb, mb)],
        Duration::from_secs(120),
    );
    assert_eq!(st, [COMPLETED]);
    let bad = (3 * mb..4 * mb).find(|&i| local.bytes()[i as usize] != wheel_byte(i, 7));
    assert_eq!(bad, None, "first wrong byte read from the wheel");
    let links = e.show_links(true);
    assert!(links.contains("\"rdma\""), "{links}");

    // The wheel as the initiator: it opens our segment (our descriptor, our handshake) and
    // writes its bytes into our buffer, then reads ours back.
    let ours = e.server_name();
    assert_eq!(wheel.ask(&format!("write {ours} {} {} {mb}", local.addr() + mb, mb)), "ok");
    let bad = (mb..2 * mb).find(|&i| local.bytes()[i as usize] != wheel_byte(i, 7));
    assert_eq!(bad, None, "first wrong byte the wheel wrote into ours");
    for (i, b) in local.bytes().iter_mut().enumerate() {
        *b = wheel_byte(i as u64, 13);
    }
    assert_eq!(wheel.ask(&format!("read {ours} {} 0 {mb}", local.addr())), "ok");
    assert_eq!(wheel.ask(&format!("check 13 0 {mb}")), "ok", "what the wheel read from ours");
    // Outside what we registered: the wheel's own checks or our NIC refuse it, nothing lands.
    let before = local.bytes()[..64].to_vec();
    assert_ne!(wheel.ask(&format!("write {ours} {} 0 4096", local.addr() + LEN)), "ok");
    assert_eq!(local.bytes()[..64], before[..]);
}

/// Our Python package (`python/`, over this build's `libmooncake.so`) picks the transport its
/// `initialize` names: rdma over the NICs `device_name` lists, or tcp.
#[test]
fn python_initialize_takes_rdma_over_the_named_nics_or_keeps_to_tcp() {
    if !rdma_here("python") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The test binary is target/<profile>/deps/<name>: the library is two levels up.
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().and_then(|d| d.parent()).map(|d| d.join("libmooncake.so")).unwrap();
    if !lib.exists() {
        assert!(std::env::var_os("MOONCAKE_REQUIRE_RDMA").is_none(), "{} is not built", lib.display());
        eprintln!("python: skipped, {} is not built", lib.display());
        return;
    }
    let devices = mooncake::transport::rdma::probe().unwrap().join(" ");
    let out = Command::new("python3")
        .arg(root.join("tests/rdma/python_engine.py"))
        .arg(&devices)
        .env("PYTHONPATH", root.join("python"))
        .env("MOONCAKE_LIB", &lib)
        .env("MOONCAKE_SHM", "off")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.trim() == "ok", "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The store over RDMA: a client puts and gets values whose only replica is in another
/// client's segment, and the bytes move over the NICs (the owner takes rxe1 only, by
/// `device_name`).
#[test]
fn the_store_moves_values_over_rdma_and_honours_device_name() {
    if !rdma_here("store") {
        return;
    }
    use mooncake::store::{ReplicaConfig, Store};
    // SAFETY: (set_var) see `engine`.
    unsafe { std::env::set_var("MOONCAKE_SHM", "off") };
    let master = support::store::Master::start(&[]);
    let mut config = master.config(64 << 20);
    config.protocol = "rdma".into();
    config.device_name = "rxe1".into();
    let owner = Store::setup(&config).expect("owner setup");
    let owner_engine = owner.real().unwrap();
    let d = owner_engine.engine().local_descriptor();
    assert_eq!(d.protocol, "rdma");
    assert_eq!(d.devices.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["rxe1"], "device_name is honoured");
    let mut config = master.config(0);
    config.protocol = "rdma".into();
    let client = Store::setup(&config).expect("client setup");
    let one = ReplicaConfig { replica_num: 1, ..Default::default() };
    for (i, size) in [4096usize, 1 << 20, 8 << 20].into_iter().enumerate() {
        let value = pattern(size, 20 + i as u64);
        let key = format!("rdma-{size}");
        client.put_parts(&key, &[&value], &one, false).unwrap_or_else(|e| panic!("put {size}: {e}"));
        let back = client.get(&key).unwrap_or_else(|e| panic!("get {size}: {e}"));
        assert!(back == value, "{size} bytes came back different");
    }
    let real = client.real().unwrap();
    let moved: u64 = real.engine().links().iter().filter(|l| l.transport == "rdma").map(|l| l.bytes).sum();
    assert!(moved >= 2 * (4096 + (1 << 20) + (8 << 20)), "the values went over rdma: {moved} bytes");
    // A store asked for tcp keeps to tcp on this host.
    let mut config = master.config(0);
    config.protocol = "tcp".into();
    let tcp = Store::setup(&config).expect("tcp client setup");
    assert!(!tcp.real().unwrap().engine().transports().contains(&"rdma"));
    assert!(tcp.get("rdma-4096").unwrap() == pattern(4096, 20));
}
