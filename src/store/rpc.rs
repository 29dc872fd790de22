//! The client's side of the master protocol (`src/master/proto.rs`): a pool of blocking
//! connections, one request in flight on each.
//!
//! Blocking sockets keep a store call on the caller's thread: a put is two round trips to the
//! master around the data transfer, and a thread hop per round trip would cost more than the
//! round trip itself on loopback. Each caller takes an idle connection from the pool (or opens
//! one, which starts with `Hello`), so concurrent callers never queue behind each other.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{StoreError, StoreResult};
use crate::proto::{self, ClientId, Envelope, ErrorCode, FrameError, PROTOCOL_VERSION, Request, Response};

/// Connections kept idle for reuse; more callers than this at once open short-lived ones.
const MAX_IDLE: usize = 32;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the master said in `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterParams {
    pub lease_ttl: Duration,
    pub client_ttl: Duration,
}

struct Conn {
    stream: TcpStream,
    scratch: Vec<u8>,
}

/// A connection pool to one master, on behalf of one client process.
pub struct MasterClient {
    addrs: Vec<SocketAddr>,
    client: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
    params: MasterParams,
    /// Reads finished since the last request: sent ahead of the next one (`ReadsDone`), on the
    /// same connection and in the same write, so telling the master costs no round trip.
    finished_reads: Mutex<Vec<(String, u64)>>,
}

impl MasterClient {
    /// Resolves `addr` (`host:port`) and opens a first connection, so that a master that is
    /// down fails `setup` at once (`RPC_FAIL`).
    pub fn connect(addr: &str, client: ClientId, timeout: Duration) -> StoreResult<MasterClient> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| StoreError::new(ErrorCode::RpcFail, format!("master address {addr:?}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(StoreError::new(ErrorCode::RpcFail, format!("master address {addr:?} resolves to nothing")));
        }
        let mut master = MasterClient {
            addrs,
            client,
            timeout,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            params: MasterParams { lease_ttl: Duration::ZERO, client_ttl: Duration::ZERO },
            finished_reads: Mutex::new(Vec::new()),
        };
        let (conn, params) = master.open()?;
        master.params = params;
        master.idle.lock().push(conn);
        Ok(master)
    }

    pub fn params(&self) -> MasterParams {
        self.params
    }

    pub fn client_id(&self) -> ClientId {
        self.client
    }

    /// Sends `request` and returns the master's answer; `Response::Error(code)` becomes
    /// `Err(code)`. A request that may have reached the master is not retried (a put must not
    /// reserve space twice); an idempotent one is retried once on a fresh connection when a
    /// pooled connection turns out to be dead.
    pub fn call(&self, request: &Request) -> StoreResult<Response> {
        let pooled = self.idle.lock().pop();
        let (mut conn, from_pool) = match pooled {
            Some(conn) => (conn, true),
            None => (self.open()?.0, false),
        };
        match self.exchange(&mut conn, request) {
            Ok(response) => {
                self.give_back(conn);
                into_result(response, request)
            }
            Err(e) if from_pool && is_idempotent(request) => {
                tracing::debug!("master connection failed ({e}); retrying on a new one");
                let (mut fresh, _) = self.open()?;
                let response = self.exchange(&mut fresh, request).map_err(|e| rpc_error(&e, request))?;
                self.give_back(fresh);
                into_result(response, request)
            }
            Err(e) => Err(rpc_error(&e, request)),
        }
    }

    /// Notes reads that finished copying (`(key, read_id)`); the next request carries them.
    pub fn reads_finished(&self, reads: impl IntoIterator<Item = (String, u64)>) {
        self.finished_reads.lock().extend(reads);
    }

    /// Tells the master now about the reads that finished since the last request (ahead of a
    /// `Health` request), so that a closing client leaves no read lease holding anyone's memory.
    pub fn flush_reads(&self) -> StoreResult<()> {
        if self.finished_reads.lock().is_empty() {
            return Ok(());
        }
        self.call(&Request::Health).map(drop)
    }

    /// Closes every idle connection (the master then sees this client leave once no other
    /// connection is open).
    pub fn close(&self) {
        self.idle.lock().clear();
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn open(&self) -> StoreResult<(Conn, MasterParams)> {
        let mut last = None;
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let setup = stream
                        .set_nodelay(true)
                        .and_then(|()| stream.set_read_timeout(Some(self.timeout)))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)));
                    if let Err(e) = setup {
                        last = Some(e);
                        continue;
                    }
                    let mut conn = Conn { stream, scratch: Vec::with_capacity(256) };
                    let hello = Request::Hello { protocol: PROTOCOL_VERSION, client: self.client };
                    return match self.exchange(&mut conn, &hello).map_err(|e| rpc_error(&e, &hello))? {
                        Response::Hello { protocol, lease_ttl_ms, client_ttl_ms } if protocol == PROTOCOL_VERSION => {
                            let params = MasterParams {
                                lease_ttl: Duration::from_millis(lease_ttl_ms),
                                client_ttl: Duration::from_millis(client_ttl_ms),
                            };
                            Ok((conn, params))
                        }
                        other => Err(StoreError::new(
                            ErrorCode::RpcFail,
                            format!("master at {addr} does not speak our protocol (answered {other:?})"),
                        )),
                    };
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| io::Error::new(ErrorKind::NotFound, "no address"));
        Err(StoreError::new(ErrorCode::RpcFail, format!("cannot reach the master at {:?}: {e}", self.addrs)))
    }

    fn exchange(&self, conn: &mut Conn, request: &Request) -> Result<Response, FrameError> {
        let finished = match request {
            Request::Hello { .. } => Vec::new(),
            _ => std::mem::take(&mut *self.finished_reads.lock()),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conn.scratch.clear();
        if !finished.is_empty() {
            proto::encode(&Envelope { id: 0, body: Request::ReadsDone { reads: finished } }, &mut conn.scratch)?;
        }
        proto::encode(&Envelope { id, body: request }, &mut conn.scratch)?;
        std::io::Write::write_all(&mut conn.stream, &conn.scratch)?;
        let mut reply: Envelope<Response> = proto::read_frame(&mut conn.stream, &mut conn.scratch)?;
        if reply.id == 0 {
            // The answer to `ReadsDone`; ours follows.
            reply = proto::read_frame(&mut conn.stream, &mut conn.scratch)?;
        }
        if reply.id != id {
            return Err(FrameError::Io(io::Error::new(
                ErrorKind::InvalidData,
                format!("reply {} to request {id}", reply.id),
            )));
        }
        Ok(reply.body)
    }
}

fn into_result(response: Response, request: &Request) -> StoreResult<Response> {
    match response {
        Response::Error(code) => Err(StoreError::from_master(code, request.kind())),
        other => Ok(other),
    }
}

fn rpc_error(e: &FrameError, request: &Request) -> StoreError {
    let timed_out = matches!(e, FrameError::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    let code = if timed_out { ErrorCode::RpcTimeout } else { ErrorCode::RpcFail };
    StoreError::new(code, format!("{} to the master failed: {e}", request.kind()))
}

/// Requests that change nothing, or nothing twice.
fn is_idempotent(request: &Request) -> bool {
    matches!(
        request,
        Request::Ping { .. }
            | Request::Health
            | Request::GetReplicas { .. }
            | Request::BatchGetReplicas { .. }
            | Request::BatchExists { .. }
            | Request::Hello { .. }
    )
}
