//! Our TCP framing (`src/transport/tcp/frame.rs`) between two of our engines, and the data
//! server's handling of bad frames.
//!
//! The initiator learns the target from a handshake stand-in whose descriptor offers TCP (with
//! or without `libmooncake.tcp_framing`) and nothing else, so the route is TCP whatever else the
//! two engines could do on one host. Every wait is bounded; nothing asserts on timing.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mooncake::config::Config;
use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;
use mooncake::transport::tcp::frame::{self, ENTRY_LEN, Entry, HEAD_LEN, Head};
use mooncake::transport::tcp::wire::{self, Header};
use support::fake_peer::{FakeServer, Reply, descriptor_json};

/// Counts the allocations of each thread, to show that the submitting thread's share of the
/// framed path (cutting frames, sending some itself) does not grow with the request count.
struct Counting;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const thread-local without `Drop`, which never allocates.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const COMPLETED: i32 = 4;
const FAILED: i32 = 6;

fn engine_with(lanes: usize, progress: Duration) -> TransferEngine {
    let mut cfg = Config::from_env();
    cfg.tcp_lanes_per_peer = lanes;
    cfg.tcp_progress_timeout = progress;
    cfg.tcp_status_timeout = progress;
    TransferEngine::with_config(EngineOptions::p2p("127.0.0.1"), cfg).expect("engine")
}

/// A descriptor for `data_port` and one buffer; `framing` adds our offer.
fn descriptor(data_port: u16, addr: u64, len: u64, framing: bool) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&descriptor_json("framed", data_port, addr, len)).unwrap();
    if framing {
        v["libmooncake"] = serde_json::json!({ "tcp_framing": frame::FRAMING_VERSION });
    }
    v.to_string().into_bytes()
}

/// An initiator engine and a target engine, the target's whole buffer registered.
struct Pair {
    init: TransferEngine,
    target: TransferEngine,
    _hs: FakeServer,
    seg: i32,
    remote: Vec<u8>,
    local: Vec<u8>,
}

impl Pair {
    fn new(remote_len: usize, local_len: usize, framing: bool, lanes: usize) -> Pair {
        let target = support::engine();
        let init = engine_with(lanes, Duration::from_secs(10));
        let mut remote = vec![0u8; remote_len];
        let mut local = vec![0u8; local_len];
        target.register_memory(remote.as_mut_ptr() as u64, remote_len as u64, "cpu:0", true).unwrap();
        init.register_memory(local.as_mut_ptr() as u64, local_len as u64, "cpu:0", true).unwrap();
        let port = target.segment_descriptor(0).unwrap().tcp_data_port;
        let hs = FakeServer::handshake(Reply::Frame(
            1,
            descriptor(port, remote.as_ptr() as u64, remote_len as u64, framing),
        ));
        let seg = init.open_segment(&format!("127.0.0.1:{}", hs.port), false).unwrap();
        Pair { init, target, _hs: hs, seg, remote, local }
    }

    fn req(&self, opcode: Opcode, local_off: usize, remote_off: usize, len: usize) -> TransferRequest {
        TransferRequest {
            opcode,
            source: self.local.as_ptr() as u64 + local_off as u64,
            target_id: self.seg,
            target_offset: self.remote.as_ptr() as u64 + remote_off as u64,
            length: len as u64,
        }
    }

    fn framed_connections(&self) -> u64 {
        self.target.tcp().unwrap().framed_connections()
    }
}

fn run(e: &TransferEngine, reqs: &[TransferRequest]) -> Vec<i32> {
    let batch = e.allocate_batch(reqs.len()).unwrap();
    e.submit(batch, reqs, None).unwrap();
    let st = support::wait_batch(e, batch, reqs.len(), Duration::from_secs(60));
    e.free_batch(batch).unwrap();
    st
}

/// Lays `sizes` out back to back (with a gap), as (offset, len).
fn layout(sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut off = 0;
    sizes
        .iter()
        .map(|&len| {
            let at = off;
            off += len + 13;
            (at, len)
        })
        .collect()
}

