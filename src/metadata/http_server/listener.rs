//! The accepting side: at most `max_connections` connections at a time, each tracked so that
//! stopping the server can close every one of them, idle, slow or stuck, within its bound, and
//! so that a connection that moves no byte for the idle timeout is closed (aiohttp closes idle
//! keep-alive connections after 75 s; hyper, as `axum::serve` runs it, has no timer at all).

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every open connection's socket (a duplicate of its descriptor, used only to shut it down)
/// and when it last moved a byte.
pub(super) struct Connections {
    open: Mutex<Registry>,
    next_id: AtomicU64,
    epoch: Instant,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Tracked>,
    closed: bool,
}

struct Tracked {
    socket: socket2::Socket,
    last_active_ms: Arc<AtomicU64>,
}

impl Connections {
    pub fn new() -> Connections {
        Connections { open: Mutex::default(), next_id: AtomicU64::new(0), epoch: Instant::now() }
    }

    /// Shuts down every open connection (both directions) and every one accepted from now on:
    /// hyper sees end-of-file or a failed write and ends the connection's task.
    pub fn shut_down_all(&self) {
        let mut reg = self.open.lock();
        reg.closed = true;
        for t in reg.sockets.values() {
            let _ = t.socket.shutdown(Shutdown::Both);
        }
    }

    /// Shuts down the connections that moved no byte for `idle`; returns how many.
    pub fn shut_down_idle(&self, idle: Duration) -> usize {
        let now = self.now_ms();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let reg = self.open.lock();
        let mut n = 0;
        for t in reg.sockets.values() {
            if now.saturating_sub(t.last_active_ms.load(Ordering::Relaxed)) >= idle_ms {
                let _ = t.socket.shutdown(Shutdown::Both);
                n += 1;
            }
        }
        n
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The number of connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().sockets.len()
    }

    fn track(self: &Arc<Self>, stream: TcpStream, permit: OwnedSemaphorePermit) -> io::Result<TrackedStream> {
        let socket = socket2::SockRef::from(&stream).try_clone()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let last_active_ms = Arc::new(AtomicU64::new(self.now_ms()));
        let mut reg = self.open.lock();
        if reg.closed {
            let _ = socket.shutdown(Shutdown::Both);
        } else {
            reg.sockets.insert(id, Tracked { socket, last_active_ms: Arc::clone(&last_active_ms) });
        }
        Ok(TrackedStream { stream, id, last_active_ms, connections: Arc::clone(self), _permit: permit })
    }
}

/// A bound listener for `axum::serve`.
pub(super) struct BoundedListener {
    listener: TcpListener,
    connections: Arc<Connections>,
    permits: Arc<Semaphore>,
}

impl BoundedListener {
    pub fn new(listener: TcpListener, connections: Arc<Connections>, max_connections: usize) -> BoundedListener {
        BoundedListener { listener, connections, permits: Arc::new(Semaphore::new(max_connections.max(1))) }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TrackedStream, SocketAddr) {
        loop {
            // Past the limit, new connections wait in the kernel's backlog.
            let permit = Arc::clone(&self.permits).acquire_owned().await.expect("the semaphore is never closed");
            let accepted = self.listener.accept().await.and_then(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                Ok((self.connections.track(stream, permit)?, peer))
            });
            match accepted {
                Ok(conn) => return conn,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    tracing::warn!("http metadata server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// One accepted connection; leaves the registry (and frees its slot) when hyper drops it.
pub(super) struct TrackedStream {
    stream: TcpStream,
    id: u64,
    last_active_ms: Arc<AtomicU64>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl TrackedStream {
    /// Notes that a byte moved, when `moved`.
    fn touch(&self, moved: bool) {
        if moved {
            self.last_active_ms.store(self.connections.now_ms(), Ordering::Relaxed);
        }
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.connections.open.lock().sockets.remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.touch(buf.filled().len() > before);
        r
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.touch(matches!(r, Poll::Ready(Ok(n)) if n > 0));
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.touch(matches!(r, Poll::Ready(Ok(n)) if n > 0));
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
