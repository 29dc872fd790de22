//! [`RealClient`]: set-up, close, heartbeats, buffer registration, queries and removals. The put
//! and get paths are in `put.rs` and `get.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use super::rpc::MasterClient;
use super::staging::Staging;
use super::{ErrorCode, RPC_TIMEOUT, StoreConfig, StoreError, StoreResult};
use crate::engine::{EngineOptions, TransferEngine};
use crate::proto::{Request, Response, SegmentId};
use crate::sys::mapping::Mapping;

/// How often a client tells the master it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest `close` keeps an unmounted segment registered for readers still holding leases.
const MAX_UNMOUNT_WAIT: Duration = Duration::from_secs(10);

/// The real store client (see [`super::Store`]): an engine, the segments it contributes,
/// connections to the master. Every method may be called from any thread at once; after
/// [`close`](RealClient::close) (or drop) every operation fails with `INVALID_PARAMS` and
/// `health_check` says 1.
pub struct RealClient {
    pub(super) inner: Arc<Inner>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

/// A segment this client contributes.
pub(super) struct Mounted {
    pub id: SegmentId,
    pub memory: Mapping,
}

pub(super) struct Inner {
    pub engine: Arc<TransferEngine>,
    /// Shut the engine down on close: false for an engine shared by its creator
    /// (`setup` with an engine, see `surface.rs`).
    pub owns_engine: bool,
    /// Put and get sessions (`session.rs`).
    pub sessions: super::session::Sessions,
    pub master: MasterClient,
    /// The engine segment name, as replicas in this process are named.
    pub hostname: String,
    pub segments: Mutex<Vec<Mounted>>,
    /// `None` when `local_buffer_size` is 0: puts and gets of bytes then fail, as Mooncake's.
    pub staging: Option<Staging>,
    /// Buffers registered by the caller: start → length.
    pub buffers: RwLock<BTreeMap<u64, u64>>,
    /// Copy replicas of this process with memcpy (`MC_STORE_MEMCPY`, on by default).
    pub memcpy_local: bool,
    pub closed: AtomicBool,
    stop: Mutex<bool>,
    stop_signal: Condvar,
}

impl RealClient {
    /// The transfer engine this client moves bytes with (its transports, links and
    /// descriptor); owned by the client.
    pub fn engine(&self) -> &TransferEngine {
        &self.inner.engine
    }

    /// Connects to the master, starts the engine, allocates and mounts the segment and the
    /// staging buffer. A master that is down fails with `RPC_FAIL`.
    pub fn setup(config: &StoreConfig) -> StoreResult<RealClient> {
        crate::logging::init();
        let master = MasterClient::connect(&config.master_server_addr, rand::random(), RPC_TIMEOUT)?;
        let engine = TransferEngine::new(EngineOptions {
            metadata: config.metadata_server.clone(),
            local_server_name: with_port(&config.local_hostname),
            ip_or_host_name: String::new(),
            rpc_port: 0,
            auto_discover: true,
        })
        .map_err(|e| {
            StoreError::new(ErrorCode::InternalError, format!("cannot start the transfer engine: {}", e.message))
        })?;
        // Discovery installs rdma where devices exist; a store asked for tcp keeps to tcp, one
        // asked for rdma with `device_name` (comma-separated) uses those NICs only, and one
        // asked for rdma on a host without it uses tcp, as Mooncake does.
        if config.protocol == "tcp" {
            let _ = engine.uninstall_transport("rdma");
        } else if !config.device_name.is_empty() && engine.transports().contains(&"rdma") {
            let _ = engine.uninstall_transport("rdma");
            let matrix = crate::engine::discover_local(&config.device_name).to_mooncake_json();
            if let Err(e) = engine.install_transport_with_matrix("rdma", Some(&matrix)) {
                tracing::warn!("rdma over {:?} is not available ({}); using tcp", config.device_name, e.message);
            }
        }
        if config.protocol != "tcp" && !engine.transports().contains(&"rdma") {
            tracing::warn!(
                "store protocol {:?} is not available here; using tcp, as Mooncake does without RDMA devices",
                config.protocol
            );
        }
        RealClient::start(config, master, Arc::new(engine), true)
    }

