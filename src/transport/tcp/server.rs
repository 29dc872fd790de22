//! The TCP data server: answers Mooncake's data protocol on the engine's data port.
//!
//! One acceptor thread, one thread per connection (connections carry requests strictly one after
//! another, `wire.md` §4.3; a connection in our framing carries frames one after another, see
//! `framed_server.rs`). Blocking threads rather than an event loop: a request's wake-up is the
//! kernel's wake of the one thread blocked on that socket, nothing more. Every request is checked against the registered, remotely accessible
//! regions before a byte moves; a refused request gets the v2 rejected frame (v1: nothing) and
//! its connection is closed, while other connections go on.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::frame;
use super::io::{recv_exact_raw, recv_frame, send_all, send_head_and_raw};
use super::wire::{self, HEADER_LEN, Header};
use crate::transport::TargetMemory;
use crate::transport::log_limit::LogLimit;

/// Connections served at once; more are closed at accept, so a peer cannot exhaust threads.
const MAX_CONNECTIONS: usize = 1024;

struct Connection {
    /// A second handle on the socket, to shut it down from `stop`; dropped by the connection's
    /// thread when it ends, so that the socket closes at once (not when the thread is reaped).
    stream: Option<TcpStream>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Connections {
    open: HashMap<u64, Connection>,
    /// Ids of connections whose thread has ended, joined at the next accept.
    ended: Vec<u64>,
}

pub(super) struct Shared {
    pub(super) memory: Arc<dyn TargetMemory>,
    pub(super) stopping: AtomicBool,
    conns: Mutex<Connections>,
    progress_timeout: Duration,
    pub(super) refused: AtomicU64,
    /// Connections that opened with our hello (`frame.rs`).
    framed: AtomicU64,
    /// A peer can send refused requests in a loop: one warning per second is enough.
    pub(super) warnings: LogLimit,
}

/// A running data server. [`DataServer::stop`] (or drop) closes the listener and every
/// connection and joins every thread.
pub struct DataServer {
    local_addr: SocketAddr,
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl DataServer {
    /// Serves `listener` (already bound), checking requests against `memory`.
    pub fn start(
        listener: TcpListener,
        memory: Arc<dyn TargetMemory>,
        progress_timeout: Duration,
    ) -> std::io::Result<DataServer> {
        let local_addr = listener.local_addr()?;
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            memory,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Connections::default()),
            progress_timeout,
            refused: AtomicU64::new(0),
            framed: AtomicU64::new(0),
            warnings: LogLimit::new(Duration::from_secs(1)),
        });
        let acceptor = {
            let (listener, shared) = (listener.clone(), shared.clone());
            std::thread::Builder::new().name("mc-tcp-accept".into()).spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(DataServer { local_addr, listener, shared, acceptor: Some(acceptor) })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Requests refused since start (out-of-region and malformed).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Connections since start that spoke our framing rather than Mooncake's protocol.
    pub fn framed_connections(&self) -> u64 {
        self.shared.framed.load(Ordering::Relaxed)
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().open.len()
    }

    pub fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else { return };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Shutting a listening socket down wakes a blocked accept() on Linux.
        let _ = socket2::SockRef::from(&*self.listener).shutdown(Shutdown::Both);
        let _ = acceptor.join();
        let open: Vec<Connection> = self.shared.conns.lock().open.drain().map(|(_, c)| c).collect();
        for c in open.iter().filter_map(|c| c.stream.as_ref()) {
            let _ = c.shutdown(Shutdown::Both);
        }
        for mut c in open {
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        reap_ended(shared);
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("tcp data server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        next_id += 1;
        if let Err(e) = start_connection(next_id, stream, peer, shared) {
            tracing::warn!(%peer, "tcp data server: cannot serve connection: {e}");
        }
    }
}

fn reap_ended(shared: &Shared) {
    let finished: Vec<JoinHandle<()>> = {
        let mut conns = shared.conns.lock();
        let ended = std::mem::take(&mut conns.ended);
        ended.into_iter().filter_map(|id| conns.open.remove(&id).and_then(|c| c.thread)).collect()
    };
    for t in finished {
        let _ = t.join();
    }
}

fn start_connection(id: u64, stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) -> std::io::Result<()> {
    super::tune_data_socket(&stream, shared.progress_timeout)?;
    let control = stream.try_clone()?;
    let mut conns = shared.conns.lock();
    if conns.open.len() >= MAX_CONNECTIONS {
        return Err(std::io::Error::other(format!("{MAX_CONNECTIONS} connections already open")));
    }
    let worker_shared = shared.clone();
    let thread = std::thread::Builder::new().name("mc-tcp-conn".into()).spawn(move || {
        serve(&stream, peer, &worker_shared);
        let mut conns = worker_shared.conns.lock();
        if let Some(c) = conns.open.get_mut(&id) {
            c.stream = None;
        }
        conns.ended.push(id);
        drop(conns);
        drop(stream); // the last handle: the peer sees the close now
    })?;
    conns.open.insert(id, Connection { stream: Some(control), thread: Some(thread) });
    Ok(())
}

/// Serves requests on one connection until it closes, fails, or is refused. A connection that
/// opens with our hello (`frame.rs`; a header Mooncake never sends) speaks our framing from then
/// on; any other first header is a Mooncake request.
fn serve(stream: &TcpStream, peer: SocketAddr, shared: &Shared) {
    let mut head = [0u8; HEADER_LEN];
    let mut first = true;
    loop {
        match recv_frame(stream, &mut head) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                continue; // idle pooled connection
            }
            Err(e) => {
                tracing::debug!(%peer, "tcp data server: connection ended: {e}");
                return;
            }
        }
        if std::mem::take(&mut first)
            && let Some(version) = frame::parse_hello(&head)
        {
            shared.framed.fetch_add(1, Ordering::Relaxed);
            super::framed_server::serve(stream, peer, shared, version);
            return;
        }
        let h = Header::decode(&head);
        if let Err(e) = serve_request(stream, &h, shared) {
            if let Some(suppressed) = shared.warnings.allow() {
                tracing::warn!(
                    %peer,
                    addr = format_args!("{:#x}", h.addr),
                    size = h.size,
                    write = h.write,
                    similar_since_last = suppressed,
                    "tcp data server: request failed, closing connection: {e}"
                );
            }
            return;
        }
    }
}

fn serve_request(stream: &TcpStream, h: &Header, shared: &Shared) -> std::io::Result<()> {
    let Some(lease) = shared.memory.lease(h.addr, h.size) else {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        if h.v2 {
            let _ = send_all(stream, &wire::status_frame(wire::STATUS_REJECTED));
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "range is not inside one registered, remotely accessible region; refused",
        ));
    };
    if h.write {
        // SAFETY: the lease proves `[addr, addr + size)` is a registered region of this process,
        // and it stays registered while `lease` lives.
        unsafe { recv_exact_raw(stream, h.addr as usize, h.size)? };
        drop(lease);
        if h.v2 {
            send_all(stream, &wire::status_frame(wire::STATUS_OK))?;
        }
    } else {
        let ok = wire::status_frame(wire::STATUS_OK);
        let head: &[u8] = if h.v2 { &ok } else { &[] };
        // SAFETY: as above, the leased range is valid for reads while `lease` lives.
        unsafe { send_head_and_raw(stream, head, h.addr as usize, h.size)? };
        drop(lease);
    }
    Ok(())
}
