//! The engine's topology: discovered at creation under `auto_discover`, again on
//! `discoverTopology`, or replaced by a NIC priority matrix given to `installTransport`.

use std::sync::Arc;

use super::{Error, Result, TransferEngine};
use crate::config::Config;
use crate::error::Code;
use crate::topology::{DeviceFilter, PriorityMatrix, SysfsRoot, Topology, TopologySource};

/// The device filter of `MC_TE_FILTERS` / `MC_TE_FILTERS_EXCLUDE`.
pub(crate) fn device_filter(config: &Config) -> DeviceFilter {
    DeviceFilter::new(&config.te_filters, &config.te_filters_exclude)
}

/// What an engine starts with: under `auto_discover` the machine's topology (or the matrix of
/// `MC_CUSTOM_TOPO_JSON`), else an empty one, as in Mooncake's `TransferEngineImpl::init`.
pub(crate) fn initial(config: &Config, auto_discover: bool) -> Topology {
    if !auto_discover {
        return Topology::default();
    }
    Topology::for_engine(&SysfsRoot::default(), &device_filter(config), config.custom_topo_json.as_deref())
}

/// A fresh discovery outside any engine, as Mooncake's Python `get_local_topology` makes one
/// with a temporary engine: the environment's filters and `MC_CUSTOM_TOPO_JSON` apply, and
/// `devices` (comma-separated, may be empty) restricts the RDMA devices further.
pub fn discover_local(devices: &str) -> Topology {
    let config = Config::from_env();
    let filter = device_filter(&config).requesting(devices);
    Topology::for_engine(&SysfsRoot::default(), &filter, config.custom_topo_json.as_deref())
}

impl TransferEngine {
    /// The engine's current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.shared.topology.read().clone()
    }

    /// Discovers the machine again from sysfs (Mooncake's `discoverTopology` runs
    /// `Topology::discover` with no device list: `MC_TE_FILTERS` applies,
    /// `MC_CUSTOM_TOPO_JSON` does not).
    pub fn discover_topology(&self) -> Result<()> {
        self.shared.check_running()?;
        let topology = Topology::discover(&SysfsRoot::default(), &device_filter(&self.shared.config));
        *self.shared.topology.write() = Arc::new(topology);
        Ok(())
    }

    /// Replaces the matrix with one given as Mooncake's JSON, less the devices this machine
    /// cannot use (see `Topology::with_matrix`); nodes and NICs stay as discovered. A malformed
    /// text is `ERR_MALFORMED_JSON` and changes nothing.
    pub fn set_priority_matrix(&self, json: &str) -> Result<()> {
        let matrix = PriorityMatrix::parse(json).map_err(|e| Error::new(Code::MalformedJson, e.to_string()))?;
        let mut slot = self.shared.topology.write();
        let next = slot.with_matrix(matrix, TopologySource::Given, &SysfsRoot::default());
        *slot = Arc::new(next);
        Ok(())
    }

    /// `installTransport(proto, args)`: like Mooncake's `TransferEngineImpl::installTransport`,
    /// a transport already installed is returned as is; otherwise a matrix in `args[0]` is
    /// parsed and becomes the engine's (for any protocol, before the transport is tried).
    pub fn install_transport_with_matrix(&self, proto: &str, matrix_json: Option<&str>) -> Result<usize> {
        if let Some(json) = matrix_json
            && !self.transports().contains(&proto)
        {
            self.set_priority_matrix(json)
                .map_err(|e| Error::new(e.code, format!("args[0] of {proto:?}: {}", e.message)))?;
        }
        self.install_transport(proto)
    }
}
