//! The handshake server: one listener on the engine's RPC port, connections served
//! concurrently (Mooncake's own server is serial, so one idle client stalls it; ours must not).

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::frame::{self, Frame, FrameType};
use crate::runtime::RuntimeGuard;

/// How long a client may take to send its request, and to close after our reply.
const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further ones are closed at accept (and logged).
const MAX_CONCURRENT: usize = 256;

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
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "handshake: {MAX_CONCURRENT} connections open; closing this one");
                        continue;
                    };
                    let service = service.clone();
                    conns.spawn(async move {
                        serve_connection(sock, peer, service, max_frame).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!("handshake: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

async fn serve_connection(
    mut sock: TcpStream,
    peer: std::net::SocketAddr,
    service: Weak<dyn HandshakeService>,
    max_frame: usize,
) {
    let request = match tokio::time::timeout(CLIENT_IO_TIMEOUT, frame::read_frame(&mut sock, max_frame)).await {
        Ok(Ok(f)) => f,
        Ok(Err(frame::FrameError::Io(e))) => {
            // A client that connects and leaves (a probe, a port check) is routine.
            tracing::debug!(%peer, "handshake: connection ended before a request: {e}");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, "handshake: malformed request, closing without reply: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake: no request within {CLIENT_IO_TIMEOUT:?}");
            return;
        }
    };
    let Some(service) = service.upgrade() else { return };
    let Some(reply) = answer(&*service, &request, peer) else { return };
    drop(service);
    let bytes = frame::encode(request.kind, request.typeless, &reply);
    let sent = tokio::time::timeout(CLIENT_IO_TIMEOUT, async {
        sock.write_all(&bytes).await?;
        sock.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!(%peer, "handshake: reply not delivered");
        return;
    }
    // Half-closed, as Mooncake does: wait (bounded) for the client to close first.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(CLIENT_IO_TIMEOUT, async {
        while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

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
                    tracing::warn!(%peer, "handshake: notify without string `name` and `notify_msg`");
                    None
                }
            }
        }
    }
}
