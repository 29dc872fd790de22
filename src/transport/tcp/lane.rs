//! The initiator side: per peer, a few connections ("lanes") that take slices from one queue.
//!
//! Each lane owns one blocking connection and carries one request at a time, as Mooncake's
//! lanes do; requests of one batch spread over the lanes. A refused request fails only its own
//! slice. A broken link (reset, refused connect, no progress within the timeout) also fails
//! every slice still queued for that peer at once, so a dead peer's tasks end FAILED in bounded
//! time instead of each waiting for its own timeout.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::io::{self, recv_exact_raw, recv_frame, send_all, send_head_and_raw, try_recv_frame_now};
use super::wire::{self, Header, Status};
use crate::transport::log_limit::LogLimit;
use crate::transport::{LinkInfo, Opcode, Slice};

/// A peer's data endpoint and the protocol version used towards it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    pub host: String,
    pub port: u16,
    /// Acknowledged framing: the peer's descriptor says `tcp_proto_version >= 2`.
    pub v2: bool,
    /// Our framing version the peer's descriptor offers (`libmooncake.tcp_framing`); 0: a
    /// Mooncake peer (or one of ours with it switched off), which gets Mooncake's protocol.
    pub framing: u32,
}

impl std::fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", crate::metadata::naming::wrap_ipv6(&self.host), self.port)
    }
}

/// Limits every lane works within.
#[derive(Debug, Clone, Copy)]
pub struct LaneSettings {
    pub lanes_per_peer: usize,
    pub keep_connections: bool,
    pub connect_timeout: Duration,
    /// `SO_RCVTIMEO`/`SO_SNDTIMEO`: a call that moves nothing for this long fails.
    pub io_timeout: Duration,
    /// A lane with nothing to do for this long ends (its connection closes); a busy peer gets
    /// new lanes on demand, so a process that once talked to many peers keeps no idle threads.
    pub idle_exit: Duration,
}

/// Default of [`LaneSettings::idle_exit`].
pub const LANE_IDLE_EXIT: Duration = Duration::from_secs(60);

struct LinkState {
    queue: VecDeque<Slice>,
    /// Threads of lanes, live or ended (ended ones are joined when the next lane starts).
    lanes: Vec<JoinHandle<()>>,
    /// Lanes that have not ended.
    live: usize,
    next_lane_id: usize,
    /// Sockets of lanes, to shut them down on close.
    sockets: HashMap<usize, TcpStream>,
    idle: usize,
    closed: bool,
}

/// All lanes towards one peer.
pub struct PeerLink {
    addr: PeerAddress,
    settings: LaneSettings,
    state: Mutex<LinkState>,
    wake: Condvar,
    completed: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    /// A dead peer fails slices at line rate: one warning per second is enough.
    warnings: LogLimit,
}

enum SliceError {
    /// The target refused the range; the connection is closed by the target.
    Refused,
    /// The link is broken; queued work for this peer fails too.
    Link(String),
}

