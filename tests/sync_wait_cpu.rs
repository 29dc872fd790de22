//! A synchronous transfer that takes long does not burn the waiting thread's core: the wait
//! spins for a few microseconds (`SPIN_BEFORE_PARK` in `src/engine/batch.rs`: small transfers
//! get no wake-up latency) and then parks on a condition variable until the batch's last task
//! ends. A peer that holds each request for a while before acknowledging it makes the
//! transfer take at least `HOLD`; the CPU time the waiting thread used meanwhile
//! (`CLOCK_THREAD_CPUTIME_ID`) must stay far below the wall time. This asserts CPU time, not
//! speed: a parked waiter uses well under 1% of the wall time, the bound is 50%.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mooncake::transport::tcp::wire::{self, HEADER_LEN, Header};
use support::fake_peer::{FakeServer, Reply, descriptor_json};
use support::ffi as c;

/// How long the slow peer holds each request before acknowledging it.
const HOLD: Duration = Duration::from_millis(500);

/// CPU time this thread has used so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A data port speaking Mooncake's v2 TCP protocol that takes each write whole, waits `HOLD`,
/// then acknowledges it (reads are not served). Stops when dropped.
struct SlowPeer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowPeer {
    fn start() -> SlowPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let flag = flag.clone();
                        served.push(std::thread::spawn(move || serve(s, &flag)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            served.into_iter().for_each(|t| drop(t.join()));
        });
        SlowPeer { port, stop, thread: Some(thread) }
    }
}

/// Serves one connection until the initiator closes it, an error, or `stop`.
fn serve(mut s: TcpStream, stop: &AtomicBool) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut payload = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut h = [0u8; HEADER_LEN];
        match s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let h = Header::decode(&h);
        assert!(h.write && h.v2, "the slow peer serves v2 writes only: {h:?}");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        payload.resize(h.size as usize, 0);
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        std::thread::sleep(HOLD);
        if s.write_all(&wire::status_frame(wire::STATUS_OK)).is_err() {
            return;
        }
    }
}

impl Drop for SlowPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_long_synchronous_transfer_parks_the_waiting_thread() {
    let peer = SlowPeer::start();
    let hs = FakeServer::handshake(Reply::Frame(1, descriptor_json("slow", peer.port, 1 << 30, 1 << 30)));
    let e = c::create();
    let mut buf = vec![3u8; 256 << 10];
    c::register(e, &mut buf);
    let seg = c::open(e, &format!("127.0.0.1:{}", hs.port));
    // One request of one slice: the transfer lasts one HOLD of the peer.
    let mut reqs = [c::request(c::OPCODE_WRITE, buf.as_ptr(), seg, 1 << 30, buf.len() as u64)];

    let (wall0, cpu0) = (Instant::now(), thread_cpu());
    // SAFETY: one readable entry, no notification.
    let rc = unsafe { c::mooncake_transfer_sync(e, reqs.as_mut_ptr(), reqs.len(), std::ptr::null(), 30_000) };
    let (wall, cpu) = (wall0.elapsed(), thread_cpu() - cpu0);
    eprintln!("mooncake_transfer_sync: wall {wall:?}, waiting thread's CPU {cpu:?}");
    assert_eq!(rc, 0, "the transfer failed: {}", c::last_error());
    assert!(wall >= HOLD - Duration::from_millis(50), "the peer did not hold the request: {wall:?}");
    assert!(cpu < wall / 2, "the waiting thread used {cpu:?} of CPU in {wall:?}: it does not park");

    // The same through the engine's wait for a batch the caller submitted.
    let batch = c::allocateBatchID(e, 1);
    // SAFETY: one readable entry.
    assert_eq!(unsafe { c::submitTransfer(e, batch, reqs.as_mut_ptr(), 1) }, 0);
    let (wall0, cpu0) = (Instant::now(), thread_cpu());
    let rc = c::mooncake_wait_batch(e, batch, 30_000);
    let (wall, cpu) = (wall0.elapsed(), thread_cpu() - cpu0);
    eprintln!("mooncake_wait_batch: wall {wall:?}, waiting thread's CPU {cpu:?}");
    assert_eq!(rc, 0, "the batch failed: {}", c::last_error());
    assert!(wall >= HOLD / 2, "the peer did not hold the request: {wall:?}");
    assert!(cpu < wall / 2, "the waiting thread used {cpu:?} of CPU in {wall:?}: it does not park");
    assert_eq!(c::freeBatchID(e, batch), 0);
    c::destroyTransferEngine(e);
}
