//! The Transfer Engine: local regions, open segments, batches, notifications.
//!
//! A [`TransferEngine`] owns one handshake server (its RPC port), the transports it installed
//! (local always; tcp and, where the build has it and a device opens, rdma: on request or by
//! auto-discovery) and the metadata store its connection string selected (P2P handshake, HTTP,
//! etcd, redis). Every method is safe to call from any thread.
//!
//! Where a request goes: [`TransferEngine::submit`] validates the batch's entries, picks a
//! [`Route`] per entry from the target segment's descriptor (own segment → local memcpy, else
//! same-host copy, rdma or tcp), cuts each entry into slices of the transport's slice size, reserves the tasks in the
//! [`batch::Batch`] and hands the slices to the transport; transports report each slice back to
//! the batch, which counts it into its task's status.
//!
//! [`Route`]: crate::transport::Route

pub mod batch;
pub mod error;
mod graceful;
pub mod id_map;
mod identity;
mod memory;
pub mod notify;
mod publisher;
#[cfg(rdma_transport)]
mod rdma;
pub mod regions;
pub mod segments;
mod topology;
mod transfer;

use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

pub use batch::{BatchOutcome, TaskState, TaskStatus};
pub use error::{Error, Result};
pub use topology::discover_local;
pub use transfer::TransferRequest;

use crate::config::Config;
use crate::error::Code;
use crate::metadata::handshake::{ClientLimits, HandshakeServer, HandshakeService};
use crate::metadata::p2p::P2pMetadata;
use crate::metadata::{self, Backend, BufferDesc, MetadataStore, RpcMeta, SegmentDescriptor, naming};
use crate::runtime::{self, RuntimeGuard};
use crate::transport::local::LocalTransport;
use crate::transport::tcp::{LaneSettings, TcpTransport};
use crate::transport::{LinkInfo, Transport};
use batch::BatchTable;
use notify::{NotifyInbox, NotifyOutbox};
use publisher::Publisher;
use regions::RegionTable;
use segments::SegmentCache;

/// Mooncake's transport names that this build knows but does not have: installing one is
/// `ERR_NOT_IMPLEMENTED`, uninstalling one is a no-op, any other name is an invalid argument.
#[cfg(rdma_transport)]
const UNAVAILABLE_TRANSPORTS: &[&str] = &["nvmeof", "efa", "nvlink", "cxl", "barex", "hip", "ascend"];
#[cfg(not(rdma_transport))]
const UNAVAILABLE_TRANSPORTS: &[&str] = &["rdma", "nvmeof", "efa", "nvlink", "cxl", "barex", "hip", "ascend"];

/// Arguments of `createTransferEngine`.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `"P2PHANDSHAKE"`, `"http://…"`, `"etcd://…"`, `"redis://…"`.
    pub metadata: String,
    /// The host this engine is reached at; in P2P mode any `:port` is ignored.
    pub local_server_name: String,
    /// Ignored in P2P mode, as in Mooncake.
    pub ip_or_host_name: String,
    /// Ignored in P2P mode, as in Mooncake.
    pub rpc_port: u64,
    /// Discover the topology (`src/topology/`) and install the transports it allows: tcp,
    /// and rdma where the build has it and a device opens (`MC_FORCE_TCP` keeps tcp only).
    pub auto_discover: bool,
}

impl EngineOptions {
    /// P2P handshake options for `host`, with tcp installed.
    pub fn p2p(host: &str) -> EngineOptions {
        EngineOptions {
            metadata: metadata::P2P_HANDSHAKE.into(),
            local_server_name: host.into(),
            ip_or_host_name: String::new(),
            rpc_port: 0,
            auto_discover: true,
        }
    }
}

/// One Transfer Engine. Cheap to clone handles are not offered: share it in an `Arc`.
pub struct TransferEngine {
    shared: Arc<EngineShared>,
}

