//! Connection accounting for the servers that take connections from anyone who can reach their
//! port: the handshake server, the HTTP metadata server, and (for the master) the
//! master's RPC and admin HTTP ports.
//!
//! Every accepted connection is entered in a [`ConnTable`] with a [`Phase`] and the time the
//! phase began. The table has a cap: a connection accepted at the cap first sheds one open
//! connection, the one that costs its client least to lose (the lowest `Phase::rank`, then
//! the oldest), and a connection in [`Phase::Protected`] is never shed (the new one is refused
//! instead). Deadlines are enforced by [`ConnTable::sweep`]: a connection still [`Phase::Fresh`]
//! or in [`Phase::Request`] longer than the request deadline, or [`Phase::Idle`] longer than the
//! idle deadline, is shut down. No one waits for a slot: accepting never stops, so idle
//! sockets, however many, cannot keep a legitimate client out; they can only be shed.
//!
//! Shedding shuts the socket down (both directions) through its descriptor, under the table's
//! lock; a connection leaves the table (under the same lock) before its descriptor is closed,
//! which [`Tracked`] guarantees by owning the stream. The task serving it then meets end of
//! file or a failed write and ends. Each kind of event is logged at most once per
//! [`LOG_INTERVAL`] with the number left out, never once per connection.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often each kind of warning of a [`ConnTable`] may be logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where a connection stands, which decides which deadline applies and how readily it is shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Accepted; not a byte received yet. Shed first.
    Fresh = 0,
    /// Answered, waiting for the next request (an HTTP keep-alive connection, a handshake
    /// client that has its reply).
    Idle = 1,
    /// Bytes of a request are arriving; not answered yet.
    Request = 2,
    /// A request is being answered, or the client identified itself and holds its connection
    /// on purpose (a store client's connection to the master). Never shed, no deadline.
    Protected = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Request,
            _ => Phase::Protected,
        }
    }

    /// The order of shedding: lower first; `None` is never shed.
    fn rank(self) -> Option<u8> {
        match self {
            Phase::Protected => None,
            p => Some(p as u8),
        }
    }
}

/// A cap and deadlines; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once; at the cap, one is shed for each new one.
    pub max_connections: usize,
    /// A connection [`Phase::Fresh`] or in [`Phase::Request`] this long is closed.
    pub request_timeout: Option<Duration>,
    /// A connection [`Phase::Idle`] (or [`Phase::Fresh`], when shorter) this long is closed.
    pub idle_timeout: Option<Duration>,
}

/// The value of the environment variable `name` as a count of at least 1, else `default`
/// (an unparsable value is logged and ignored).
pub fn env_cap(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                tracing::warn!("{name}={v:?} is not a positive count; using {default}");
                default
            }
        },
        Err(_) => default,
    }
}

/// The connections of one server; see the module documentation.
pub struct ConnTable {
    /// The server's name in log lines.
    name: &'static str,
    limits: ConnLimits,
    open: Mutex<Registry>,
    epoch: Instant,
    shed_log: RateLimited,
    refuse_log: RateLimited,
    deadline_log: RateLimited,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<u64, Entry>,
    next_id: u64,
    closed: bool,
}

struct Entry {
    fd: RawFd,
    state: Arc<ConnState>,
}

