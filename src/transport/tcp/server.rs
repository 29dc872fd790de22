//! The TCP data server: answers Mooncake's data protocol on the engine's data port.
//!
//! Event-driven: a bounded number of worker threads ([`ServerLimits::threads`],
//! `MC_TCP_SERVER_THREADS`, default the core count up to 16), each running a single-threaded
//! tokio runtime of its own, serve any number of connections, one task per connection
//! (`conn.rs`), dealt round-robin by the acceptor (a task of the first worker). Connections carry requests
//! strictly one after another (`wire.md` §4.3); one that opens with our hello speaks our framing
//! from then on (`framed_server.rs`). Payloads move with raw non-blocking `recvmsg`/`sendmsg`
//! straight between the socket and registered memory whenever the socket is ready, so nothing
//! is copied in user space, and memory that faults (unmapped or protected after registration)
//! fails the request with `EFAULT` instead of the process.
//!
//! Every request is checked against the registered, remotely accessible regions before a byte
//! moves; a refused request gets the v2 rejected frame (v1: nothing) and its connection is
//! closed, while other connections go on.
//!
//! Peers cannot hold the server:
//! - **Idle deadlines**: a connection that has started no request within
//!   [`ServerLimits::first_request_timeout`] of its accept (`MC_TCP_SERVER_FIRST_REQUEST_TIMEOUT_SEC`,
//!   default 60 s) is closed. A connection that has carried requests is closed after
//!   [`ServerLimits::idle_timeout`] of silence only when `MC_TCP_SERVER_IDLE_TIMEOUT_SEC` sets
//!   one: Mooncake's initiators reuse pooled connections unchecked, so closing theirs would fail
//!   their next transfer (ours reconnect). The connection cap bounds them instead.
//! - **Header deadline**: a request header (or a frame's head and entry table) whose first byte
//!   arrived must be complete within the progress timeout (`MC_TCP_PROGRESS_TIMEOUT_SEC`).
//! - **Progress deadline**: a payload that moves no byte for the progress timeout is cut off.
//! - **Unregistering**: a connection holding a lease on a region being unregistered gets the
//!   progress timeout as a hard deadline, then is closed and drops the lease, so
//!   `unregisterLocalMemory` returns within that bound even while a peer trickles a write.
//! - **Connection cap**: at [`ServerLimits::max_connections`] open connections
//!   (`MC_TCP_SERVER_MAX_CONNECTIONS`, default 16384) the oldest idle connection is closed to
//!   admit a new one (logged at most once per 10 s); only when none is idle is the new one
//!   refused.
//!
//! An idle connection holds its task, its socket and a few hundred bytes: buffers are allocated
//! when a frame's bytes arrive and released when the connection goes idle.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::transport::TargetMemory;
use crate::transport::log_limit::LogLimit;

/// Default of [`ServerLimits::max_connections`]: far above any legitimate fan-in (hundreds of
/// peers at 4 lanes each), low enough that the sockets' kernel memory stays bounded.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// Default of [`ServerLimits::first_request_timeout`]: initiators (ours and Mooncake's) send
/// their first header right after connecting, so a minute of silence is no initiator.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most worker threads the default picks (a server moving bytes with system calls fills a NIC
/// long before 16 cores).
pub const DEFAULT_MAX_THREADS: usize = 16;

/// What the data server may use, read from the environment at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Worker threads serving every connection (`MC_TCP_SERVER_THREADS`, 1..=256).
    pub threads: usize,
    /// Open connections at most (`MC_TCP_SERVER_MAX_CONNECTIONS`, 1..=1048576).
    pub max_connections: usize,
    /// A connection that has not started a request for this long since accept is closed
    /// (`MC_TCP_SERVER_FIRST_REQUEST_TIMEOUT_SEC`, 1..=86400; default 60 s).
    pub first_request_timeout: Duration,
    /// A connection that has carried requests and then starts none for this long is closed
    /// (`MC_TCP_SERVER_IDLE_TIMEOUT_SEC`, 1..=86400). Unset by default: Mooncake's initiators
    /// reuse a pooled connection without checking it first, so closing one that a Mooncake peer
    /// left idle would fail that peer's next transfer. Such connections cost a socket and a
    /// few hundred bytes each; the connection cap sheds the oldest idle ones when it is reached.
    pub idle_timeout: Option<Duration>,
}