pub(crate) struct EngineShared {
    config: Config,
    /// The shared runtime (kept alive for as long as the engine).
    runtime: Arc<RuntimeGuard>,
    /// The server (segment) name peers use: P2P `host:port`.
    server_name: String,
    /// Host published for this engine's handshake and data ports.
    public_host: String,
    rpc_port: u16,
    regions: Arc<RegionTable>,
    segments: Arc<SegmentCache>,
    batches: BatchTable,
    inbox: NotifyInbox,
    outbox: Arc<NotifyOutbox>,
    metadata: Arc<dyn MetadataStore>,
    local: Arc<LocalTransport>,
    tcp: RwLock<Option<Arc<TcpTransport>>>,
    #[cfg(rdma_transport)]
    rdma: RwLock<Option<Arc<crate::transport::rdma::RdmaTransport>>>,
    /// Same-host copies to peers that offer them (initiator side).
    shm: Arc<crate::transport::shm::ShmTransport>,
    /// This engine's offer of the same-host path (target side); `None` when off or unavailable.
    shm_export: Option<crate::transport::shm::ShmExport>,
    /// NUMA nodes, NICs and the NIC priority matrix (`topology.rs`).
    topology: RwLock<Arc<crate::topology::Topology>>,
    handshake: Mutex<Option<HandshakeServer>>,
    /// Re-publishes this engine when the metadata service lost it (not in P2P mode).
    publisher: Mutex<Option<Publisher>>,
    /// A publication failed (the service was down): the publisher retries.
    unpublished: std::sync::atomic::AtomicBool,
    /// This engine's `rpc_meta` was accepted: only then does shutdown withdraw the keys (an
    /// engine refused as a duplicate must not delete the other one's).
    registered: std::sync::atomic::AtomicBool,
    /// Set once shutdown started: new work is refused.
    stopped: std::sync::atomic::AtomicBool,
}

impl TransferEngine {
    /// Creates an engine, starts its handshake server, and installs tcp when `auto_discover`
    /// (or `MC_FORCE_TCP`) asks for it.
    pub fn new(opts: EngineOptions) -> Result<TransferEngine> {
        TransferEngine::with_config(opts, Config::from_env())
    }