impl PeerLink {
    pub fn new(addr: PeerAddress, settings: LaneSettings) -> PeerLink {
        PeerLink {
            addr,
            settings,
            state: Mutex::new(LinkState {
                queue: VecDeque::new(),
                lanes: Vec::new(),
                live: 0,
                next_lane_id: 0,
                sockets: HashMap::new(),
                idle: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            warnings: LogLimit::new(Duration::from_secs(1)),
        }
    }

    /// Queues slices, starting lanes (up to the limit) when the idle ones are too few.
    pub fn submit(self: &Arc<Self>, slices: Vec<Slice>) {
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            slices.into_iter().for_each(|s| s.finish(false));
            return;
        }
        let added = slices.len();
        st.queue.extend(slices);
        // Start lanes while more slices wait than idle lanes could take.
        let mut starting = 0;
        while st.live < self.settings.lanes_per_peer && st.queue.len() > st.idle + starting {
            let ended: Vec<JoinHandle<()>> = {
                let (done, running) = std::mem::take(&mut st.lanes).into_iter().partition(|h| h.is_finished());
                st.lanes = running;
                done
            };
            ended.into_iter().for_each(|h| drop(h.join()));
            let id = st.next_lane_id;
            let link = self.clone();
            match std::thread::Builder::new().name("mc-tcp-lane".into()).spawn(move || link.run_lane(id)) {
                Ok(handle) => {
                    st.lanes.push(handle);
                    st.live += 1;
                    st.next_lane_id += 1;
                }
                Err(e) => {
                    tracing::warn!(peer = %self.addr, "cannot start a TCP lane: {e}");
                    break;
                }
            }
            starting += 1;
        }
        if added >= st.idle {
            self.wake.notify_all();
        } else {
            for _ in 0..added {
                self.wake.notify_one();
            }
        }
    }

    /// Fails queued work, shuts every lane's socket down and joins the lanes.
    pub fn close(&self) {
        let (pending, lanes) = {
            let mut st = self.state.lock();
            st.closed = true;
            for s in st.sockets.values() {
                // Abort, do not close: unsent request bytes must not reach the peer later.
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
                let _ = s.shutdown(Shutdown::Both);
            }
            self.wake.notify_all();
            (st.queue.drain(..).collect::<Vec<_>>(), std::mem::take(&mut st.lanes))
        };
        self.fail_all(pending);
        for lane in lanes {
            let _ = lane.join();
        }
    }

    pub fn info(&self) -> LinkInfo {
        LinkInfo {
            transport: "tcp",
            peer: self.addr.to_string(),
            protocol_version: if self.addr.v2 { 2 } else { 1 },
            connections: self.state.lock().sockets.len(),
            requests_completed: self.completed.load(Ordering::Relaxed),
            requests_failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn fail_all(&self, slices: Vec<Slice>) {
        self.failed.fetch_add(slices.len() as u64, Ordering::Relaxed);
        slices.into_iter().for_each(|s| s.finish(false));
    }

    fn next_slice(&self) -> Option<Slice> {
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return None;
            }
            if let Some(s) = st.queue.pop_front() {
                return Some(s);
            }
            st.idle += 1;
            let idle_too_long = self.wake.wait_for(&mut st, self.settings.idle_exit).timed_out();
            st.idle -= 1;
            if idle_too_long && st.queue.is_empty() && !st.closed {
                st.live -= 1;
                return None;
            }
        }
    }

    fn run_lane(&self, id: usize) {
        let mut conn: Option<TcpStream> = None;
        while let Some(slice) = self.next_slice() {
            let result = self.run_slice(id, &mut conn, &slice);
            match result {
                Ok(()) => {
                    self.completed.fetch_add(1, Ordering::Relaxed);
                    self.bytes.fetch_add(slice.len, Ordering::Relaxed);
                    slice.finish(true);
                }
                Err(e) => {
                    self.abort_connection(id, &mut conn);
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    slice.finish(false);
                    if let SliceError::Link(why) = e {
                        let queued: Vec<Slice> = self.state.lock().queue.drain(..).collect();
                        if let Some(suppressed) = self.warnings.allow() {
                            tracing::warn!(
                                peer = %self.addr,
                                failed_with_it = queued.len(),
                                similar_since_last = suppressed,
                                "tcp transfer failed: {why}"
                            );
                        }
                        self.fail_all(queued);
                    }
                }
            }
            if !self.settings.keep_connections {
                self.drop_connection(id, &mut conn);
            }
        }
        self.drop_connection(id, &mut conn);
    }

    fn drop_connection(&self, id: usize, conn: &mut Option<TcpStream>) {
        if conn.take().is_some() {
            self.state.lock().sockets.remove(&id);
        }
    }

    /// Closes a connection whose request failed with a reset (`SO_LINGER` 0): the kernel
    /// discards what it has not sent yet. A normal close would keep sending the rest of the
    /// request after the task was reported FAILED, and a link that comes back would deliver it
    /// into the target's memory.
    fn abort_connection(&self, id: usize, conn: &mut Option<TcpStream>) {
        if let Some(s) = conn.as_ref() {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        self.drop_connection(id, conn);
    }

    fn connect(&self, id: usize) -> Result<TcpStream, SliceError> {
        let link_err = |what: &str, e: std::io::Error| SliceError::Link(format!("{what} {}: {e}", self.addr));
        let addrs =
            (self.addr.host.as_str(), self.addr.port).to_socket_addrs().map_err(|e| link_err("cannot resolve", e))?;
        let mut last = std::io::Error::other("no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.settings.connect_timeout) {
                Ok(s) => {
                    let setup = (|| {
                        super::tune_data_socket(&s, self.settings.io_timeout)?;
                        s.try_clone()
                    })();
                    let control = setup.map_err(|e| link_err("cannot set up connection to", e))?;
                    let mut st = self.state.lock();
                    if st.closed {
                        return Err(SliceError::Link("engine is shutting down".into()));
                    }
                    st.sockets.insert(id, control);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(link_err("cannot connect to", last))
    }

    fn run_slice(&self, id: usize, conn: &mut Option<TcpStream>, s: &Slice) -> Result<(), SliceError> {
        // A pooled connection the target closed meanwhile (its idle deadline, or shed at its
        // connection cap) is replaced before it carries a request, instead of failing it.
        if conn.as_ref().is_some_and(|c| !io::still_open(c)) {
            tracing::debug!(peer = %self.addr, "tcp target closed a pooled connection; reconnecting");
            self.drop_connection(id, conn);
        }
        if conn.is_none() {
            *conn = Some(self.connect(id)?);
        }
        let stream = conn.as_ref().expect("connected above");
        let v2 = self.addr.v2;
        let head = Header { size: s.len, addr: s.remote, write: s.opcode == Opcode::Write, v2 }.encode();
        let link = |what: &str, e: std::io::Error| SliceError::Link(format!("{what}: {e}"));
        match s.opcode {
            Opcode::Write => {
                // SAFETY: the engine checked `[local, local + len)` against a registered region
                // at submission.
                let sent = unsafe { send_head_and_raw(stream, &head, s.local, s.len) };
                if let Err(e) = sent {
                    // A v2 target refuses before reading the body and closes: its rejected
                    // frame may be waiting even though our send failed.
                    if v2 && try_recv_frame_now(stream).map(wire::parse_status) == Some(Status::Rejected) {
                        return Err(self.refused(s));
                    }
                    return Err(link("sending write", e));
                }
                if v2 {
                    self.expect_ok(stream, s)?;
                }
            }
            Opcode::Read => {
                send_all(stream, &head).map_err(|e| link("sending read", e))?;
                if v2 {
                    self.expect_ok(stream, s)?;
                }
                // SAFETY: as above, the local range is registered and valid for writes.
                unsafe { recv_exact_raw(stream, s.local, s.len) }.map_err(|e| link("receiving read data", e))?;
            }
        }
        Ok(())
    }

    fn expect_ok(&self, stream: &TcpStream, s: &Slice) -> Result<(), SliceError> {
        let mut frame = [0u8; 8];
        match recv_frame(stream, &mut frame) {
            Ok(true) => {}
            Ok(false) => return Err(SliceError::Link("peer closed before the status frame".into())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(SliceError::Link(format!("no status frame within {:?}", self.settings.io_timeout)));
            }
            Err(e) => return Err(SliceError::Link(format!("receiving status: {e}"))),
        }
        match wire::parse_status(frame) {
            Status::Ok => Ok(()),
            Status::Rejected => Err(self.refused(s)),
            Status::Other(code) => Err(SliceError::Link(format!("unknown status code {code}"))),
            Status::NotV2 => Err(SliceError::Link("peer does not speak TCP protocol v2".into())),
        }
    }

    fn refused(&self, s: &Slice) -> SliceError {
        if let Some(suppressed) = self.warnings.allow() {
            tracing::warn!(
                peer = %self.addr,
                addr = format_args!("{:#x}", s.remote),
                len = s.len,
                similar_since_last = suppressed,
                "tcp transfer refused by the target: range is not inside one registered region"
            );
        }
        SliceError::Refused
    }
}