impl ServerLimits {
    pub fn from_env() -> ServerLimits {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let default_threads = cores.clamp(1, DEFAULT_MAX_THREADS) as u64;
        use crate::config::env_u64;
        ServerLimits {
            threads: env_u64("MC_TCP_SERVER_THREADS", default_threads, 1, 256) as usize,
            max_connections: env_u64("MC_TCP_SERVER_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS as u64, 1, 1 << 20)
                as usize,
            first_request_timeout: Duration::from_secs(env_u64(
                "MC_TCP_SERVER_FIRST_REQUEST_TIMEOUT_SEC",
                DEFAULT_FIRST_REQUEST_TIMEOUT.as_secs(),
                1,
                86_400,
            )),
            idle_timeout: std::env::var_os("MC_TCP_SERVER_IDLE_TIMEOUT_SEC")
                .map(|_| Duration::from_secs(env_u64("MC_TCP_SERVER_IDLE_TIMEOUT_SEC", 600, 1, 86_400))),
        }
    }
}

/// The server's view of one connection, for the cap: when it went idle, and a way to close it.
pub(super) struct ConnCtl {
    /// Milliseconds since the server started at which the connection went idle; `u64::MAX`
    /// while a request is in progress.
    idle_since: AtomicU64,
    /// Set (and `shed` notified) when the server closes this idle connection for a new one.
    pub(super) shed_flag: AtomicBool,
    pub(super) shed: tokio::sync::Notify,
    /// Set once the connection has started a request.
    spoke: AtomicBool,
}

const BUSY: u64 = u64::MAX;

impl ConnCtl {
    /// A connection just accepted: idle (sheddable) from `accepted_ms` until its first header,
    /// so that at the cap the earliest silent connections go first, in accept order.
    fn new(accepted_ms: u64) -> ConnCtl {
        ConnCtl {
            idle_since: AtomicU64::new(accepted_ms.min(BUSY - 1)),
            shed_flag: AtomicBool::new(false),
            shed: tokio::sync::Notify::new(),
            spoke: AtomicBool::new(false),
        }
    }

    pub(super) fn set_idle(&self, shared: &Shared) {
        if !self.spoke() {
            return; // idle since its accept (`new`)
        }
        let ms = shared.epoch.elapsed().as_millis() as u64;
        self.idle_since.store(ms.min(BUSY - 1), Ordering::Relaxed);
    }

    pub(super) fn set_busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
        self.spoke.store(true, Ordering::Relaxed);
    }

    /// Whether the connection has started a request (then the idle timeout, not the first
    /// request's, bounds its silences).
    pub(super) fn spoke(&self) -> bool {
        self.spoke.load(Ordering::Relaxed)
    }
}

pub(super) struct Shared {
    pub(super) memory: Arc<dyn TargetMemory>,
    pub(super) stopping: AtomicBool,
    pub(super) progress_timeout: Duration,
    pub(super) limits: ServerLimits,
    conns: Mutex<HashMap<u64, Arc<ConnCtl>>>,
    epoch: Instant,
    pub(super) refused: AtomicU64,
    /// Connections that opened with our hello (`frame.rs`).
    pub(super) framed: AtomicU64,
    /// Connections closed for the cap, or refused at it.
    shed_count: AtomicU64,
    /// A peer can send refused requests in a loop: one warning per second is enough.
    pub(super) warnings: LogLimit,
    /// Faults on registered memory (unmapped or protected after registration).
    pub(super) fault_warnings: LogLimit,
    /// Shedding at the cap, and accept failures.
    cap_warnings: LogLimit,
}

/// A running data server. [`DataServer::stop`] (or drop) closes the listener and every
/// connection and stops every thread.
pub struct DataServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Tells every worker to drop its connections and end.
    stop: Option<tokio::sync::watch::Sender<bool>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// A connection handed from the acceptor to the worker that will serve it.
type Handoff = (std::net::TcpStream, SocketAddr, u64, Arc<ConnCtl>);

impl DataServer {
    /// Serves `listener` (already bound), checking requests against `memory`, with the limits
    /// of the environment ([`ServerLimits::from_env`]).
    pub fn start(
        listener: TcpListener,
        memory: Arc<dyn TargetMemory>,
        progress_timeout: Duration,
    ) -> std::io::Result<DataServer> {
        DataServer::start_with(listener, memory, progress_timeout, ServerLimits::from_env())
    }