    /// Like [`TransferEngine::new`] with settings given instead of read from the environment
    /// (embedders and tests: several engines with different settings in one process).
    pub fn with_config(opts: EngineOptions, config: Config) -> Result<TransferEngine> {
        crate::logging::init();
        config.log_ignored_variables();
        let backend = metadata::classify(&opts.metadata)?;
        let p2p_mode = backend == Backend::P2p;
        let runtime =
            runtime::acquire().map_err(|e| Error::new(Code::Context, format!("cannot start runtime: {e}")))?;
        let id = if p2p_mode {
            identity::p2p(&opts.local_server_name, &config)?
        } else {
            identity::with_metadata_server(&opts.local_server_name, &config)?
        };
        let rpc_port = id.rpc_port();
        let limits = client_limits(&config);
        let p2p = p2p_mode.then(|| Arc::new(P2pMetadata::new(runtime.clone(), limits, config.default_handshake_port)));
        let metadata: Arc<dyn MetadataStore> = match &p2p {
            Some(p) => p.clone(),
            None => metadata::open_service(&backend, runtime.clone(), &config)?,
        };
        let regions = Arc::new(RegionTable::default());
        let segments = Arc::new(SegmentCache::default());
        let outbox = Arc::new(NotifyOutbox::new(
            runtime.clone(),
            segments.clone(),
            metadata.clone(),
            limits,
            (id.public_host.clone(), rpc_port),
        ));
        let shared = Arc::new(EngineShared {
            runtime: runtime.clone(),
            server_name: id.server_name,
            public_host: id.public_host,
            rpc_port,
            batches: BatchTable::new(outbox.clone()),
            outbox,
            inbox: NotifyInbox::default(),
            local: Arc::new(LocalTransport::new(regions.clone())),
            regions,
            segments,
            metadata,
            tcp: RwLock::new(None),
            #[cfg(rdma_transport)]
            rdma: RwLock::new(None),
            shm: Arc::new(crate::transport::shm::ShmTransport::new()),
            shm_export: (config.same_host != crate::config::SameHost::Off)
                .then(|| crate::transport::shm::ShmExport::create(config.shm_revoke_timeout))
                .flatten(),
            topology: RwLock::new(Arc::new(topology::initial(&config, opts.auto_discover))),
            handshake: Mutex::new(None),
            publisher: Mutex::new(None),
            unpublished: Default::default(),
            registered: Default::default(),
            stopped: Default::default(),
            config,
        });
        let service: Weak<dyn HandshakeService> = Arc::downgrade(&shared) as Weak<EngineShared>;
        if let Some(p) = &p2p {
            p.set_local(service.clone());
        }
        let server = HandshakeServer::start(runtime, id.listener, service, shared.config.handshake_max_length)
            .map_err(|e| Error::new(Code::Socket, format!("cannot serve the handshake port: {e}")))?;
        *shared.handshake.lock() = Some(server);
        let engine = TransferEngine { shared };
        if !p2p_mode {
            // Mooncake's order: rpc_meta first (a refusal, such as a duplicate name, fails
            // initialisation), then the descriptor with no buffers.
            let rpc = RpcMeta { host: engine.shared.public_host.clone(), port: rpc_port };
            engine.shared.metadata.publish_rpc(&engine.shared.server_name, &rpc)?;
            engine.shared.registered.store(true, std::sync::atomic::Ordering::Release);
            engine.shared.metadata.publish_segment(&engine.shared.descriptor())?;
            let publisher = Publisher::start(Arc::downgrade(&engine.shared), engine.shared.config.metadata_refresh)
                .map_err(|e| Error::new(Code::Context, format!("cannot start the metadata refresher: {e}")))?;
            *engine.shared.publisher.lock() = Some(publisher);
            let segments = engine.shared.segments.clone();
            engine.shared.metadata.watch_segments(Arc::new(move |name: &str| segments.mark_stale(name)))?;
        }
        if opts.auto_discover || engine.shared.config.force_tcp {
            engine.install_transport("tcp")?;
        }
        #[cfg(rdma_transport)]
        if opts.auto_discover && !engine.shared.config.force_tcp {
            engine.auto_install_rdma();
        }
        tracing::info!(name = %engine.shared.server_name, metadata = engine.shared.metadata.kind(), "transfer engine started");
        Ok(engine)
    }

    /// The name peers open this engine's segment by.
    pub fn server_name(&self) -> &str {
        &self.shared.server_name
    }

    /// The handshake (RPC) port.
    pub fn rpc_port(&self) -> u16 {
        self.shared.rpc_port
    }

    /// `"ip:port"` of the handshake port, as `getLocalIpAndPort` writes it.
    pub fn local_ip_and_port(&self) -> String {
        format!("{}:{}", naming::wrap_ipv6(&self.shared.public_host), self.shared.rpc_port)
    }

    /// Installs a transport by protocol name. Installing one twice returns the existing one.
    /// Returns an opaque, stable identity of the transport (for `installTransport`'s handle).
    pub fn install_transport(&self, proto: &str) -> Result<usize> {
        self.shared.check_running()?;
        match proto {
            "tcp" => {
                let mut slot = self.shared.tcp.write();
                if let Some(t) = slot.as_ref() {
                    tracing::debug!("tcp transport already installed");
                    return Ok(Arc::as_ptr(t) as *const () as usize);
                }
                let cfg = &self.shared.config;
                let listener = identity::data_listener(cfg)
                    .map_err(|e| Error::new(Code::Socket, format!("no free tcp data port: {e}")))?;
                let settings = LaneSettings {
                    lanes_per_peer: cfg.tcp_lanes_per_peer,
                    keep_connections: cfg.tcp_connection_pool,
                    connect_timeout: cfg.handshake_connect_timeout.min(cfg.tcp_progress_timeout),
                    io_timeout: cfg.tcp_progress_timeout.min(cfg.tcp_status_timeout),
                    idle_exit: crate::transport::tcp::lane::LANE_IDLE_EXIT,
                };
                let tcp = TcpTransport::start(listener, self.shared.regions.clone(), settings)
                    .map_err(|e| Error::new(Code::Socket, format!("cannot start the tcp transport: {e}")))?;
                let tcp = Arc::new(tcp);
                let id = Arc::as_ptr(&tcp) as *const () as usize;
                *slot = Some(tcp);
                drop(slot);
                self.shared.publish();
                Ok(id)
            }
            #[cfg(rdma_transport)]
            "rdma" => self.shared.install_rdma(),
            p if UNAVAILABLE_TRANSPORTS.contains(&p) => Err(Error::new(
                Code::NotImplemented,
                format!("transport {proto:?} is not available in this build (tcp is)"),
            )),
            other => Err(Error::invalid(format!("unknown transport {other:?}"))),
        }
    }

