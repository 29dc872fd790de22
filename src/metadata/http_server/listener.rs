//! The accepting side, for the HTTP metadata server and the master's admin HTTP port: every
//! connection is entered in a [`ConnTable`], so that stopping the server can close every one of
//! them (idle, slow or stuck) within its bound, and so that no number of idle or slow clients
//! keeps a legitimate one out:
//!
//! - accepting never waits: at the cap (`max_connections`) a new connection sheds the oldest
//!   one that never sent a byte, then the oldest idle keep-alive one, then the oldest whose
//!   request is still arriving (a request being answered has just read its last byte and is
//!   answered at once);
//! - a connection must deliver its request within the request deadline, counted from accept
//!   (or from its first byte after an answer): a client that trickles a header a byte at a
//!   time is closed like one that sends nothing;
//! - a connection that moves no byte for the idle timeout after an answer is closed (aiohttp
//!   closes idle keep-alive connections after 75 s; hyper, as `axum::serve` runs it, has no
//!   timer at all).
//!
//! Running out of descriptors sheds the same way, so that accepting goes on.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::metadata::conns::{self, ConnLimits, ConnTable, Tracked};

/// A bound listener for `axum::serve`.
pub(crate) struct BoundedListener {
    listener: TcpListener,
    connections: Arc<ConnTable>,
}

impl BoundedListener {
    pub fn new(listener: TcpListener, connections: Arc<ConnTable>) -> BoundedListener {
        BoundedListener { listener, connections }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Tracked<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Tracked<TcpStream>, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if let Ok(tracked) = self.connections.admit(stream) {
                        return (tracked, peer);
                    }
                }
                Err(e) if conns::out_of_descriptors(&e) => {
                    if !self.connections.shed_for_descriptors() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(e) => {
                    // A connection reset before it was accepted, or out of memory: wait a
                    // little rather than spin.
                    tracing::debug!("http server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves `router` on `listener` with the cap and deadlines of `limits` (a sweeper task
/// enforces the deadlines) until the runtime stops; logs once if hyper's loop ends. The
/// master's admin HTTP port is served this way.
pub fn serve_bounded(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
) -> impl Future<Output = ()> + Send + 'static {
    let table = Arc::new(ConnTable::new(name, limits));
    let sweeper = {
        let table = Arc::clone(&table);
        async move {
            loop {
                tokio::time::sleep(table.sweep_period()).await;
                table.sweep();
            }
        }
    };
    async move {
        let sweeper = tokio::spawn(sweeper);
        if let Err(e) = axum::serve(BoundedListener::new(listener, table), router).await {
            tracing::error!("{name}: stopped: {e}");
        }
        sweeper.abort();
    }
}