    /// The rest of `setup` once the master is connected and the engine runs (`owns_engine`:
    /// false when the caller shares its engine).
    pub(super) fn start(
        config: &StoreConfig,
        master: MasterClient,
        engine: Arc<TransferEngine>,
        owns_engine: bool,
    ) -> StoreResult<RealClient> {
        // A zero `local_buffer_size` makes a client without a buffer, as Mooncake's: zero-copy
        // calls work, `put`/`get` of bytes fail with INVALID_PARAMS.
        let staging = match config.local_buffer_size {
            0 => None,
            len => Some(Staging::new(len)?),
        };
        if let Some(staging) = &staging {
            engine.register_memory(staging.addr(), staging.len(), "*", false)?;
        }
        let hostname = engine.server_name().to_string();
        let inner = Arc::new(Inner {
            engine,
            owns_engine,
            sessions: Default::default(),
            master,
            hostname,
            segments: Mutex::new(Vec::new()),
            staging,
            buffers: RwLock::new(BTreeMap::new()),
            memcpy_local: !matches!(std::env::var("MC_STORE_MEMCPY").as_deref(), Ok("0" | "false" | "off")),
            closed: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
        });
        let store = RealClient { heartbeat: Mutex::new(Some(start_heartbeat(&inner)?)), inner };
        if config.global_segment_size > 0 {
            store.mount_segment(config.global_segment_size)?;
        }
        tracing::info!(hostname = %store.inner.hostname, segment = config.global_segment_size, "store client ready");
        Ok(store)
    }

    /// Contributes `size` more bytes to the pool (Mooncake's `mount_segment`).
    pub fn mount_segment(&self, size: u64) -> StoreResult<()> {
        let inner = self.inner.live()?;
        let memory = Mapping::new(size)?;
        inner.engine.register_memory(memory.addr(), memory.len(), "*", true)?;
        let segment = Mounted { id: rand::random(), memory };
        if let Err(e) = inner.mount(&segment) {
            let _ = inner.engine.unregister_memory(segment.memory.addr());
            return Err(e);
        }
        inner.segments.lock().push(segment);
        Ok(())
    }

    /// The engine segment name other clients reach this one by (`host:port`).
    pub fn hostname(&self) -> String {
        self.inner.hostname.clone()
    }

    /// 0 healthy, 1 closed, 2 master unreachable (Mooncake's `health_check`).
    pub fn health_check(&self) -> i32 {
        if self.inner.closed.load(Ordering::Acquire) {
            return 1;
        }
        match self.inner.master.call(&Request::Health) {
            Ok(_) => 0,
            Err(_) => 2,
        }
    }