#[test]
fn many_small_and_mixed_sizes_land_intact_both_ways() {
    let mut sizes: Vec<usize> =
        vec![1, 3, 64, 4095, 4096, 4097, 65536, 65537, (1 << 20) - 1, (1 << 20) + 3, (3 << 20) + 17];
    sizes.extend(std::iter::repeat_n(64, 2000)); // several frames of 256 entries
    sizes.extend((0..300).map(|i| 1 + (i * 7919) % 9000));
    let spans = layout(&sizes);
    let total = spans.last().map(|&(o, l)| o + l).unwrap();
    let mut p = Pair::new(total, total, true, 4);
    support::fill(&mut p.local, 11);
    let writes: Vec<_> = spans.iter().map(|&(o, l)| p.req(Opcode::Write, o, o, l)).collect();
    assert!(run(&p.init, &writes).iter().all(|&s| s == COMPLETED));
    for &(o, l) in &spans {
        assert!(p.remote[o..o + l] == p.local[o..o + l], "write of {l} bytes at {o} differs");
    }
    let expect = p.local.clone();
    p.local.iter_mut().for_each(|b| *b = 0);
    let reads: Vec<_> = writes.iter().map(|w| TransferRequest { opcode: Opcode::Read, ..*w }).collect();
    assert!(run(&p.init, &reads).iter().all(|&s| s == COMPLETED));
    for &(o, l) in &spans {
        assert!(p.local[o..o + l] == expect[o..o + l], "read of {l} bytes at {o} differs");
    }
    assert!(p.framed_connections() >= 1, "the engines did not use our framing");
}

#[test]
fn concurrent_submitters_and_mixed_directions_complete() {
    const THREADS: usize = 4;
    const BLOCK: usize = 256 << 10;
    const PER: usize = 16;
    let span = THREADS * PER * BLOCK;
    // Local: [0, span) is written out, [span, 2 span) receives reads. Remote likewise.
    let mut p = Pair::new(2 * span, 2 * span, true, 4);
    support::fill(&mut p.local[..span], 5);
    support::fill(&mut p.remote[span..], 6);
    for round in 0..3 {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let p = &p;
                s.spawn(move || {
                    let mut reqs = Vec::new();
                    for i in 0..PER {
                        let off = (t * PER + i) * BLOCK;
                        reqs.push(p.req(Opcode::Write, off, off, BLOCK));
                        reqs.push(p.req(Opcode::Read, span + off, span + off, BLOCK));
                    }
                    let st = run(&p.init, &reqs);
                    assert!(st.iter().all(|&s| s == COMPLETED), "round {round} thread {t}: {st:?}");
                });
            }
        });
    }
    assert!(p.remote[..span] == p.local[..span]);
    assert!(p.local[span..] == p.remote[span..]);
}

#[test]
fn out_of_region_entries_fail_alone_and_the_connection_stays() {
    let len = 1 << 20;
    let mut p = Pair::new(len, len, true, 1);
    // Only the middle of the target's buffer stays registered.
    let base = p.remote.as_ptr() as u64;
    p.target.unregister_memory(base).unwrap();
    let guard = 64 << 10;
    p.target.register_memory(base + guard as u64, (len - 2 * guard) as u64, "cpu:0", true).unwrap();
    support::fill(&mut p.local, 3);
    let mut reqs = Vec::new();
    let mut bad = Vec::new();
    for i in 0..64 {
        let off = guard + i * 4096;
        reqs.push(p.req(Opcode::Write, off, off, 4096));
        if i % 8 == 0 {
            bad.push(reqs.len());
            reqs.push(p.req(Opcode::Write, i * 100, i * 100, 100)); // below the region
            bad.push(reqs.len());
            reqs.push(p.req(Opcode::Write, 0, len - guard - 50, 100)); // straddles its end
            bad.push(reqs.len());
            reqs.push(p.req(Opcode::Read, 0, len - 10, 10)); // above it
        }
    }
    let st = run(&p.init, &reqs);
    for (i, &s) in st.iter().enumerate() {
        let want = if bad.contains(&i) { FAILED } else { COMPLETED };
        assert_eq!(s, want, "entry {i}");
    }
    assert!(p.remote[..guard].iter().all(|&b| b == 0), "a refused write landed below the region");
    assert!(p.remote[len - guard..].iter().all(|&b| b == 0), "a refused write landed above the region");
    assert!(p.remote[guard..guard + 64 * 4096] == p.local[guard..guard + 64 * 4096]);
    assert!(p.target.tcp().unwrap().refused_requests() >= bad.len() as u64);
    // The same connection serves the next batch.
    let again = [p.req(Opcode::Read, 0, guard, 4096)];
    assert_eq!(run(&p.init, &again), vec![COMPLETED]);
    assert_eq!(p.framed_connections(), 1, "a refused entry must not cost the connection");
}