    /// Each worker thread runs a single-threaded tokio runtime of its own (its own epoll):
    /// a connection stays on the worker that accepted it, and a readiness event wakes exactly
    /// the thread that serves it, as a blocking `recv` would, without a hand-off between
    /// threads. The acceptor is a task of the first worker and deals connections round-robin.
    pub fn start_with(
        listener: TcpListener,
        memory: Arc<dyn TargetMemory>,
        progress_timeout: Duration,
        limits: ServerLimits,
    ) -> std::io::Result<DataServer> {
        let local_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            memory,
            stopping: AtomicBool::new(false),
            progress_timeout,
            limits,
            conns: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            refused: AtomicU64::new(0),
            framed: AtomicU64::new(0),
            shed_count: AtomicU64::new(0),
            warnings: LogLimit::new(Duration::from_secs(1)),
            fault_warnings: LogLimit::new(Duration::from_secs(1)),
            cap_warnings: LogLimit::new(Duration::from_secs(10)),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let n = limits.threads.max(1);
        let mut runtimes = Vec::with_capacity(n);
        for _ in 0..n {
            runtimes.push(tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?);
        }
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..n).map(|_| tokio::sync::mpsc::unbounded_channel::<Handoff>()).unzip();
        let listener = {
            let _in_runtime = runtimes[0].enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let mut acceptor = Some(accept_loop(listener, shared.clone(), senders));
        let mut workers = Vec::with_capacity(n);
        for (i, (rt, mut rx)) in runtimes.into_iter().zip(receivers).enumerate() {
            let shared = shared.clone();
            let mut stop_rx = stop_rx.clone();
            let acceptor = acceptor.take();
            let spawned = std::thread::Builder::new().name("mc-tcp-srv".into()).spawn(move || {
                rt.block_on(async {
                    if let Some(a) = acceptor {
                        tokio::spawn(a);
                    }
                    loop {
                        tokio::select! {
                            _ = stop_rx.changed() => break,
                            handoff = rx.recv() => {
                                let Some((stream, peer, id, ctl)) = handoff else { break };
                                let shared = shared.clone();
                                let stream = match tokio::net::TcpStream::from_std(stream) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        tracing::debug!(%peer, "tcp data server: cannot register connection: {e}");
                                        shared.conns.lock().remove(&id);
                                        continue;
                                    }
                                };
                                tokio::spawn(async move {
                                    super::conn::serve(stream, peer, &shared, &ctl).await;
                                    shared.conns.lock().remove(&id);
                                });
                            }
                        }
                    }
                });
                // Dropping the runtime drops every connection's task: sockets close, leases go.
                drop(rt);
            });
            match spawned {
                Ok(t) => workers.push(t),
                Err(e) => {
                    let _ = stop.send(true);
                    for t in workers {
                        let _ = t.join();
                    }
                    tracing::warn!(worker = i, "tcp data server: cannot start a worker thread: {e}");
                    return Err(e);
                }
            }
        }
        Ok(DataServer { local_addr, shared, stop: Some(stop), workers })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Requests refused since start (out-of-region, malformed, or faulting memory).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Connections since start that spoke our framing rather than Mooncake's protocol.
    pub fn framed_connections(&self) -> u64 {
        self.shared.framed.load(Ordering::Relaxed)
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Connections closed or refused at the connection cap since start.
    pub fn shed_connections(&self) -> u64 {
        self.shared.shed_count.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> ServerLimits {
        self.shared.limits
    }

    /// Closes the listener and every connection (their tasks are dropped, which closes the
    /// sockets and drops the leases) and joins the worker threads.
    pub fn stop(&mut self) {
        let Some(stop) = self.stop.take() else { return };
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = stop.send(true);
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        self.shared.conns.lock().clear();
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<Handoff>>,
) {
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                if let Some(suppressed) = shared.cap_warnings.allow() {
                    tracing::warn!(similar_since_last = suppressed, "tcp data server: accept failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match tune(&stream, shared.progress_timeout).and_then(|()| stream.into_std()) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "tcp data server: cannot set up connection: {e}");
                continue;
            }
        };
        let Some(ctl) = admit(&shared, next_id, peer) else { continue };
        let id = next_id;
        next_id += 1;
        let worker = &workers[(id % workers.len() as u64) as usize];
        if worker.send((stream, peer, id, ctl)).is_err() {
            shared.conns.lock().remove(&id);
            return; // stopping
        }
    }
}

/// `TCP_NODELAY` and `TCP_USER_TIMEOUT` as on every data socket (`tune_data_socket`); the
/// socket is non-blocking, so the timeouts of blocking calls do not apply.
fn tune(stream: &tokio::net::TcpStream, progress_timeout: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    socket2::SockRef::from(stream).set_tcp_user_timeout(Some(progress_timeout))
}

/// Registers a new connection, shedding the oldest idle one at the cap; `None` when the cap is
/// reached and none is idle (the new connection is then closed).
fn admit(shared: &Shared, id: u64, peer: SocketAddr) -> Option<Arc<ConnCtl>> {
    let mut conns = shared.conns.lock();
    if conns.len() >= shared.limits.max_connections {
        let oldest = conns
            .iter()
            .map(|(&id, c)| (c.idle_since.load(Ordering::Relaxed), id))
            .filter(|&(since, _)| since != BUSY)
            .min();
        shared.shed_count.fetch_add(1, Ordering::Relaxed);
        match oldest.and_then(|(_, victim)| conns.remove(&victim)) {
            Some(victim) => {
                victim.shed_flag.store(true, Ordering::SeqCst);
                victim.shed.notify_one();
                if let Some(suppressed) = shared.cap_warnings.allow() {
                    tracing::warn!(
                        max_connections = shared.limits.max_connections,
                        similar_since_last = suppressed,
                        "tcp data server: connection cap reached (MC_TCP_SERVER_MAX_CONNECTIONS): closing \
                         the oldest idle connection to admit a new one"
                    );
                }
            }
            None => {
                if let Some(suppressed) = shared.cap_warnings.allow() {
                    tracing::warn!(
                        %peer,
                        max_connections = shared.limits.max_connections,
                        similar_since_last = suppressed,
                        "tcp data server: connection cap reached and no connection is idle: new \
                         connection refused"
                    );
                }
                return None;
            }
        }
    }
    let ctl = Arc::new(ConnCtl::new(shared.epoch.elapsed().as_millis() as u64));
    conns.insert(id, ctl.clone());
    Some(ctl)
}
