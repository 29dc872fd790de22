//! Mooncake's HTTP metadata server: an in-memory key-value store behind `GET|PUT|DELETE
//! /metadata?key=<key>` (`wire.md` §5.4), so that Mooncake engines and ours can find each other
//! through `http://host:port/metadata` without etcd.
//!
//! Two [`Flavour`]s answer exactly as the two servers Mooncake ships do:
//! - [`Flavour::Standalone`]: the wheel's `mooncake_http_metadata_server` (Python, aiohttp).
//!   The key is URL-decoded (so `mooncake%2Fram%2Fn` and `mooncake/ram/n` are one entry) and
//!   stripped; a second PUT of an existing `rpc_meta` key is refused even with the same body;
//!   unknown methods on `/metadata` get 405, bodies over 1 MiB 413.
//! - [`Flavour::MasterEmbedded`]: `mooncake_master --enable_http_metadata_server=true` (C++,
//!   cinatra). The key is taken as sent, not decoded; a repeated `rpc_meta` PUT with the same
//!   body is answered `metadata unchanged`; `GET /health` is `OK`; any other method or path is
//!   404, and a missing key is `Missing key parameter`.
//!
//! Values are stored verbatim and never parsed. [`HttpMetadataServer::start`] serves on the
//! shared runtime ([`crate::runtime`]); `src/bin/mooncake_http_metadata_server.rs` is the
//! wheel's command over [`serve_until_signal`].

mod listener;
mod query;
mod routes;
mod table;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use table::{MetadataTable, PutOutcome};

use crate::metadata::conns::{self, ConnLimits, ConnTable};
use crate::runtime::RuntimeGuard;
use listener::BoundedListener;
pub use listener::serve_bounded;
use routes::App;

/// The path both Mooncake servers serve the store at.
pub const METADATA_PATH: &str = "/metadata";

/// The wheel's body limit (aiohttp's default `client_max_size`, 1 MiB): a longer PUT gets 413.
pub const WHEEL_MAX_BODY_BYTES: usize = 1 << 20;

/// Our limit for [`Flavour::MasterEmbedded`], which has none of its own (it took 64 MiB when
/// measured): 16 MiB, far above any segment descriptor.
pub const MASTER_MAX_BODY_BYTES: usize = 16 << 20;

/// Connections open at once by default (`MC_HTTP_METADATA_MAX_CONNECTIONS` overrides it): far
/// above the engines of a cluster (each holds at most a few at a time), small beside a
/// process's descriptors. At the cap, the oldest idle connection is closed for each new one.
pub const MAX_CONNECTIONS: usize = 4096;
/// The variable that overrides [`MAX_CONNECTIONS`] (also for the master's admin HTTP port).
pub const MAX_CONNECTIONS_ENV: &str = "MC_HTTP_METADATA_MAX_CONNECTIONS";
/// How long a client has to deliver a request, counted from accept or from its first byte after
/// an answer (hyper's own header deadline is 30 s, and aiohttp's is none).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A keep-alive connection with no request this long after an answer is closed (aiohttp's
/// keep-alive timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// How long stopping waits for requests in progress before closing their connections.
const STOP_GRACE: Duration = Duration::from_millis(500);
/// How long stopping then waits for the connections to end before giving up on them.
const STOP_FORCE: Duration = Duration::from_secs(2);

/// Which Mooncake server to behave as (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// The wheel's `mooncake_http_metadata_server` (aiohttp).
    Standalone,
    /// The server inside `mooncake_master --enable_http_metadata_server=true` (cinatra).
    MasterEmbedded,
}

/// How a server is run; [`ServerOptions::new`] (or `Flavour::into()`) gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Which server to answer as.
    pub flavour: Flavour,
    /// The longest PUT body accepted; longer ones get 413 and are not read to their end.
    /// Default: [`WHEEL_MAX_BODY_BYTES`] for `Standalone`, [`MASTER_MAX_BODY_BYTES`] otherwise.
    pub max_body_bytes: usize,
    /// Connections open at once; at the cap each new one sheds the oldest idle one (see
    /// `listener`). Default [`MAX_CONNECTIONS`], or `MC_HTTP_METADATA_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// A connection idle this long after an answer is closed ([`IDLE_TIMEOUT`] by default).
    pub idle_timeout: Duration,
    /// A request not delivered within this long (from accept, or from its first byte) closes
    /// its connection ([`REQUEST_TIMEOUT`] by default).
    pub request_timeout: Duration,
}

