//! RDMA: RC queue pairs over libibverbs, Mooncake's connection handshake and descriptor, NIC
//! striping by the priority matrix, failover to other NICs.
//!
//! - [`verbs`]: libibverbs loaded at run time (the library never links it).
//! - [`device`]: one context per device (PD, CQ, completion channel, port, GID), MRs.
//! - [`memory`]: every registered region on every device, drained before deregistration.
//! - [`endpoint`]: the queue pairs to one peer NIC, with bounded outstanding work.
//! - [`handshake`], `connect`: Mooncake's type-0 exchange, active and passive.
//! - [`peer`]: a target's devices, keys and matrix from its descriptor.
//! - `path`: slices to work requests and completions back, retries; `stripe`: the NIC pair
//!   of a slice; `chain`: its allocation-free buffers; `worker`: threads.
//! - `fake` (hidden): an in-memory device behind the same function table, for the per-slice
//!   benchmark (`benches/rdma_slice.rs`) and tests of the path without hardware. Only in unit
//!   tests and with the `rdma-fake` feature: the release library holds none of it.

mod chain;
pub(crate) mod connect;
pub mod device;
pub mod endpoint;
#[cfg(any(test, feature = "rdma-fake"))]
#[doc(hidden)]
pub mod fake;
pub mod handshake;
pub mod memory;
pub(crate) mod path;
pub mod peer;
pub mod settings;
mod stripe;
pub mod verbs;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use crate::metadata::descriptor::{BufferDesc, DeviceDesc};
use crate::metadata::handshake::ClientLimits;
use crate::runtime::RuntimeGuard;
use crate::topology::PriorityMatrix;
use crate::transport::{Error, LinkInfo, Route, Slice, Transport};
use path::{Core, Nic, Work};
pub use peer::RdmaPeer;
pub use settings::RdmaSettings;

/// How long unregistering waits for local work in flight on a region.
const UNREGISTER_DRAIN: Duration = Duration::from_secs(30);

/// Where RDMA slices go: a target segment's RDMA view.
#[derive(Clone)]
pub struct RdmaRoute(pub Arc<RdmaPeer>);

impl PartialEq for RdmaRoute {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for RdmaRoute {}

impl std::fmt::Debug for RdmaRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rdma({})", self.0.segment)
    }
}

/// What installing the transport needs from the engine.
pub struct InstallOptions {
    /// This engine's server name (NIC paths are `<server name>@<device>`).
    pub server_name: String,
    /// The engine's NIC priority matrix: its devices are the ones opened, its entries say
    /// which serve each location. Empty: every device libibverbs lists.
    pub matrix: PriorityMatrix,
    /// `MC_TE_FILTERS` / `MC_TE_FILTERS_EXCLUDE` for the no-matrix case.
    pub filter: crate::topology::DeviceFilter,
    pub runtime: Arc<RuntimeGuard>,
    pub limits: ClientLimits,
    pub settings: RdmaSettings,
}

/// The RDMA transport of one engine.
pub struct RdmaTransport {
    core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Whether RDMA can be used here: libibverbs loads and lists at least one device.
pub fn probe() -> Result<Vec<String>, String> {
    let v = verbs::verbs()?;
    let names = v.device_names();
    if names.is_empty() {
        return Err("libibverbs lists no RDMA device".into());
    }
    Ok(names)
}

impl RdmaTransport {
    /// Opens the devices (those of the matrix, else every listed one the filter allows) and
    /// starts their threads. Devices that cannot be opened are logged and left out; none at
    /// all is an error.
    pub fn start(opts: InstallOptions) -> Result<RdmaTransport, String> {
        let v = verbs::verbs()?;
        let listed = v.device_names();
        let wanted: Vec<String> = if opts.matrix.is_empty() {
            listed.iter().filter(|d| opts.filter.allows(d)).cloned().collect()
        } else {
            opts.matrix.devices().into_iter().filter(|d| listed.contains(d)).collect()
        };
        let mut nics = Vec::new();
        for name in &wanted {
            match device::Device::open(v, name, nics.len(), &opts.settings) {
                Ok(d) => nics.push(Arc::new(Nic::new(d))),
                Err(e) => tracing::warn!("RDMA device {name} left out: {e}"),
            }
        }
        if nics.is_empty() {
            return Err(format!("no RDMA device could be opened (listed: {listed:?}, wanted: {wanted:?})"));
        }
        let index_of = |n: &str| nics.iter().position(|x| x.device.name == n);
        let mut locations = HashMap::new();
        for (loc, entry) in &opts.matrix.entries {
            let preferred: Vec<usize> = entry.preferred.iter().filter_map(|n| index_of(n)).collect();
            let list = if preferred.is_empty() {
                entry.available.iter().filter_map(|n| index_of(n)).collect()
            } else {
                preferred
            };
            locations.insert(loc.clone(), list);
        }
        let core = Arc::new(Core::new(opts.settings, opts.server_name, nics, locations, opts.runtime, opts.limits));
        let t = RdmaTransport { core: core.clone(), threads: Mutex::new(Vec::new()) };
        for nic in &core.nics {
            let handles = worker::start(&core, nic).map_err(|e| format!("cannot start RDMA threads: {e}"))?;
            t.threads.lock().extend(handles);
        }
        Ok(t)
    }