    /// Uninstalls a transport: its threads stop and its queued work fails.
    pub fn uninstall_transport(&self, proto: &str) -> Result<()> {
        match proto {
            "tcp" => {
                let tcp = self.shared.tcp.write().take();
                if let Some(tcp) = tcp {
                    tcp.shutdown();
                    self.shared.publish();
                }
                Ok(())
            }
            #[cfg(rdma_transport)]
            "rdma" => {
                self.shared.uninstall_rdma();
                Ok(())
            }
            p if UNAVAILABLE_TRANSPORTS.contains(&p) => Ok(()),
            other => Err(Error::invalid(format!("unknown transport {other:?}"))),
        }
    }

    /// Installed transports' names.
    pub fn transports(&self) -> Vec<&'static str> {
        let mut v = vec!["local"];
        if self.shared.tcp.read().is_some() {
            v.push("tcp");
        }
        #[cfg(rdma_transport)]
        if self.shared.rdma.read().is_some() {
            v.push("rdma");
        }
        v
    }

    /// The descriptor peers receive for this engine's segment.
    pub fn local_descriptor(&self) -> SegmentDescriptor {
        self.shared.descriptor()
    }

    /// Drains received notifications.
    pub fn take_notifies(&self) -> Vec<(String, String)> {
        self.shared.inbox.drain()
    }

    /// Notifications (and their bytes) waiting in the inbox, which holds at most
    /// [`notify_limits`](Self::notify_limits), and how many were dropped to stay within them.
    pub fn notifies_held(&self) -> (usize, u64, u64) {
        let (count, bytes) = self.shared.inbox.held();
        (count, bytes, self.shared.inbox.dropped())
    }

    /// The inbox's limits (`MC_NOTIFY_*`, docs/ENV.md).
    pub fn notify_limits(&self) -> notify::InboxLimits {
        self.shared.inbox.limits()
    }

    /// Sends a notification to an open segment and waits for its acknowledgement.
    pub fn send_notify(&self, segment: i32, name: &str, msg: &str) -> Result<()> {
        self.shared.check_running()?;
        self.shared.outbox.send(segment, name, msg)
    }

    /// Sends a handshake probe to segment `name` (Mooncake's `send_probe`): Ok when it answers.
    pub fn send_probe(&self, name: &str) -> Result<()> {
        self.shared.check_running()?;
        let (host, port) = self.shared.metadata.rpc_address(name.trim_start_matches('/'))?;
        let limits = client_limits(&self.shared.config);
        self.shared
            .runtime
            .block_on(crate::metadata::handshake::request(
                &host,
                port,
                crate::metadata::handshake::FrameType::Probe,
                &serde_json::json!({}),
                limits,
            ))
            .map(|_| ())
            .map_err(Error::from)
    }

    /// Open links of every transport.
    pub fn links(&self) -> Vec<LinkInfo> {
        let mut links = self.shared.tcp.read().as_ref().map(|t| t.links()).unwrap_or_default();
        links.extend(self.shared.shm.links());
        #[cfg(rdma_transport)]
        if let Some(t) = self.shared.rdma.read().as_ref() {
            links.extend(crate::transport::Transport::links(&**t));
        }
        links
    }

    /// A description of open links: JSON (an array of objects) or one line per link.
    pub fn show_links(&self, json: bool) -> String {
        let links = self.links();
        if json {
            return serde_json::to_string(&links).unwrap_or_else(|_| "[]".into());
        }
        let mut out = format!("engine {} ({} link(s))\n", self.shared.server_name, links.len());
        for l in &links {
            out.push_str(&format!(
                "{} {} v{} connections={} completed={} failed={} bytes={}\n",
                l.transport,
                l.peer,
                l.protocol_version,
                l.connections,
                l.requests_completed,
                l.requests_failed,
                l.bytes
            ));
        }
        out
    }

    /// `(device, bytes in flight, bandwidth in bits/s)` per RDMA device (none without rdma).
    pub fn nic_load(&self) -> Vec<(String, u64, f64)> {
        #[cfg(rdma_transport)]
        return self.shared.rdma_nic_load();
        #[cfg(not(rdma_transport))]
        Vec::new()
    }

    /// The rdma transport, when installed (tests and diagnostics).
    #[cfg(rdma_transport)]
    pub fn rdma(&self) -> Option<Arc<crate::transport::rdma::RdmaTransport>> {
        self.shared.rdma.read().clone()
    }

    /// Installs rdma when discovery found a usable device and libibverbs loads; a failure is
    /// logged and the engine goes on with tcp (Mooncake falls back the same way).
    #[cfg(rdma_transport)]
    fn auto_install_rdma(&self) {
        let wanted =
            !self.shared.topology.read().matrix.devices().is_empty() || std::env::var_os("MC_FORCE_HCA").is_some();
        if !wanted {
            return;
        }
        match crate::transport::rdma::probe() {
            Err(e) => tracing::info!("rdma not installed: {e}"),
            Ok(_) => {
                if let Err(e) = self.install_transport("rdma") {
                    tracing::warn!("rdma not installed: {e}");
                }
            }
        }
    }

    /// The tcp transport, when installed (tests and diagnostics).
    pub fn tcp(&self) -> Option<Arc<TcpTransport>> {
        self.shared.tcp.read().clone()
    }

    /// On SIGINT/SIGTERM, shut this engine down (bounded) before the process exits.
    pub fn enable_graceful_shutdown(&self) -> Result<()> {
        graceful::register(Arc::downgrade(&self.shared))
    }

    /// Stops everything: handshake server, transports (queued work fails), and withdraws the
    /// descriptor from metadata. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}