#[test]
fn descriptors_without_the_offer_get_mooncakes_protocol() {
    let len = 4 << 20;
    for framing in [false, true] {
        let mut p = Pair::new(len, len, framing, 4);
        support::fill(&mut p.local, 9);
        let reqs: Vec<_> = (0..64).map(|i| p.req(Opcode::Write, i * 65536, i * 65536, 65536)).collect();
        assert!(run(&p.init, &reqs).iter().all(|&s| s == COMPLETED));
        assert!(p.remote == p.local);
        let framed = p.framed_connections();
        assert_eq!(framed > 0, framing, "framing offered: {framing}, framed connections: {framed}");
        assert!(p.target.tcp().unwrap().server_connections() >= 1);
    }
}

/// A data port that plays our framing's server up to a point, then misbehaves.
fn fake_framed(behaviour: fn(TcpStream)) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    behaviour(s);
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (port, t)
}

fn run_against(port: u16, framing: bool) -> Vec<i32> {
    let init = engine_with(1, Duration::from_secs(2));
    let mut local = vec![1u8; 128 * 65536];
    init.register_memory(local.as_mut_ptr() as u64, local.len() as u64, "cpu:0", true).unwrap();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor(port, 1 << 40, 1 << 30, framing)));
    let seg = init.open_segment(&format!("127.0.0.1:{}", hs.port), false).unwrap();
    let reqs: Vec<_> = (0..128u64)
        .map(|i| TransferRequest {
            opcode: Opcode::Write,
            source: local.as_ptr() as u64 + i * 65536,
            target_id: seg,
            target_offset: (1 << 40) + i * 65536,
            length: 65536,
        })
        .collect();
    let st = run(&init, &reqs);
    drop(init);
    st
}

