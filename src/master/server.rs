//! The RPC server: one task per connection reading frames, answering each from the state under
//! its mutex, in order (a client sends one request at a time per connection).
//!
//! A connection's first request must be `Hello` with our protocol version; it names the client
//! process, and the master counts its open connections, so that the last one closing (a killed
//! process closes all its sockets) unmounts the client's segments at once. A malformed or
//! too-long frame ends only that connection.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::metrics::{RpcHistogram, kind_index};
use super::state::MasterState;
use crate::proto::{self, ClientId, Envelope, ErrorCode, PROTOCOL_VERSION, Request, Response};

/// How often the state's housekeeping runs (leases, timeouts, watermark, client expiry).
pub const TICK: Duration = Duration::from_millis(100);

/// What every task of the master shares.
pub struct Shared {
    pub state: Mutex<MasterState>,
    pub rpc: RpcHistogram,
    /// `--rpc_enable_tcp_no_delay`.
    pub nodelay: bool,
}

impl Shared {
    /// The `Hello` answer.
    fn hello(&self) -> Response {
        let st = self.state.lock();
        let p = st.policy();
        Response::Hello {
            protocol: PROTOCOL_VERSION,
            lease_ttl_ms: p.lease_ttl.as_millis() as u64,
            client_ttl_ms: p.client_ttl.as_millis() as u64,
        }
    }
}

/// Accepts connections until the runtime stops.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shared.nodelay
                    && let Err(e) = stream.set_nodelay(true)
                {
                    tracing::debug!(%peer, "TCP_NODELAY: {e}");
                }
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
            Err(e) => {
                // Out of descriptors, or a connection reset before accept: wait, do not spin.
                tracing::warn!("master rpc: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the state's housekeeping every [`TICK`] until the runtime stops.
pub async fn housekeeping(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let mut st = shared.state.lock();
        st.tick(now);
        st.expire_clients(now);
    }
}

/// Serves one connection; when it ends, the client's connection count drops.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let peer = stream.peer_addr().ok();
    let mut client: Option<ClientId> = None;
    let mut body = Vec::new();
    let mut out = Vec::with_capacity(256);
    loop {
        let mut header = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut header).await {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                tracing::debug!(?peer, "master rpc: read: {e}");
            }
            break;
        }
        let len = match proto::frame_len(header) {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(?peer, "master rpc: closing the connection: {e}");
                break;
            }
        };
        body.clear();
        body.resize(len, 0);
        if let Err(e) = stream.read_exact(&mut body).await {
            tracing::debug!(?peer, "master rpc: read: {e}");
            break;
        }
        let envelope: Envelope<Request> = match proto::decode(&body) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(?peer, "master rpc: closing the connection: {e}");
                break;
            }
        };
        let started = Instant::now();
        let kind = kind_index(&envelope.body);
        let (response, close) = answer(&shared, &mut client, envelope.body);
        out.clear();
        if let Err(e) = proto::encode(&Envelope { id: envelope.id, body: &response }, &mut out) {
            tracing::warn!(?peer, "master rpc: cannot encode the answer: {e}");
            out.clear();
            let fallback = Response::Error(ErrorCode::BufferOverflow);
            if proto::encode(&Envelope { id: envelope.id, body: &fallback }, &mut out).is_err() {
                break;
            }
        }
        // Recorded before the write, so that a client that got its answer finds it counted.
        shared.rpc.record(kind, started.elapsed());
        if let Err(e) = stream.write_all(&out).await {
            tracing::debug!(?peer, "master rpc: write: {e}");
            break;
        }
        if close {
            break;
        }
    }
    if let Some(c) = client {
        shared.state.lock().connection_closed(c, Instant::now());
    }
}

/// The answer to one request, and whether the connection ends after it.
fn answer(shared: &Shared, client: &mut Option<ClientId>, request: Request) -> (Response, bool) {
    match (*client, request) {
        (None, Request::Hello { protocol, client: c }) if protocol == PROTOCOL_VERSION => {
            shared.state.lock().hello(c, Instant::now());
            *client = Some(c);
            (shared.hello(), false)
        }
        (Some(known), Request::Hello { protocol, client: c }) if protocol == PROTOCOL_VERSION && c == known => {
            (shared.hello(), false)
        }
        (_, Request::Hello { protocol, .. }) => {
            tracing::warn!(protocol, "master rpc: refusing a Hello (other protocol version or client id)");
            (Response::Error(ErrorCode::InvalidParams), true)
        }
        (None, _) => {
            tracing::warn!("master rpc: a request before Hello");
            (Response::Error(ErrorCode::InvalidParams), true)
        }
        (Some(c), request) => (shared.state.lock().handle(c, request, Instant::now()), false),
    }
}