/// A connection's phase and when it began (milliseconds since the table's epoch).
#[derive(Debug)]
pub struct ConnState {
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl ConnTable {
    pub fn new(name: &'static str, limits: ConnLimits) -> ConnTable {
        ConnTable {
            name,
            limits: ConnLimits { max_connections: limits.max_connections.max(1), ..limits },
            open: Mutex::default(),
            epoch: Instant::now(),
            shed_log: RateLimited::default(),
            refuse_log: RateLimited::default(),
            deadline_log: RateLimited::default(),
        }
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The number of connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enters `stream` (just accepted) as [`Phase::Fresh`], shedding one connection first when
    /// the table is at its cap. Fails (and the caller drops `stream`, closing it) only when
    /// every open connection is [`Phase::Protected`].
    pub fn admit<S: AsRawFd>(self: &Arc<Self>, stream: S) -> Result<Tracked<S>, S> {
        let state =
            Arc::new(ConnState { phase: AtomicU8::new(Phase::Fresh as u8), since_ms: AtomicU64::new(self.now_ms()) });
        let mut reg = self.open.lock();
        if reg.closed {
            shut_down(stream.as_raw_fd());
        }
        if reg.conns.len() >= self.limits.max_connections {
            if self.shed_one(&mut reg).is_none() {
                drop(reg);
                if let Some(left_out) = self.refuse_log.allow() {
                    tracing::warn!(
                        "{}: {} connections open (the cap), none of them idle: refusing new ones \
                         ({left_out} more refused since the last line)",
                        self.name,
                        self.limits.max_connections
                    );
                }
                return Err(stream);
            }
            if let Some(left_out) = self.shed_log.allow() {
                tracing::warn!(
                    "{}: {} connections open (the cap): closing the oldest idle ones to make room \
                     ({left_out} more closed since the last line)",
                    self.name,
                    self.limits.max_connections
                );
            }
        }
        let id = reg.next_id;
        reg.next_id += 1;
        reg.conns.insert(id, Entry { fd: stream.as_raw_fd(), state: Arc::clone(&state) });
        drop(reg);
        Ok(Tracked { stream, id, state, table: Arc::clone(self) })
    }

    /// Shuts down the one connection to shed first, if any may be; returns its id.
    fn shed_one(&self, reg: &mut Registry) -> Option<u64> {
        let (&id, _) = reg
            .conns
            .iter()
            .filter_map(|(id, e)| {
                let rank = Phase::from_u8(e.state.phase.load(Ordering::Relaxed)).rank()?;
                Some((id, (rank, e.state.since_ms.load(Ordering::Relaxed))))
            })
            .min_by_key(|(_, key)| *key)?;
        let entry = reg.conns.remove(&id)?;
        shut_down(entry.fd);
        Some(id)
    }

    /// Sheds one connection (when the process ran out of descriptors, so that accepting can go
    /// on); returns whether one was.
    pub fn shed_for_descriptors(&self) -> bool {
        let shed = self.shed_one(&mut self.open.lock()).is_some();
        if let Some(left_out) = self.shed_log.allow() {
            tracing::warn!(
                "{}: out of file descriptors with {} connections open: closing the oldest idle \
                 ones ({left_out} more since the last line)",
                self.name,
                self.len()
            );
        }
        shed
    }

    /// Shuts down the connections past their deadline; returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.now_ms();
        let ms = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (request, idle) = (ms(self.limits.request_timeout), ms(self.limits.idle_timeout));
        let mut reg = self.open.lock();
        let expired: Vec<u64> = reg
            .conns
            .iter()
            .filter(|(_, e)| {
                let age = now.saturating_sub(e.state.since_ms.load(Ordering::Relaxed));
                let limit = match Phase::from_u8(e.state.phase.load(Ordering::Relaxed)) {
                    // Not a byte yet: it is idle as much as it is late.
                    Phase::Fresh => [request, idle].into_iter().flatten().min(),
                    Phase::Request => request,
                    Phase::Idle => idle,
                    Phase::Protected => None,
                };
                limit.is_some_and(|l| age >= l)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in &expired {
            if let Some(e) = reg.conns.remove(id) {
                shut_down(e.fd);
            }
        }
        drop(reg);
        if !expired.is_empty() {
            tracing::debug!("{}: closed {} connections past their deadline", self.name, expired.len());
            if expired.len() >= 64
                && let Some(left_out) = self.deadline_log.allow()
            {
                tracing::info!(
                    "{}: closed {} idle or slow connections at once ({left_out} such sweeps not logged)",
                    self.name,
                    expired.len()
                );
            }
        }
        expired.len()
    }

    /// How often [`sweep`](Self::sweep) should run for these deadlines.
    pub fn sweep_period(&self) -> Duration {
        let shortest = [self.limits.request_timeout, self.limits.idle_timeout].into_iter().flatten().min();
        shortest.map_or(Duration::from_secs(1), |d| (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)))
    }

    /// Shuts down every open connection and every one admitted from now on.
    pub fn shut_down_all(&self) {
        let mut reg = self.open.lock();
        reg.closed = true;
        for e in reg.conns.values() {
            shut_down(e.fd);
        }
    }
}

/// Shuts a socket down in both directions (its descriptor stays open, owned by its stream).
fn shut_down(fd: RawFd) {
    // SAFETY: callers hold the table's lock, and a connection's descriptor is open for as long
    // as its entry is in the table: `Tracked` removes the entry (under that lock) in its `Drop`,
    // which runs before its stream, the descriptor's owner, is dropped. The borrow ends here.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&fd).shutdown(Shutdown::Both);
}

/// A stream entered in a [`ConnTable`]; leaves it when dropped. Reading and writing through
/// it (the async traits) moves its phase as an HTTP connection's moves, when the table's
/// owner asks for that with `Tracked::auto_phase`; other servers set phases themselves.
pub struct Tracked<S> {
    stream: S,
    id: u64,
    state: Arc<ConnState>,
    table: Arc<ConnTable>,
}

impl<S> Tracked<S> {
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Sets the phase (and restarts its clock).
    pub fn set_phase(&self, phase: Phase) {
        self.state.since_ms.store(self.table.now_ms(), Ordering::Relaxed);
        self.state.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.state.phase.load(Ordering::Relaxed))
    }

    /// HTTP's phases from the bytes: bytes received while fresh or idle start a request; bytes
    /// written (the answer) make the connection idle.
    fn auto_phase(&self, read: bool) {
        let phase = self.phase();
        if read {
            if matches!(phase, Phase::Fresh | Phase::Idle) {
                self.set_phase(Phase::Request);
            }
        } else if phase != Phase::Protected {
            self.set_phase(Phase::Idle);
        }
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.table.open.lock().conns.remove(&self.id);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.auto_phase(true);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.auto_phase(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.auto_phase(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// At most one line per [`LOG_INTERVAL`]; counts what it leaves out (usable in a `static`).
#[derive(Default)]
pub struct LogOnce {
    state: Mutex<(Option<Instant>, u64)>,
}

type RateLimited = LogOnce;

impl LogOnce {
    pub const fn new() -> LogOnce {
        LogOnce { state: Mutex::new((None, 0)) }
    }

    /// `Some(left_out)` when a line may be logged now, `None` when this one is to be counted.
    pub fn allow(&self) -> Option<u64> {
        let mut st = self.state.lock();
        let now = Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < LOG_INTERVAL => {
                st.1 += 1;
                None
            }
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

/// Whether an accept error means the process (or system) is out of descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn closed(c: &mut TcpStream) -> bool {
        use std::io::Read;
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        matches!(c.read(&mut [0u8; 1]), Ok(0) | Err(_))
    }

    #[test]
    fn at_the_cap_the_oldest_of_the_lowest_phase_is_shed_and_protected_ones_never() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let limits = ConnLimits { max_connections: 3, request_timeout: None, idle_timeout: None };
        let t = Arc::new(ConnTable::new("test", limits));
        let (mut c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let (_c3, s3) = pair(&l);
        let t1 = t.admit(s1).ok().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let t2 = t.admit(s2).ok().unwrap();
        t2.set_phase(Phase::Protected);
        let t3 = t.admit(s3).ok().unwrap();
        t3.set_phase(Phase::Request);
        let (_c4, s4) = pair(&l);
        let t4 = t.admit(s4).ok().unwrap();
        assert!(closed(&mut c1), "the fresh connection was not shed");
        assert_eq!(t.len(), 3);
        drop(t1);
        t4.set_phase(Phase::Protected);
        let (mut c5, s5) = pair(&l);
        let _t5 = t.admit(s5).ok().unwrap();
        assert_eq!(t.len(), 3, "the request in progress was shed for the new one");
        assert_eq!(t3.phase(), Phase::Request);
        _t5.set_phase(Phase::Protected);
        let (_c6, s6) = pair(&l);
        assert!(t.admit(s6).is_err(), "all protected: the new one is refused");
        c5.set_nonblocking(true).unwrap();
        use std::io::Read;
        let r = c5.read(&mut [0u8; 1]);
        assert!(matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock), "a protected one was shed: {r:?}");
    }

    #[test]
    fn sweep_closes_fresh_and_idle_connections_past_their_deadlines() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let limits = ConnLimits {
            max_connections: 10,
            request_timeout: Some(Duration::from_millis(100)),
            idle_timeout: Some(Duration::from_millis(300)),
        };
        let t = Arc::new(ConnTable::new("test", limits));
        let (mut c1, s1) = pair(&l);
        let (mut c2, s2) = pair(&l);
        let (_c3, s3) = pair(&l);
        let _t1 = t.admit(s1).ok().unwrap();
        let t2 = t.admit(s2).ok().unwrap();
        t2.set_phase(Phase::Idle);
        let t3 = t.admit(s3).ok().unwrap();
        t3.set_phase(Phase::Protected);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(t.sweep(), 1);
        assert!(closed(&mut c1));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(t.sweep(), 1);
        assert!(closed(&mut c2));
        assert_eq!(t.len(), 1);
    }
}