    /// Unmounts the segments (keeping their memory registered while readers may still hold
    /// leases on it), stops heartbeats, and closes the connections. Idempotent.
    pub fn close(&self) -> StoreResult<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *self.inner.stop.lock() = true;
        self.inner.stop_signal.notify_all();
        if let Some(h) = self.heartbeat.lock().take() {
            let _ = h.join();
        }
        // Our finished reads first: a segment (ours or another client's) must not wait out the
        // lease of a read that is over.
        if let Err(e) = self.inner.master.flush_reads() {
            tracing::debug!("telling the master about finished reads: {e}");
        }
        let segments = std::mem::take(&mut *self.inner.segments.lock());
        let mut wait = Duration::ZERO;
        let mut first_err = None;
        for s in &segments {
            match self
                .inner
                .master
                .call(&Request::UnmountSegment { client: self.inner.master.client_id(), segment: s.id })
            {
                Ok(Response::Unmounted { wait_ms }) => wait = wait.max(Duration::from_millis(wait_ms)),
                Ok(other) => {
                    first_err.get_or_insert(unexpected("UnmountSegment", &other));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !wait.is_zero() {
            std::thread::sleep(wait.min(MAX_UNMOUNT_WAIT));
        }
        for s in &segments {
            let _ = self.inner.engine.unregister_memory(s.memory.addr());
        }
        self.inner.master.close();
        if self.inner.owns_engine {
            self.inner.engine.shutdown();
        } else if let Some(staging) = &self.inner.staging {
            let _ = self.inner.engine.unregister_memory(staging.addr());
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Registers `len` bytes at `addr` for `put_from`/`get_into`.
    pub fn register_buffer(&self, addr: u64, len: u64) -> StoreResult<()> {
        let inner = self.inner.live()?;
        if addr == 0 || len == 0 {
            return Err(StoreError::invalid(format!("cannot register {len} bytes at {addr:#x}")));
        }
        inner
            .engine
            .register_memory(addr, len, "*", false)
            .map_err(|e| StoreError::invalid(format!("cannot register {len} bytes at {addr:#x}: {}", e.message)))?;
        inner.buffers.write().insert(addr, len);
        Ok(())
    }

    pub fn unregister_buffer(&self, addr: u64) -> StoreResult<()> {
        let inner = self.inner.live()?;
        if inner.buffers.write().remove(&addr).is_none() {
            return Err(StoreError::invalid(format!("no buffer is registered at {addr:#x}")));
        }
        inner.engine.unregister_memory(addr).map_err(|e| StoreError::invalid(e.message))
    }

    /// Whether `key` is visible (and a read lease on it, as Mooncake's `IsExist` grants).
    pub fn is_exist(&self, key: &str) -> StoreResult<bool> {
        self.batch_is_exist(&[key]).pop().unwrap_or_else(|| Err(StoreError::new(ErrorCode::InternalError, "no answer")))
    }

    pub fn batch_is_exist(&self, keys: &[&str]) -> Vec<StoreResult<bool>> {
        let request = Request::BatchExists { keys: keys.iter().map(|k| k.to_string()).collect() };
        match self.inner.live().and_then(|inner| inner.master.call(&request)) {
            Ok(Response::Flags(flags)) if flags.len() == keys.len() => flags
                .into_iter()
                .zip(keys)
                .map(|(f, k)| f.map_err(|c| StoreError::from_master(c, &format!("IsExist {k:?}"))))
                .collect(),
            Ok(other) => keys.iter().map(|_| Err(unexpected("BatchExists", &other))).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// The size of `key`'s value (with a read lease, as Mooncake's `GetSize` does).
    pub fn get_size(&self, key: &str) -> StoreResult<u64> {
        let inner = self.inner.live()?;
        let info = inner.object(key)?;
        inner.master.reads_finished([(key.to_string(), info.read_id)]);
        Ok(info.size)
    }

    /// Removes `key`; a leased one only with `force` (its space is still kept until the lease
    /// ends, so a reader never sees it reused).
    pub fn remove(&self, key: &str, force: bool) -> StoreResult<()> {
        check_key(key)?;
        match self.inner.live()?.master.call(&Request::Remove { key: key.into(), force })? {
            Response::Done => Ok(()),
            other => Err(unexpected("Remove", &other)),
        }
    }

    /// Removes every key matching `pattern`; the count removed.
    pub fn remove_by_regex(&self, pattern: &str, force: bool) -> StoreResult<i64> {
        count(self.inner.live()?.master.call(&Request::RemoveByRegex { pattern: pattern.into(), force })?)
    }

    /// Removes every key (leased ones only with `force`); the count removed.
    pub fn remove_all(&self, force: bool) -> StoreResult<i64> {
        count(self.inner.live()?.master.call(&Request::RemoveAll { force })?)
    }
}

impl Drop for RealClient {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!("closing the store client: {e}");
        }
    }
}

impl Inner {
    /// `self`, unless the store was closed.
    pub fn live(&self) -> StoreResult<&Inner> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::invalid("the store client is closed"));
        }
        Ok(self)
    }

    fn mount(&self, segment: &Mounted) -> StoreResult<()> {
        let request = Request::MountSegment {
            client: self.master.client_id(),
            segment: segment.id,
            name: self.hostname.clone(),
            base: segment.memory.addr(),
            size: segment.memory.len(),
        };
        match self.master.call(&request)? {
            Response::Done => Ok(()),
            other => Err(unexpected("MountSegment", &other)),
        }
    }

    /// The master's description of `key`, with a read lease.
    pub fn object(&self, key: &str) -> StoreResult<crate::proto::ObjectInfo> {
        check_key(key)?;
        match self.master.call(&Request::GetReplicas { key: key.into() })? {
            Response::Object(info) if !info.replicas.is_empty() => Ok(info),
            other => Err(unexpected("GetReplicas", &other)),
        }
    }

    /// Copies `bytes` to `addr` in one of this client's own segments (a replica the master
    /// placed here).
    pub fn write_own(&self, addr: u64, bytes: &[u8]) -> StoreResult<()> {
        if self.segments.lock().iter().any(|s| s.memory.write_at(addr, bytes)) {
            return Ok(());
        }
        Err(StoreError::new(ErrorCode::InvalidReplica, format!("{:#x} is not in a segment of this client", addr)))
    }

    /// Fills `out` from `addr` in one of this client's own segments.
    pub fn read_own(&self, addr: u64, out: &mut [u8]) -> StoreResult<()> {
        if self.segments.lock().iter().any(|s| s.memory.read_at(addr, out)) {
            return Ok(());
        }
        Err(StoreError::new(ErrorCode::InvalidReplica, format!("{:#x} is not in a segment of this client", addr)))
    }

    /// The staging buffer; `INVALID_PARAMS` when the client has none (`local_buffer_size` 0:
    /// Mooncake's put answers the same when its buffer cannot hold the value).
    pub fn staging(&self) -> StoreResult<&Staging> {
        self.staging.as_ref().ok_or_else(|| {
            StoreError::invalid("this client has no local buffer (local_buffer_size 0): put and get of bytes need one")
        })
    }

    /// Whether `[addr, addr + len)` lies inside one registered buffer.
    pub fn is_registered(&self, addr: u64, len: u64) -> bool {
        let buffers = self.buffers.read();
        buffers
            .range(..=addr)
            .next_back()
            .is_some_and(|(&start, &size)| addr.checked_add(len).is_some_and(|end| end <= start + size))
    }
}

fn start_heartbeat(inner: &Arc<Inner>) -> StoreResult<JoinHandle<()>> {
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("mooncake-store-hb".into())
        .spawn(move || {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                {
                    let mut stop = inner.stop.lock();
                    if !*stop {
                        inner.stop_signal.wait_for(&mut stop, HEARTBEAT);
                    }
                    if *stop {
                        return;
                    }
                }
                beat(&inner);
            }
        })
        .map_err(|e| StoreError::new(ErrorCode::InternalError, format!("cannot start the heartbeat thread: {e}")))
}

/// One heartbeat; a master that forgot this client (it expired, or the master restarted) gets
/// the segments mounted again.
fn beat(inner: &Inner) {
    match inner.master.call(&Request::Ping { client: inner.master.client_id() }) {
        Ok(Response::Pong { known: true }) => {}
        Ok(Response::Pong { known: false }) => {
            let segments = inner.segments.lock();
            if !segments.is_empty() {
                tracing::warn!("the master lost this client; mounting its segments again");
            }
            for s in segments.iter() {
                if let Err(e) = inner.mount(s) {
                    tracing::warn!("mounting segment again: {e}");
                }
            }
        }
        Ok(other) => tracing::warn!("heartbeat: {}", unexpected("Ping", &other)),
        Err(e) => tracing::debug!("heartbeat: {e}"),
    }
}

/// `host` with a port from `MC_STORE_CLIENT_MIN_PORT..=MC_STORE_CLIENT_MAX_PORT` when it has
/// none (Mooncake's store does the same for `local_hostname`).
fn with_port(host: &str) -> String {
    let has_port = match host.rsplit_once(':') {
        Some((h, p)) => {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        return host.to_string();
    }
    let env = |name: &str, default: u16| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (lo, hi) = (env("MC_STORE_CLIENT_MIN_PORT", 12300), env("MC_STORE_CLIENT_MAX_PORT", 14300));
    let port = if lo < hi { rand::random_range(lo..=hi) } else { lo };
    format!("{host}:{port}")
}

pub(super) fn check_key(key: &str) -> StoreResult<()> {
    if key.is_empty() {
        return Err(StoreError::invalid("the key is empty"));
    }
    Ok(())
}

pub(super) fn unexpected(what: &str, response: &Response) -> StoreError {
    StoreError::new(ErrorCode::RpcFail, format!("{what}: unexpected answer from the master: {response:?}"))
}

fn count(response: Response) -> StoreResult<i64> {
    match response {
        Response::Count(n) => Ok(n),
        other => Err(unexpected("Remove", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn a_port_is_added_only_when_missing() {
        assert_eq!(with_port("10.0.0.1:5000"), "10.0.0.1:5000");
        assert_eq!(with_port("[::1]:5000"), "[::1]:5000");
        let named = with_port("node-a");
        let port: u16 = named.strip_prefix("node-a:").unwrap().parse().unwrap();
        assert!((12300..=14300).contains(&port));
    }
}