#[test]
fn a_peer_killed_mid_batch_fails_its_tasks() {
    let (port, t) = fake_framed(|mut s| {
        let mut hello = [0u8; 24];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(frame::parse_hello(&hello), Some(frame::FRAMING_VERSION));
        s.write_all(&frame::ack(frame::FRAMING_VERSION)).unwrap();
        let mut some = vec![0u8; 100_000];
        let _ = s.read_exact(&mut some);
        // Killed: reset, no reply.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    });
    assert!(run_against(port, true).iter().all(|&s| s == FAILED));
    t.join().unwrap();
}

#[test]
fn a_peer_that_stops_answering_fails_its_tasks_after_the_progress_timeout() {
    let silent = FakeServer::silent();
    assert!(run_against(silent.port, true).iter().all(|&s| s == FAILED));
}

#[test]
fn a_peer_that_refuses_the_hello_fails_its_tasks() {
    // What Mooncake's server does with a size-0 v2 request: the rejected frame, then close.
    let (port, t) = fake_framed(|mut s| {
        let mut hello = [0u8; 24];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(Header::decode(&hello).size, 0);
        let _ = s.write_all(&wire::status_frame(wire::STATUS_REJECTED));
    });
    assert!(run_against(port, true).iter().all(|&s| s == FAILED));
    t.join().unwrap();
}

/// A raw connection to a data port, past our hello.
fn framed_conn(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(&frame::hello(frame::FRAMING_VERSION)).unwrap();
    let mut ack = [0u8; 8];
    (&s).read_exact(&mut ack).unwrap();
    assert_eq!(frame::parse_ack(ack), frame::Ack::Version(frame::FRAMING_VERSION));
    s
}

fn request_frame(seq: u64, entries: &[Entry], count: Option<u32>) -> Vec<u8> {
    let mut b = vec![0u8; HEAD_LEN + entries.len() * ENTRY_LEN];
    let n = count.unwrap_or(entries.len() as u32);
    Head { magic: frame::REQUEST_MAGIC, count: n, seq }.encode(&mut b);
    for (e, out) in entries.iter().zip(b[HEAD_LEN..].chunks_exact_mut(ENTRY_LEN)) {
        e.encode(out);
    }
    b
}

/// The server closes the connection (EOF or reset) within the read timeout, sending no reply.
fn expect_closed(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: the server answered {n} bytes instead of closing"),
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
            "{what}: {e} (the server neither closed nor answered)"
        ),
    }
}

fn read_reply(s: &mut TcpStream, count: usize) -> (Head, Vec<u8>) {
    let mut head = [0u8; HEAD_LEN];
    s.read_exact(&mut head).unwrap();
    let mut statuses = vec![0u8; count];
    s.read_exact(&mut statuses).unwrap();
    (Head::decode(&head), statuses)
}