impl Drop for TransferEngine {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl EngineShared {
    fn check_running(&self) -> Result<()> {
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::invalid("the engine is shutting down"));
        }
        Ok(())
    }

    fn descriptor(&self) -> SegmentDescriptor {
        let tcp = self.tcp.read();
        let buffers = self
            .regions
            .remote_regions()
            .into_iter()
            .map(|(addr, length)| BufferDesc { name: self.server_name.clone(), addr, length, ..Default::default() })
            .collect();
        #[allow(unused_mut)]
        let mut d = SegmentDescriptor {
            name: self.server_name.clone(),
            protocol: if tcp.is_some() { "tcp".into() } else { String::new() },
            buffers,
            tcp_data_host: tcp.as_ref().map(|_| self.public_host.clone()),
            tcp_data_port: tcp.as_ref().map(|t| t.data_port()).unwrap_or(0),
            tcp_proto_version: 2,
            rdma_server_name: String::new(),
            timestamp: metadata::descriptor::timestamp_now(),
            extensions: metadata::descriptor::Extensions {
                shm: self.shm_export.as_ref().map(|e| e.offer()),
                tcp_framing: tcp.as_ref().map_or(0, |_| crate::transport::tcp::local_framing()),
            },
            devices: Vec::new(),
            priority_matrix: None,
        };
        #[cfg(rdma_transport)]
        self.apply_rdma_descriptor(&mut d);
        d
    }

    /// Pushes the current descriptor to the metadata service (a no-op in P2P mode). A failure
    /// is logged and retried by the publisher, so local work goes on while the service is down.
    fn publish(&self) {
        if let Err(e) = self.metadata.publish_segment(&self.descriptor()) {
            self.unpublished.store(true, std::sync::atomic::Ordering::Release);
            tracing::warn!("publishing segment {}: {e} (will retry)", self.server_name);
        }
    }

    /// The publisher's periodic check: re-publishes `rpc_meta` and the descriptor when the
    /// service lost them or an earlier publication failed.
    fn refresh_publication(&self) {
        let lost = match self.metadata.is_published(&self.server_name) {
            Ok(present) => !present,
            Err(e) => {
                tracing::debug!("metadata check for {}: {e}", self.server_name);
                return; // the service is down: try again at the next tick
            }
        };
        if !lost && !self.unpublished.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let rpc = RpcMeta { host: self.public_host.clone(), port: self.rpc_port };
        // A surviving rpc_meta makes the PUT a duplicate (refused by the HTTP server): fine.
        let rpc_result = self.metadata.publish_rpc(&self.server_name, &rpc);
        match self.metadata.publish_segment(&self.descriptor()) {
            Ok(()) => {
                self.unpublished.store(false, std::sync::atomic::Ordering::Release);
                tracing::info!(name = %self.server_name, rpc = ?rpc_result.err(), "re-published to the metadata service");
            }
            Err(e) => tracing::debug!("re-publishing {}: {e}", self.server_name),
        }
    }

    fn shutdown(&self) {
        self.stop(None);
    }

    /// Stops the engine. With `drain`, new work is refused at once and tasks in flight get up
    /// to `drain` to finish (the signal path of `enableGracefulShutdown`); without, they fail
    /// now (`destroyTransferEngine`). Then the listeners close, the transports stop (joining
    /// every thread) and the descriptor is withdrawn.
    pub(crate) fn stop(&self, drain: Option<std::time::Duration>) {
        if self.stopped.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        if let Some(bound) = drain
            && !self.batches.wait_all_idle(bound)
        {
            tracing::warn!(name = %self.server_name, "tasks still in flight after {bound:?}; failing them");
        }
        if let Some(mut publisher) = self.publisher.lock().take() {
            publisher.stop();
        }
        if let Some(mut server) = self.handshake.lock().take() {
            server.stop();
        }
        if let Some(tcp) = self.tcp.write().take() {
            tcp.shutdown();
        }
        #[cfg(rdma_transport)]
        if let Some(rdma) = self.rdma.write().take() {
            crate::transport::Transport::shutdown(&*rdma);
        }
        // No peer copies into this process once this returns.
        if let Some(export) = &self.shm_export {
            export.close();
        }
        self.shm.shutdown();
        self.local.shutdown();
        if self.registered.load(std::sync::atomic::Ordering::Acquire)
            && let Err(e) = self.metadata.withdraw_segment(&self.server_name)
        {
            tracing::warn!("withdrawing segment {}: {e}", self.server_name);
        }
        tracing::debug!(name = %self.server_name, "transfer engine stopped");
    }
}

impl HandshakeService for EngineShared {
    fn local_descriptor(&self) -> Option<Value> {
        if !self.metadata.serves_descriptor_on_handshake() {
            return None;
        }
        Some(self.descriptor().to_json())
    }

    fn deliver_notify(&self, name: String, msg: String) {
        self.inbox.push(name, msg);
    }

    #[cfg(rdma_transport)]
    fn connection_reply(&self, request: &Value) -> Value {
        self.rdma_connection_reply(request)
    }
}

fn client_limits(config: &Config) -> ClientLimits {
    ClientLimits {
        connect_timeout: config.handshake_connect_timeout,
        reply_timeout: config.tcp_progress_timeout,
        max_frame: config.handshake_max_length,
    }
}