impl ServerOptions {
    /// The defaults for `flavour`.
    pub fn new(flavour: Flavour) -> ServerOptions {
        let max_body_bytes = match flavour {
            Flavour::Standalone => WHEEL_MAX_BODY_BYTES,
            Flavour::MasterEmbedded => MASTER_MAX_BODY_BYTES,
        };
        ServerOptions {
            flavour,
            max_body_bytes,
            max_connections: conns::env_cap(MAX_CONNECTIONS_ENV, MAX_CONNECTIONS),
            idle_timeout: IDLE_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

impl From<Flavour> for ServerOptions {
    fn from(flavour: Flavour) -> ServerOptions {
        ServerOptions::new(flavour)
    }
}

/// A running server. [`stop`](Self::stop) (or drop) ends it.
pub struct HttpMetadataServer {
    runtime: Arc<RuntimeGuard>,
    local_addr: SocketAddr,
    flavour: Flavour,
    table: Arc<MetadataTable>,
    connections: Arc<ConnTable>,
    stop_tx: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl HttpMetadataServer {
    /// Binds `bind` (port 0: any free port; `SO_REUSEADDR` and, for IPv6, `IPV6_V6ONLY`, as
    /// aiohttp sets them) and serves an empty store on `runtime` until stopped. Fails only when
    /// the address cannot be bound.
    pub fn start(
        runtime: &Arc<RuntimeGuard>,
        bind: SocketAddr,
        options: impl Into<ServerOptions>,
    ) -> io::Result<HttpMetadataServer> {
        HttpMetadataServer::start_with_table(runtime, bind, options, Arc::new(MetadataTable::new()))
    }

    /// Like [`start`](Self::start), serving `table` (shared with the caller, who may read or
    /// change it while the server runs).
    pub fn start_with_table(
        runtime: &Arc<RuntimeGuard>,
        bind: SocketAddr,
        options: impl Into<ServerOptions>,
        table: Arc<MetadataTable>,
    ) -> io::Result<HttpMetadataServer> {
        let options = options.into();
        let std_listener = bind_listener(bind)?;
        let local_addr = std_listener.local_addr()?;
        let handle = runtime.handle();
        let listener = {
            let _enter = handle.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let limits = ConnLimits {
            max_connections: options.max_connections,
            request_timeout: Some(options.request_timeout),
            idle_timeout: Some(options.idle_timeout),
        };
        let connections = Arc::new(ConnTable::new("http metadata server", limits));
        let listener = BoundedListener::new(listener, Arc::clone(&connections));
        let flavour = options.flavour;
        let app = Arc::new(App { options, table: Arc::clone(&table) });
        let router = axum::Router::new().fallback(routes::handle).with_state(app);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let serve = handle.spawn(async move {
            let stopped = async move {
                let _ = stop_rx.await;
            };
            // With graceful shutdown the future never fails: accept errors are retried.
            let _ = axum::serve(listener, router).with_graceful_shutdown(stopped).await;
        });
        let sweeper = {
            let connections = Arc::clone(&connections);
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(connections.sweep_period()).await;
                    connections.sweep();
                }
            })
        };
        tracing::debug!(%local_addr, ?flavour, "http metadata server started");
        Ok(HttpMetadataServer {
            runtime: Arc::clone(runtime),
            local_addr,
            flavour,
            table,
            connections,
            stop_tx: Some(stop_tx),
            serve: Some(serve),
            sweeper: Some(sweeper),
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connection string a Mooncake engine is given, `http://<addr>/metadata` (an
    /// unspecified bind address is reported as loopback).
    pub fn url(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}{METADATA_PATH}", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// The flavour it answers as.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The store it serves.
    pub fn table(&self) -> &Arc<MetadataTable> {
        &self.table
    }

    /// The value stored under `key`, exactly as the server keys it (decoded in `Standalone`,
    /// as sent in `MasterEmbedded`).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.table.get(key).map(|v| v.to_vec())
    }

    /// A copy of the whole store, sorted by key.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.table.snapshot()
    }

    /// The number of client connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Stops accepting, lets requests in progress finish for up to 0.5 s, closes every
    /// connection that is left, and returns once the listening socket is closed (at most about
    /// 2.5 s). Called from inside a runtime (where it cannot wait), it closes everything at
    /// once and returns without waiting. Idempotent; drop calls it.
    pub fn stop(&mut self) {
        let Some(mut serve) = self.serve.take() else { return };
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.abort();
        }
        let connections = Arc::clone(&self.connections);
        if tokio::runtime::Handle::try_current().is_ok() {
            connections.shut_down_all();
            serve.abort();
            return;
        }
        self.runtime.block_on(async move {
            if tokio::time::timeout(STOP_GRACE, &mut serve).await.is_ok() {
                return;
            }
            connections.shut_down_all();
            if tokio::time::timeout(STOP_FORCE, &mut serve).await.is_err() {
                serve.abort();
                let _ = serve.await;
            }
        });
        tracing::debug!(local_addr = %self.local_addr, "http metadata server stopped");
    }
}

impl Drop for HttpMetadataServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for HttpMetadataServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetadataServer")
            .field("local_addr", &self.local_addr)
            .field("flavour", &self.flavour)
            .field("keys", &self.table.len())
            .finish()
    }
}

/// Runs a server on `bind` until SIGINT or SIGTERM, then stops it and returns `Ok` (the
/// wheel's command exits 0 on both). `on_ready` is called once it listens.
pub fn serve_until_signal(
    bind: SocketAddr,
    options: impl Into<ServerOptions>,
    on_ready: impl FnOnce(&HttpMetadataServer),
) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Installed before the socket is bound, so that a signal sent as soon as the port answers
    // is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let runtime = crate::runtime::acquire()?;
    let mut server = HttpMetadataServer::start(&runtime, bind, options)?;
    on_ready(&server);
    let signal = signals.forever().next();
    tracing::info!(?signal, "signal received: stopping the http metadata server");
    server.stop();
    Ok(())
}

/// A listening socket like aiohttp's (asyncio's): `SO_REUSEADDR`, `IPV6_V6ONLY` for an IPv6
/// address (`::` is not dual-stack), backlog 1024; non-blocking.
fn bind_listener(bind: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if bind.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&bind.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Answers one request as a server with `options` and `table` would, without a socket: the
/// entry point of the fuzz target `http_metadata` (`fuzz/`), which drives the routing, the key
/// parsing and the body limits with arbitrary methods, paths, queries and bodies. Must be
/// awaited inside a tokio runtime (a refused body is drained by a spawned task).
#[doc(hidden)]
pub async fn answer_for_fuzzing(
    options: ServerOptions,
    table: Arc<MetadataTable>,
    request: axum::extract::Request,
) -> axum::response::Response {
    routes::handle(axum::extract::State(Arc::new(App { options, table })), request).await
}
