//! The initiator side of our framing (`frame.rs`), used towards peers whose descriptor offers it.
//!
//! Per peer, one queue of slices and up to `lanes_per_peer` connections. Queued slices are cut
//! into frames (up to 256 entries or 1 MiB of payload); each connection has up to 4 frames or
//! 4 MiB in flight, so a batch of small blocks is one frame and one round trip, and a large
//! transfer spreads over several connections.
//!
//! Who sends: the submitting thread itself, when a connection's sending side is free. It takes
//! frames off the queue and writes them with vectored `sendmsg`, waiting for socket space for at
//! most a millisecond at a time and sending at most 4 MiB per submission, so a small request
//! leaves without waking any thread, while `submit` stays short and never waits on a dead peer.
//! What it leaves (a frame half sent, frames beyond the window or budget) is sent by the
//! connection's lane thread (blocking writes). Each connection's receiver thread reads replies
//! (blocking reads) and ends the slices. Because the receiver never sends, it always drains the
//! replies, so a server blocked on its reply always gets unblocked: no deadlock when both socket
//! buffers fill.
//!
//! Failures: a refused entry fails its slice only. A broken connection (reset, bad reply, no
//! progress within the timeout) fails its frames in flight and every slice still queued for the
//! peer, as the Mooncake lanes do (`lane.rs`); the next submission connects again.
//!
//! Lock order: a connection's `tx`, then the link's `state`, then a connection's `inflight`,
//! then `pool`.

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

mod reply;

use super::frame::{self, ENTRY_LEN, ENTRY_OK, ENTRY_REFUSED, Entry, FrameError, HEAD_LEN, Head};
use super::io::{Cursor, Moved, Piece, Reader, send_all, vectored, wait_writable};
use super::lane::{LaneSettings, PeerAddress};
use crate::transport::log_limit::LogLimit;
use crate::transport::{LinkInfo, Opcode, Slice};

/// Most entries in one frame.
const FRAME_ENTRIES: usize = 256;
/// A frame is closed once its payload reaches this (it always holds at least one slice).
const FRAME_BYTES: u64 = 1 << 20;
/// Frames in flight per connection.
const WINDOW_FRAMES: usize = 4;
/// Payload in flight per connection before new frames go elsewhere.
const WINDOW_BYTES: u64 = 4 << 20;
/// Most bytes a submitting thread sends itself per submission.
const INLINE_BYTES: usize = 4 << 20;
/// Longest a submitting thread waits for socket space before leaving the rest to the lane.
const INLINE_STALL: Duration = Duration::from_millis(1);
/// Receive buffer of a connection's receiver.
const READ_BUFFER: usize = 64 << 10;
/// Slice vectors kept for reuse.
const POOL: usize = 64;

/// All connections towards one peer that speaks our framing.
pub struct FramedLink {
    /// The link itself, for the threads it starts.
    me: Weak<FramedLink>,
    addr: PeerAddress,
    settings: LaneSettings,
    state: Mutex<State>,
    /// `state.queue.len()`, readable without the lock.
    queued: AtomicUsize,
    /// Emptied slice vectors of finished frames, so that frames do not allocate.
    pool: Mutex<Vec<Vec<Slice>>>,
    completed: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    warnings: LogLimit,
}

struct State {
    queue: VecDeque<Slice>,
    conns: Vec<Arc<Conn>>,
    /// Lanes connecting.
    starting: usize,
    /// Lane and receiver threads, live or ended (ended ones are joined when a lane starts).
    threads: Vec<JoinHandle<()>>,
    closed: bool,
}

/// One connection: its sending side (`tx`, used by submitting threads and the lane thread) and
/// its frames in flight (ended by the receiver thread).
struct Conn {
    sock: TcpStream,
    tx: Mutex<Tx>,
    /// A frame is partly sent and its sender gave up: the lane thread must finish it.
    tx_pending: AtomicBool,
    /// The lane thread waits here, with the link's `state` lock, for work.
    wake: Condvar,
    inflight: Mutex<Inflight>,
    /// Set under the `state` lock when the connection retires or breaks: no frame starts on it.
    closing: AtomicBool,
}

struct Tx {
    seq: u64,
    /// Head and entry table of the frame being sent.
    table: Vec<u8>,
    /// `table`, then the write payloads.
    pieces: Vec<Piece>,
    cursor: Cursor,
    /// A frame is partly sent.
    sending: bool,
}

#[derive(Default)]
struct Inflight {
    frames: VecDeque<FrameRec>,
    bytes: u64,
    broken: bool,
}

impl Inflight {
    fn window_open(&self) -> bool {
        !self.broken && self.frames.len() < WINDOW_FRAMES && self.bytes < WINDOW_BYTES
    }
}

