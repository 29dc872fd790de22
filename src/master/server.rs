//! The RPC server: one task per connection reading frames, answering each from the state under
//! its mutex, in order (a client sends one request at a time per connection).
//!
//! A connection's first request must be `Hello` with our protocol version; it names the client
//! process, and the master counts its open connections, so that the last one closing (a killed
//! process closes all its sockets) unmounts the client's segments at once. A malformed or
//! too-long frame ends only that connection.
//!
//! Anyone who can reach the port can open connections, so none of them is trusted before its
//! `Hello`: a frame's announced length is checked against `MAX_FRAME` and its body read in
//! pieces of at most `proto::READ_CHUNK` as the bytes arrive (announcing 64 MiB and sending one
//! byte costs one piece, not 64 MiB); a connection that has not said `Hello` within
//! [`HELLO_TIMEOUT`] of being accepted is closed; and at [`MAX_CONNECTIONS`] open connections
//! (`MC_MASTER_MAX_CONNECTIONS`) each new one sheds the oldest that has not said `Hello`. A
//! client's connections (after `Hello`) are never shed and have no idle deadline: clients hold
//! them for their life and may leave some unused for long. Running out of descriptors sheds the
//! same way, so that accepting goes on.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::metrics::{RpcHistogram, kind_index};
use super::state::MasterState;
use crate::metadata::conns::{self, ConnLimits, ConnTable, LogOnce, Phase, Tracked};
use crate::proto::{self, ClientId, Envelope, ErrorCode, PROTOCOL_VERSION, Request, Response};

/// How long a new connection has to say `Hello` (a client sends it at once).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once by default (`MC_MASTER_MAX_CONNECTIONS` overrides it): a client
/// process holds a handful, so this serves thousands of them, and stays below the descriptors
/// the master raises its limit to.
pub const MAX_CONNECTIONS: usize = 16384;
/// The variable that overrides [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_ENV: &str = "MC_MASTER_MAX_CONNECTIONS";

/// Refused frames and requests: one line per interval, whatever a peer sends.
static REFUSED_LOG: LogOnce = LogOnce::new();

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
    let limits = ConnLimits {
        max_connections: conns::env_cap(MAX_CONNECTIONS_ENV, MAX_CONNECTIONS),
        request_timeout: Some(HELLO_TIMEOUT),
        idle_timeout: None,
    };
    let table = Arc::new(ConnTable::new("master rpc", limits));
    let sweeper = Arc::clone(&table);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(sweeper.sweep_period()).await;
            sweeper.sweep();
        }
    });
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shared.nodelay
                    && let Err(e) = stream.set_nodelay(true)
                {
                    tracing::debug!(%peer, "TCP_NODELAY: {e}");
                }
                if let Ok(stream) = table.admit(stream) {
                    tokio::spawn(serve(stream, Arc::clone(&shared)));
                }
            }
            Err(e) if conns::out_of_descriptors(&e) => {
                if !table.shed_for_descriptors() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => {
                // A connection reset before accept: wait, do not spin.
                tracing::debug!("master rpc: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads exactly `len` bytes into `buf` (cleared first), growing it by at most
/// [`proto::READ_CHUNK`] at a time as they arrive.
async fn read_body(stream: &mut TcpStream, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    if buf.capacity() > proto::KEEP_SCRATCH.max(len) {
        buf.shrink_to(proto::KEEP_SCRATCH);
    }
    while buf.len() < len {
        let start = buf.len();
        buf.resize(start + (len - start).min(proto::READ_CHUNK), 0);
        let n = stream.read(&mut buf[start..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed mid-frame"));
        }
        buf.truncate(start + n);
    }
    Ok(())
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
async fn serve(mut tracked: Tracked<TcpStream>, shared: Arc<Shared>) {
    let peer = tracked.get_ref().peer_addr().ok();
    let mut client: Option<ClientId> = None;
    let mut body = Vec::new();
    let mut out = Vec::with_capacity(256);
    loop {
        let stream = tracked.get_mut();
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
                if let Some(left_out) = REFUSED_LOG.allow() {
                    tracing::warn!(
                        ?peer,
                        "master rpc: closing the connection: {e} ({left_out} more since the last line)"
                    );
                }
                break;
            }
        };
        if let Err(e) = read_body(stream, len, &mut body).await {
            tracing::debug!(?peer, "master rpc: read: {e}");
            break;
        }
        let envelope: Envelope<Request> = match proto::decode(&body) {
            Ok(env) => env,
            Err(e) => {
                if let Some(left_out) = REFUSED_LOG.allow() {
                    tracing::warn!(
                        ?peer,
                        "master rpc: closing the connection: {e} ({left_out} more since the last line)"
                    );
                }
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
        if client.is_some() && tracked.phase() != Phase::Protected {
            tracked.set_phase(Phase::Protected);
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
            if let Some(left_out) = REFUSED_LOG.allow() {
                tracing::warn!(
                    protocol,
                    "master rpc: refusing a Hello (other protocol version or client id; {left_out} more since the last line)"
                );
            }
            (Response::Error(ErrorCode::InvalidParams), true)
        }
        (None, _) => {
            if let Some(left_out) = REFUSED_LOG.allow() {
                tracing::warn!("master rpc: a request before Hello ({left_out} more since the last line)");
            }
            (Response::Error(ErrorCode::InvalidParams), true)
        }
        (Some(c), request) => (shared.state.lock().handle(c, request, Instant::now()), false),
    }
}
