//! The handshake server: one listener on the engine's RPC port, connections served
//! concurrently (Mooncake's own server is serial, so one idle client stalls it; ours must not).
//!
//! Each connection carries one request and its reply. Idle or slow clients cannot keep others
//! out: accepting never waits; a client must deliver its whole request within
//! [`CLIENT_IO_TIMEOUT`] of being accepted, and after the reply it has as long again to close;
//! and at [`MAX_CONNECTIONS`] open connections (`MC_HANDSHAKE_MAX_CONNECTIONS`) each new one sheds
//! the oldest that has not delivered its request (or already has its reply), never one being
//! answered ([`crate::metadata::conns`]). Running out of descriptors sheds the same way.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::frame::{self, Frame, FrameType};
use crate::runtime::RuntimeGuard;

use crate::metadata::conns::{self, ConnLimits, ConnTable, Phase, Tracked};

/// How long a client may take, from accept, to send its whole request, and to close after our
/// reply (Mooncake's clients send at once and close at once; 5 s is generous on any network).
pub const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at once by default: far more than peers (a few per peer at a time), small
/// beside a process's descriptors (each costs one, and a few KiB). `MC_HANDSHAKE_MAX_CONNECTIONS`
/// overrides it.
pub const MAX_CONNECTIONS: usize = 4096;
/// The variable that overrides [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_ENV: &str = "MC_HANDSHAKE_MAX_CONNECTIONS";

/// What the handshake port answers; implemented by the engine.
pub trait HandshakeService: Send + Sync + 'static {
    /// The current local segment descriptor (type 1), or `None` in metadata-server mode, where
    /// Mooncake answers `null`.
    fn local_descriptor(&self) -> Option<Value>;
    /// A peer's notification (type 2): queue it for `getNotifsFromEngine`.
    fn deliver_notify(&self, name: String, msg: String);
    /// A Connection request (type 0). A TCP-only engine answers with every field empty.
    fn connection_reply(&self, _request: &Value) -> Value {
        empty_connection_reply()
    }
}

/// Mooncake's Connection reply with all fields empty (`wire.md` §2.4).
pub fn empty_connection_reply() -> Value {
    json!({"local_gid":"","local_lid":0,"local_nic_path":"","payload":"","peer_nic_path":"",
           "qp_num":[],"reply_msg":""})
}

/// A running handshake server; stopped by [`HandshakeServer::stop`] or on drop.
pub struct HandshakeServer {
    port: u16,
    stop_tx: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    runtime: Arc<RuntimeGuard>,
}

impl HandshakeServer {
    /// Serves `listener` (already bound) on the shared runtime.
    pub fn start(
        runtime: Arc<RuntimeGuard>,
        listener: std::net::TcpListener,
        service: Weak<dyn HandshakeService>,
        max_frame: usize,
    ) -> std::io::Result<HandshakeServer> {
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let listener = {
            let _enter = runtime.handle().enter();
            TcpListener::from_std(listener)?
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = runtime.handle().spawn(accept_loop(listener, service, max_frame, stop_rx));
        Ok(HandshakeServer { port, stop_tx, task: Some(task), runtime })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting, drops open connections and waits until the listener is closed.
    pub fn stop(&mut self) {
        let _ = self.stop_tx.send(true);
        if let Some(task) = self.task.take() {
            let _ = self.runtime.block_on(task);
        }
    }
}

impl Drop for HandshakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    service: Weak<dyn HandshakeService>,
    max_frame: usize,
    mut stop: watch::Receiver<bool>,
) {
    let limits = ConnLimits {
        max_connections: conns::env_cap(MAX_CONNECTIONS_ENV, MAX_CONNECTIONS),
        // Enforced by each connection's own timers.
        request_timeout: None,
        idle_timeout: None,
    };
    let table = Arc::new(ConnTable::new("handshake", limits));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Ok(sock) = table.admit(sock) else { continue };
                    let service = service.clone();
                    tasks.spawn(serve_connection(sock, peer, service, max_frame));
                }
                Err(e) if conns::out_of_descriptors(&e) => {
                    if !table.shed_for_descriptors() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    tracing::debug!("handshake: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    table.shut_down_all();
    tasks.shutdown().await;
}

async fn serve_connection(
    mut sock: Tracked<TcpStream>,
    peer: std::net::SocketAddr,
    service: Weak<dyn HandshakeService>,
    max_frame: usize,
) {
    let request = match tokio::time::timeout(CLIENT_IO_TIMEOUT, frame::read_frame(sock.get_mut(), max_frame)).await {
        Ok(Ok(f)) => f,
        Ok(Err(frame::FrameError::Io(e))) => {
            // A client that connects and leaves (a probe, a port check) is routine.
            tracing::debug!(%peer, "handshake: connection ended before a request: {e}");
            return;
        }
        Ok(Err(e)) => {
            if let Some(left_out) = MALFORMED_LOG.allow() {
                tracing::warn!(
                    %peer,
                    "handshake: malformed request, closing without reply: {e} ({left_out} more since the last line)"
                );
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake: no request within {CLIENT_IO_TIMEOUT:?}");
            return;
        }
    };
    sock.set_phase(Phase::Protected);
    let Some(service) = service.upgrade() else { return };
    let Some(reply) = answer(&*service, &request, peer) else { return };
    drop(service);
    let bytes = frame::encode(request.kind, request.typeless, &reply);
    let sent = tokio::time::timeout(CLIENT_IO_TIMEOUT, async {
        sock.get_mut().write_all(&bytes).await?;
        sock.get_mut().shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!(%peer, "handshake: reply not delivered");
        return;
    }
    sock.set_phase(Phase::Idle);
    // Half-closed, as Mooncake does: wait (bounded) for the client to close first.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(CLIENT_IO_TIMEOUT, async {
        while matches!(sock.get_mut().read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Malformed requests are logged at most once per interval (a peer can send them in a loop).
static MALFORMED_LOG: crate::metadata::conns::LogOnce = crate::metadata::conns::LogOnce::new();

/// The reply to one request, or `None` to close without replying.
fn answer(service: &dyn HandshakeService, request: &Frame, peer: std::net::SocketAddr) -> Option<Value> {
    match request.kind {
        FrameType::Metadata => Some(service.local_descriptor().unwrap_or(Value::Null)),
        FrameType::Probe => Some(json!({"status": "success"})),
        FrameType::Connection => Some(service.connection_reply(&request.body)),
        FrameType::Notify => {
            let name = request.body.get("name").and_then(Value::as_str);
            let msg = request.body.get("notify_msg").and_then(Value::as_str);
            match (name, msg) {
                (Some(name), Some(msg)) => {
                    service.deliver_notify(name.to_string(), msg.to_string());
                    Some(json!({"name": "", "notify_msg": "success"}))
                }
                _ => {
                    if let Some(left_out) = MALFORMED_LOG.allow() {
                        tracing::warn!(
                            %peer,
                            "handshake: notify without string `name` and `notify_msg` ({left_out} more since the last line)"
                        );
                    }
                    None
                }
            }
        }
    }
}