struct FrameRec {
    seq: u64,
    slices: Vec<Slice>,
    bytes: u64,
}

impl FramedLink {
    pub fn new(addr: PeerAddress, settings: LaneSettings) -> Arc<FramedLink> {
        Arc::new_cyclic(|me| FramedLink {
            me: me.clone(),
            addr,
            settings,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                conns: Vec::new(),
                starting: 0,
                threads: Vec::new(),
                closed: false,
            }),
            queued: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            warnings: LogLimit::new(Duration::from_secs(1)),
        })
    }

    /// Queues `slices` and sends what it can on this thread (see the module documentation).
    pub fn submit(&self, slices: Vec<Slice>) {
        {
            let mut st = self.state.lock();
            if st.closed {
                drop(st);
                self.fail_all(slices);
                return;
            }
            self.queued.fetch_add(slices.len(), Ordering::AcqRel);
            st.queue.extend(slices);
        }
        self.send_inline();
        if self.queued.load(Ordering::Acquire) > 0 {
            let mut st = self.state.lock();
            for c in &st.conns {
                c.wake.notify_one();
            }
            self.maybe_start(&mut st);
        }
    }

    /// Fails queued work, shuts every connection down and joins every thread.
    pub fn close(&self) {
        let (pending, threads) = {
            let mut st = self.state.lock();
            st.closed = true;
            for c in &st.conns {
                c.closing.store(true, Ordering::Release);
                // Abort, do not close: unsent request bytes must not reach the peer later.
                let _ = socket2::SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
                let _ = c.sock.shutdown(Shutdown::Both);
                c.wake.notify_all();
            }
            self.queued.store(0, Ordering::Release);
            (st.queue.drain(..).collect::<Vec<_>>(), std::mem::take(&mut st.threads))
        };
        self.fail_all(pending);
        for t in threads {
            let _ = t.join();
        }
    }

    pub fn info(&self) -> LinkInfo {
        LinkInfo {
            transport: "tcp",
            peer: self.addr.to_string(),
            protocol_version: 2,
            connections: self.state.lock().conns.len(),
            requests_completed: self.completed.load(Ordering::Relaxed),
            requests_failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn fail_all(&self, slices: impl IntoIterator<Item = Slice>) {
        for s in slices {
            self.failed.fetch_add(1, Ordering::Relaxed);
            s.finish(false);
        }
    }

    /// Sends queued frames on connections whose sending side is free, on the calling thread.
    fn send_inline(&self) {
        let mut budget = INLINE_BYTES;
        let mut i = 0;
        while budget > 0 && self.queued.load(Ordering::Acquire) > 0 {
            let Some(conn) = self.state.lock().conns.get(i).cloned() else { return };
            i += 1;
            let Some(mut tx) = conn.tx.try_lock() else { continue };
            let left = loop {
                if !tx.sending && !self.start_frame(&conn, &mut tx) {
                    break Ok(false);
                }
                match self.send_some(&conn, &mut tx, &mut budget) {
                    Ok(true) if budget > 0 => continue,
                    Ok(done) => break Ok(!done),
                    Err(e) => break Err(e),
                }
            };
            match left {
                Ok(false) => {}
                Ok(true) => {
                    conn.tx_pending.store(true, Ordering::Release);
                    drop(tx);
                    let _st = self.state.lock();
                    conn.wake.notify_one();
                }
                Err(e) => {
                    drop(tx);
                    self.abort(&conn, Some(format!("sending a frame: {e}")));
                }
            }
        }
    }

    /// Sends without blocking for more than [`INLINE_STALL`] at a time, within `budget`.
    /// Ok(true): the frame is sent; Ok(false): it is not, and the lane must finish it.
    fn send_some(&self, conn: &Conn, tx: &mut Tx, budget: &mut usize) -> std::io::Result<bool> {
        let Tx { pieces, cursor, .. } = tx;
        while !cursor.done(pieces) {
            if *budget == 0 {
                return Ok(false);
            }
            // SAFETY: `pieces` are the frame's table (in `tx.table`, unchanged while sending)
            // and write payloads, whose local ranges the engine checked against registered
            // regions at submission.
            match unsafe { vectored(&conn.sock, true, pieces, cursor, true)? } {
                Moved::Bytes(n) => *budget = budget.saturating_sub(n),
                Moved::NotReady => {
                    if !wait_writable(&conn.sock, INLINE_STALL) {
                        return Ok(false);
                    }
                }
            }
        }
        tx.sending = false;
        Ok(true)
    }

    /// Takes the next frame's slices off the queue, records the frame in flight and prepares
    /// `tx` to send it. False when nothing is queued, the window is full or the connection is
    /// retiring.
    fn start_frame(&self, conn: &Conn, tx: &mut Tx) -> bool {
        let mut slices = self.pool.lock().pop().unwrap_or_else(|| Vec::with_capacity(FRAME_ENTRIES));
        let mut st = self.state.lock();
        if st.closed || conn.closing.load(Ordering::Acquire) || st.queue.is_empty() {
            drop(st);
            self.recycle(slices);
            return false;
        }
        let mut inflight = conn.inflight.lock();
        if !inflight.window_open() {
            drop((inflight, st));
            self.recycle(slices);
            return false;
        }
        let mut bytes = 0u64;
        while let Some(s) = st.queue.front() {
            if !slices.is_empty() && (slices.len() == FRAME_ENTRIES || bytes + s.len > FRAME_BYTES) {
                break;
            }
            bytes += s.len;
            slices.push(st.queue.pop_front().expect("front exists"));
        }
        self.queued.fetch_sub(slices.len(), Ordering::AcqRel);
        tx.seq += 1;
        tx.table.clear();
        tx.table.resize(HEAD_LEN + slices.len() * ENTRY_LEN, 0);
        Head { magic: frame::REQUEST_MAGIC, count: slices.len() as u32, seq: tx.seq }.encode(&mut tx.table);
        for (s, out) in slices.iter().zip(tx.table[HEAD_LEN..].chunks_exact_mut(ENTRY_LEN)) {
            Entry { addr: s.remote, len: s.len, write: s.opcode == Opcode::Write }.encode(out);
        }
        tx.pieces.clear();
        tx.pieces.push(Piece { ptr: tx.table.as_ptr() as usize, len: tx.table.len() });
        tx.pieces.extend(
            slices.iter().filter(|s| s.opcode == Opcode::Write).map(|s| Piece { ptr: s.local, len: s.len as usize }),
        );
        tx.cursor = Cursor::default();
        tx.sending = true;
        inflight.bytes += bytes;
        inflight.frames.push_back(FrameRec { seq: tx.seq, slices, bytes });
        drop(inflight);
        self.maybe_start(&mut st);
        true
    }

    fn recycle(&self, mut v: Vec<Slice>) {
        v.clear();
        let mut pool = self.pool.lock();
        if pool.len() < POOL {
            pool.push(v);
        }
    }

    /// Opens one more connection when work waits and every open one has frames in flight.
    fn maybe_start(&self, st: &mut State) {
        if st.closed || st.queue.is_empty() || st.starting > 0 {
            return;
        }
        let open = st.conns.len();
        if open >= self.settings.lanes_per_peer.max(1) {
            return;
        }
        if open > 0 && st.conns.iter().any(|c| c.inflight.lock().frames.is_empty()) {
            return;
        }
        let ended: Vec<JoinHandle<()>> = {
            let (done, running) = std::mem::take(&mut st.threads).into_iter().partition(|h| h.is_finished());
            st.threads = running;
            done
        };
        ended.into_iter().for_each(|h| drop(h.join()));
        let Some(link) = self.me.upgrade() else { return };
        match std::thread::Builder::new().name("mc-tcp-frame".into()).spawn(move || link.run_lane()) {
            Ok(h) => {
                st.threads.push(h);
                st.starting += 1;
            }
            Err(e) => tracing::warn!(peer = %self.addr, "cannot start a TCP lane: {e}"),
        }
    }

    /// A lane thread: connects, starts the receiver, then sends what submitting threads left.
    fn run_lane(self: Arc<Self>) {
        let conn = match self.connect() {
            Ok(sock) => Arc::new(Conn {
                sock,
                tx: Mutex::new(Tx {
                    seq: 0,
                    table: Vec::new(),
                    pieces: Vec::new(),
                    cursor: Cursor::default(),
                    sending: false,
                }),
                tx_pending: AtomicBool::new(false),
                wake: Condvar::new(),
                inflight: Mutex::new(Inflight::default()),
                closing: AtomicBool::new(false),
            }),
            Err(why) => {
                let queued = {
                    let mut st = self.state.lock();
                    st.starting -= 1;
                    // With no connection left to carry it, the queued work fails now.
                    if st.conns.is_empty() {
                        self.queued.store(0, Ordering::Release);
                        st.queue.drain(..).collect()
                    } else {
                        Vec::new()
                    }
                };
                self.warn_failed(&why, queued.len());
                self.fail_all(queued);
                return;
            }
        };
        {
            let mut st = self.state.lock();
            st.starting -= 1;
            if st.closed {
                return;
            }
            let link = self.clone();
            let c = conn.clone();
            match std::thread::Builder::new().name("mc-tcp-reply".into()).spawn(move || link.run_receiver(c)) {
                Ok(h) => st.threads.push(h),
                Err(e) => {
                    tracing::warn!(peer = %self.addr, "cannot start a TCP reply thread: {e}");
                    return;
                }
            }
            st.conns.push(conn.clone());
            self.maybe_start(&mut st);
        }
        self.run_sender(&conn);
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let addrs = (self.addr.host.as_str(), self.addr.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.addr))?;
        let mut last = std::io::Error::other("no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.settings.connect_timeout) {
                Ok(s) => {
                    super::tune_data_socket(&s, self.settings.io_timeout)
                        .and_then(|()| send_all(&s, &frame::hello(frame::FRAMING_VERSION)))
                        .map_err(|e| format!("cannot set up connection to {}: {e}", self.addr))?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(format!("cannot connect to {}: {last}", self.addr))
    }

    /// Sends what submitting threads left on `conn` (blocking writes), until the connection
    /// retires (idle for `idle_exit`), breaks, or the link closes.
    fn run_sender(&self, conn: &Arc<Conn>) {
        let idle_exit = if self.settings.keep_connections { self.settings.idle_exit } else { Duration::ZERO };
        loop {
            {
                let mut st = self.state.lock();
                loop {
                    if st.closed || conn.closing.load(Ordering::Acquire) {
                        return;
                    }
                    let idle = conn.inflight.lock().frames.is_empty();
                    if conn.tx_pending.load(Ordering::Acquire)
                        || (!st.queue.is_empty() && conn.inflight.lock().window_open())
                    {
                        break;
                    }
                    let wait = if idle { idle_exit } else { self.settings.io_timeout };
                    let timed_out = wait.is_zero() || conn.wake.wait_for(&mut st, wait).timed_out();
                    if timed_out
                        && conn.inflight.lock().frames.is_empty()
                        && !conn.tx_pending.load(Ordering::Acquire)
                        && st.queue.is_empty()
                    {
                        // Idle: retire. Nothing can start on it once `closing` is set (under
                        // this lock, which `start_frame` takes).
                        conn.closing.store(true, Ordering::Release);
                        st.conns.retain(|c| !Arc::ptr_eq(c, conn));
                        drop(st);
                        let _ = conn.sock.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
            let mut tx = conn.tx.lock();
            conn.tx_pending.store(false, Ordering::Release);
            loop {
                if !tx.sending && !self.start_frame(conn, &mut tx) {
                    break;
                }
                let Tx { pieces, cursor, .. } = &mut *tx;
                let mut sent = Ok(());
                while sent.is_ok() && !cursor.done(pieces) {
                    // SAFETY: as in `send_some`: the frame's table and registered local ranges.
                    sent = unsafe { vectored(&conn.sock, true, pieces, cursor, false) }.map(drop);
                }
                if let Err(e) = sent {
                    drop(tx);
                    self.abort(conn, Some(format!("sending a frame: {e}")));
                    return;
                }
                tx.sending = false;
            }
        }
    }

    /// Ends a connection: fails its frames in flight; with `why` (a broken link, not a retiring
    /// or closing one) also resets it and fails the peer's queued work.
    fn abort(&self, conn: &Conn, why: Option<String>) {
        let frames = {
            let mut inflight = conn.inflight.lock();
            if inflight.broken && inflight.frames.is_empty() {
                return;
            }
            inflight.broken = true;
            inflight.bytes = 0;
            std::mem::take(&mut inflight.frames)
        };
        if why.is_some() {
            // Reset, do not close: the kernel must drop what it has not sent yet.
            let _ = socket2::SockRef::from(&conn.sock).set_linger(Some(Duration::ZERO));
        }
        let _ = conn.sock.shutdown(Shutdown::Both);
        let queued: Vec<Slice> = {
            let mut st = self.state.lock();
            conn.closing.store(true, Ordering::Release);
            st.conns.retain(|c| !std::ptr::eq(&**c, conn));
            conn.wake.notify_all();
            if why.is_some() {
                self.queued.store(0, Ordering::Release);
                st.queue.drain(..).collect()
            } else {
                // Work queued meanwhile goes on another connection (a new one if need be).
                self.maybe_start(&mut st);
                Vec::new()
            }
        };
        let in_flight: usize = frames.iter().map(|f| f.slices.len()).sum();
        match why {
            Some(why) => self.warn_failed(&why, in_flight + queued.len()),
            None if in_flight > 0 => self.warn_failed("connection ended with requests in flight", in_flight),
            None => {}
        }
        for f in frames {
            self.fail_all(f.slices);
        }
        self.fail_all(queued);
    }

    fn warn_failed(&self, why: &str, failed: usize) {
        if let Some(suppressed) = self.warnings.allow() {
            tracing::warn!(peer = %self.addr, failed_with_it = failed, similar_since_last = suppressed, "tcp transfer failed: {why}");
        }
    }
}