#[test]
fn malformed_frames_close_their_connection_and_nothing_else() {
    let target = support::engine();
    let mut mem = vec![0u8; 1 << 20];
    let base = mem.as_mut_ptr() as u64;
    target.register_memory(base, mem.len() as u64, "cpu:0", true).unwrap();
    let port = target.segment_descriptor(0).unwrap().tcp_data_port;
    let w = |addr, len| Entry { addr, len, write: true };

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad magic", {
            let mut b = request_frame(1, &[w(base, 8)], None);
            b[0] ^= 0xff;
            b
        }),
        ("zero entries", request_frame(1, &[], None)),
        ("a huge entry count", request_frame(1, &[w(base, 8)], Some(u32::MAX))),
        ("an entry count just above the limit", request_frame(1, &[w(base, 8)], Some(frame::MAX_ENTRIES as u32 + 1))),
        ("an entry length of 2^64-1", request_frame(1, &[w(base, u64::MAX)], None)),
        ("an unknown opcode", {
            let mut b = request_frame(1, &[w(base, 8)], None);
            b[HEAD_LEN + 16] = 7;
            b
        }),
        ("more payload than a frame may carry", request_frame(1, &[w(base, frame::MAX_ENTRY_LEN); 2], None)),
    ];
    for (what, bytes) in cases {
        let s = framed_conn(port);
        (&s).write_all(&bytes).unwrap();
        expect_closed(s, what);
    }

    // Truncated: the table ends early; the payload ends early.
    let s = framed_conn(port);
    let full = request_frame(1, &[w(base, 8), w(base + 8, 8)], None);
    (&s).write_all(&full[..HEAD_LEN + ENTRY_LEN + 5]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    expect_closed(s, "a truncated entry table");
    let s = framed_conn(port);
    (&s).write_all(&request_frame(1, &[w(base, 4096)], None)).unwrap();
    (&s).write_all(&[1u8; 100]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    expect_closed(s, "a truncated payload");

    // A range that wraps around the address space is refused alone; its payload is skipped
    // and the connection goes on.
    let mut s = framed_conn(port);
    let entries = [w(u64::MAX - 10, 100), w(base + 64, 8), Entry { addr: 0, len: 0, write: false }];
    (&s).write_all(&request_frame(7, &entries, None)).unwrap();
    (&s).write_all(&[0xaau8; 100]).unwrap();
    (&s).write_all(&[0x5au8; 8]).unwrap();
    let (head, statuses) = read_reply(&mut s, 3);
    assert_eq!((head.magic, head.count, head.seq), (frame::REPLY_MAGIC, 3, 7));
    assert_eq!(statuses, [frame::ENTRY_REFUSED, frame::ENTRY_OK, frame::ENTRY_REFUSED]);
    (&s).write_all(&request_frame(8, &[Entry { addr: base + 64, len: 8, write: false }], None)).unwrap();
    let (head, statuses) = read_reply(&mut s, 1);
    assert_eq!((head.seq, statuses[0]), (8, frame::ENTRY_OK));
    let mut data = [0u8; 8];
    s.read_exact(&mut data).unwrap();
    assert_eq!(data, [0x5a; 8]);
    drop(s);

    // Mooncake's protocol still works on the same port, and so does unregistering (no lease
    // was left behind by the broken connections).
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = Header { size: 4, addr: base + 128, write: true, v2: true }.encode();
    (&s).write_all(&h).unwrap();
    (&s).write_all(&[9u8; 4]).unwrap();
    let mut frame = [0u8; 8];
    (&s).read_exact(&mut frame).unwrap();
    assert_eq!(wire::parse_status(frame), wire::Status::Ok);
    drop(s);
    assert!(target.tcp().unwrap().framed_connections() >= 10);
    target.unregister_memory(base).unwrap();
    assert_eq!(&mem[64..72], &[0x5a; 8]);
    assert_eq!(&mem[128..132], &[9; 4]);
}

#[test]
fn a_target_that_goes_away_mid_transfer_ends_every_task() {
    let len = 64 << 20;
    let p = Pair::new(len, len, true, 4);
    let reqs: Vec<_> = (0..64).map(|i| p.req(Opcode::Write, i << 20, i << 20, 1 << 20)).collect();
    let batch = p.init.allocate_batch(reqs.len()).unwrap();
    p.init.submit(batch, &reqs, None).unwrap();
    p.target.shutdown();
    let st = support::wait_batch(&p.init, batch, reqs.len(), Duration::from_secs(60));
    assert!(st.iter().all(|&s| s == COMPLETED || s == FAILED));
    p.init.free_batch(batch).unwrap();
}

#[test]
fn framed_submissions_allocate_nothing_per_request() {
    const TASK: usize = 64;
    let n_large = 4096;
    let mut p = Pair::new(n_large * TASK, n_large * TASK, true, 4);
    support::fill(&mut p.local, 2);
    let measure = |n: usize| {
        let reqs: Vec<_> = (0..n).map(|i| p.req(Opcode::Write, i * TASK, i * TASK, TASK)).collect();
        let batch = p.init.allocate_batch(n).unwrap();
        let before = ALLOCS.with(|c| c.get());
        p.init.submit(batch, &reqs, None).unwrap();
        let allocs = ALLOCS.with(|c| c.get()) - before;
        assert!(support::wait_batch(&p.init, batch, n, Duration::from_secs(60)).iter().all(|&s| s == COMPLETED));
        p.init.free_batch(batch).unwrap();
        allocs
    };
    for _ in 0..2 {
        measure(n_large); // warm-up: connections, queue capacity, reused frame buffers
    }
    let small = (0..3).map(|_| measure(16)).min().unwrap();
    let large = (0..3).map(|_| measure(n_large)).min().unwrap();
    eprintln!("allocations per submit on the submitting thread: 16 tasks {small}, {n_large} tasks {large}");
    // The engine's `plan` clones the peer's host once per request (tests/alloc_counting.rs,
    // PLAN_ALLOCS_PER_TCP_REQUEST); beyond that, a flat slack for amortised growth.
    assert!(large <= small + 8 + (n_large as u64 - 16), "16 tasks: {small} allocations, {n_large} tasks: {large}");
    assert!(p.remote == p.local);
}