    /// Names of the opened devices, in key order.
    pub fn device_names(&self) -> Vec<String> {
        self.core.nics.iter().map(|n| n.device.name.clone()).collect()
    }

    /// Registers a region on every device (remote access only when `remote`).
    pub fn register(&self, addr: u64, len: u64, location: &str, remote: bool) -> Result<(), String> {
        let devices: Vec<_> = self.core.nics.iter().map(|n| n.device.clone()).collect();
        self.core.memory.register(&devices, addr, len, location, remote, self.core.settings.max_mr_size)
    }

    /// Deregisters the region at `addr` once local work on it has drained.
    pub fn unregister(&self, addr: u64) {
        self.core.memory.unregister(addr, UNREGISTER_DRAIN);
    }

    /// The descriptor's `devices`.
    pub fn descriptor_devices(&self) -> Vec<DeviceDesc> {
        self.core
            .nics
            .iter()
            .map(|n| DeviceDesc {
                name: n.device.name.clone(),
                lid: n.device.lid,
                gid: verbs::gid_to_string(&n.device.gid),
            })
            .collect()
    }

    /// The descriptor's `buffers`: remotely accessible regions (in chunks), named by their
    /// location, with one rkey and lkey per device.
    pub fn descriptor_buffers(&self) -> Vec<BufferDesc> {
        self.core
            .memory
            .published()
            .into_iter()
            .map(|b| BufferDesc { name: b.location, addr: b.addr, length: b.len, rkey: b.rkeys, lkey: b.lkeys })
            .collect()
    }

    /// Answers a type-0 handshake request.
    pub fn accept_connection(&self, request: &Value) -> Value {
        connect::passive(&self.core, request)
    }

    /// `(device, bytes in flight, bandwidth in bits/s)` per device, for `getNicLoadStats`.
    pub fn nic_load(&self) -> Vec<(String, u64, f64)> {
        self.core
            .nics
            .iter()
            .map(|n| {
                let d = &n.device;
                (d.name.clone(), d.stats.inflight_bytes.load(Ordering::Relaxed), d.ewma_bits_per_second())
            })
            .collect()
    }

    /// Whether each device is in rotation (tests, diagnostics).
    pub fn device_states(&self) -> Vec<(String, bool)> {
        self.core.nics.iter().map(|n| (n.device.name.clone(), n.device.is_active())).collect()
    }
}

impl Transport for RdmaTransport {
    fn name(&self) -> &'static str {
        "rdma"
    }

    fn slice_size(&self) -> u64 {
        self.core.settings.slice_size
    }

    fn submit(&self, route: &Route, slices: Vec<Slice>) -> Result<(), Error> {
        let Route::Rdma(RdmaRoute(peer)) = route else {
            for s in slices {
                s.finish(false);
            }
            return Err(Error::WrongRoute("rdma", route.clone()));
        };
        if self.core.stopped.load(Ordering::Acquire) {
            for s in slices {
                s.finish(false);
            }
            return Err(Error::Closed);
        }
        let works = slices.into_iter().enumerate().map(|(i, slice)| Work {
            slice,
            peer: peer.clone(),
            ordinal: i as u32,
            attempt: 0,
        });
        self.core.dispatch(works);
        Ok(())
    }

    fn links(&self) -> Vec<LinkInfo> {
        let map = self.core.endpoints.lock();
        map.values()
            .map(|ep| LinkInfo {
                transport: "rdma",
                peer: format!("{} via {}", ep.peer_nic_path, ep.device.name),
                protocol_version: 0,
                connections: ep.qp_numbers().len(),
                requests_completed: ep.completed.load(Ordering::Relaxed),
                requests_failed: ep.failed.load(Ordering::Relaxed),
                bytes: ep.bytes.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn shutdown(&self) {
        if self.core.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let eps: Vec<_> = self.core.endpoints.lock().values().cloned().collect();
        for ep in eps {
            self.core.fail_endpoint(&ep, "the transport is shutting down");
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.core.forget_endpoints();
        self.core.memory.clear();
        tracing::debug!("RDMA transport stopped");
    }
}

impl Drop for RdmaTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}
