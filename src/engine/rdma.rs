//! The engine's side of the RDMA transport (cargo feature `rdma`): installing it, giving it
//! every registered region, the rdma descriptor, routes to rdma segments, and the type-0
//! handshake.

use std::sync::Arc;

use super::regions::Region;
use super::{EngineShared, Error, Result};
use crate::error::Code;
use crate::metadata::SegmentDescriptor;
use crate::topology::PriorityEntry;
use crate::transport::Route;
use crate::transport::rdma::{InstallOptions, RdmaPeer, RdmaRoute, RdmaSettings, RdmaTransport};

impl EngineShared {
    /// Installs rdma (once): opens the devices of the engine's matrix and registers every
    /// region already registered.
    pub(super) fn install_rdma(&self) -> Result<usize> {
        let mut slot = self.rdma.write();
        if let Some(t) = slot.as_ref() {
            return Ok(Arc::as_ptr(t) as *const () as usize);
        }
        let topology = self.topology.read().clone();
        let opts = InstallOptions {
            server_name: self.server_name.clone(),
            matrix: topology.matrix.clone(),
            filter: super::topology::device_filter(&self.config),
            runtime: self.runtime.clone(),
            limits: super::client_limits(&self.config),
            settings: RdmaSettings::from_env(),
        };
        let t = RdmaTransport::start(opts).map_err(|e| Error::new(Code::DeviceNotFound, format!("rdma: {e}")))?;
        for r in self.regions.all() {
            t.register(r.addr, r.len, &r.resolved_location, r.remote_accessible)
                .map_err(|e| Error::new(Code::Memory, format!("rdma: registering {:#x}+{}: {e}", r.addr, r.len)))?;
        }
        tracing::info!(devices = ?t.device_names(), "rdma transport installed");
        let t = Arc::new(t);
        let id = Arc::as_ptr(&t) as *const () as usize;
        *slot = Some(t);
        drop(slot);
        self.publish();
        Ok(id)
    }

    pub(super) fn uninstall_rdma(&self) {
        let t = self.rdma.write().take();
        if let Some(t) = t {
            crate::transport::Transport::shutdown(&*t);
            self.publish();
        }
    }

    /// Registers new regions with rdma (when installed); on failure none stays registered
    /// with it and the error names the device and cause.
    pub(super) fn rdma_register(&self, regions: &[(u64, u64, String, bool)]) -> Result<()> {
        let Some(t) = self.rdma.read().clone() else { return Ok(()) };
        for (i, (addr, len, location, remote)) in regions.iter().enumerate() {
            if let Err(e) = t.register(*addr, *len, location, *remote) {
                for (a, ..) in &regions[..i] {
                    t.unregister(*a);
                }
                return Err(Error::new(Code::Memory, format!("rdma: {e}")));
            }
        }
        Ok(())
    }

    pub(super) fn rdma_unregister(&self, addrs: &[u64]) {
        if let Some(t) = self.rdma.read().clone() {
            for &a in addrs {
                t.unregister(a);
            }
        }
    }

    /// With rdma installed, the descriptor is Mooncake's rdma one: `protocol` `"rdma"`, the
    /// devices, buffers named by location with their keys, and a matrix that names every
    /// published location (tcp stays reachable for our own engines through the extension).
    pub(super) fn apply_rdma_descriptor(&self, d: &mut SegmentDescriptor) {
        let Some(t) = self.rdma.read().clone() else { return };
        d.protocol = "rdma".into();
        d.devices = t.descriptor_devices();
        d.buffers = t.descriptor_buffers();
        let names = t.device_names();
        let mut matrix = self.topology.read().matrix.clone();
        matrix.retain_devices(|n| names.iter().any(|x| x == n));
        for b in &d.buffers {
            matrix
                .entries
                .entry(b.name.clone())
                .or_insert_with(|| PriorityEntry { preferred: Vec::new(), available: names.clone() });
        }
        d.priority_matrix = Some(matrix);
    }

    /// The rdma route to a segment that publishes RDMA (when rdma is installed here).
    pub(super) fn plan_rdma(
        &self,
        segment: &super::segments::SegmentEntry,
    ) -> Result<Option<(Route, Arc<RdmaTransport>)>> {
        let Some(t) = self.rdma.read().clone() else { return Ok(None) };
        if !segment.descriptor.speaks_rdma() {
            return Ok(None);
        }
        let peer = segment.rdma.get_or_init(|| {
            let rpc = match &segment.rpc {
                Some(rpc) => rpc.clone(),
                None => self.metadata.rpc_address(&segment.name).map_err(|e| e.to_string())?,
            };
            RdmaPeer::from_descriptor(&segment.name, rpc, &segment.descriptor).map(Arc::new)
        });
        match peer {
            Ok(p) => Ok(Some((Route::Rdma(RdmaRoute(p.clone())), t))),
            Err(e) => Err(Error::new(
                Code::NotSupportedTransport,
                format!("segment {}: its RDMA descriptor cannot be used: {e}", segment.name),
            )),
        }
    }

    /// A type-0 request: connect an endpoint, or the empty reply when rdma is not installed.
    pub(super) fn rdma_connection_reply(&self, request: &serde_json::Value) -> serde_json::Value {
        match self.rdma.read().clone() {
            Some(t) => t.accept_connection(request),
            None => crate::metadata::handshake::empty_connection_reply(),
        }
    }

    pub(super) fn rdma_nic_load(&self) -> Vec<(String, u64, f64)> {
        self.rdma.read().as_ref().map(|t| t.nic_load()).unwrap_or_default()
    }
}

/// Regions as the rdma transport registers them.
pub(super) fn region_args(regions: &[Region]) -> Vec<(u64, u64, String, bool)> {
    regions.iter().map(|r| (r.addr, r.len, r.resolved_location.clone(), r.remote_accessible)).collect()
}
