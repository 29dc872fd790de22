//! The machine's topology: NUMA nodes and their CPUs, network interfaces and RDMA devices and
//! the node each sits on, and Mooncake's NIC priority matrix built from them.
//!
//! Why: Mooncake picks, for memory on node N, an RDMA device on node N first
//! (`Topology::selectDevice`), publishes that choice as its descriptor's `priority_matrix`, and
//! resolves the location `"*"` of a registration to the pages' node. The engine keeps one
//! [`Topology`] (discovered at creation when `auto_discover` is set, again on
//! `discoverTopology`, or given as JSON to `installTransport` / in `MC_CUSTOM_TOPO_JSON`), so
//! the RDMA transport can use it, and Python's `get_local_topology` prints it.
//!
//! Everything comes from sysfs ([`sysfs`]) and one system call ([`pages`]); nothing links
//! libnuma or libibverbs, so the library loads and serves TCP where they are missing. The
//! RDMA devices listed are those sysfs shows with an active port (Mooncake also opens each one
//! with verbs; the verbs plugin will repeat that check when it opens them).

pub mod filter;
pub mod matrix;
pub mod pages;
pub mod sysfs;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use filter::DeviceFilter;
pub use matrix::{MalformedMatrix, PriorityEntry, PriorityMatrix};
pub use pages::{ANY_LOCATION, LocationSpan};
pub use sysfs::{NetInterface, NumaNode, RdmaDevice, SysfsRoot};

/// Where a [`Topology`]'s matrix came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologySource {
    /// Nothing yet: an engine created without `auto_discover` (Mooncake's is empty then too).
    None,
    /// Built from sysfs.
    Discovered,
    /// Read from this `MC_CUSTOM_TOPO_JSON` file.
    CustomFile(PathBuf),
    /// Given by the caller (`installTransport`'s `args[0]`).
    Given,
}

/// See the module documentation.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub source: TopologySource,
    pub numa_nodes: Vec<NumaNode>,
    pub nics: Vec<NetInterface>,
    /// Every RDMA device sysfs lists (the matrix holds those the filter lets through and that
    /// have an active port).
    pub rdma_devices: Vec<RdmaDevice>,
    #[serde(skip)]
    pub matrix: PriorityMatrix,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            source: TopologySource::None,
            numa_nodes: Vec::new(),
            nics: Vec::new(),
            rdma_devices: Vec::new(),
            matrix: PriorityMatrix::default(),
        }
    }
}

impl Topology {
    /// Reads the machine from `sys`, keeping the RDMA devices `filter` allows.
    ///
    /// The matrix follows Mooncake's `discoverCpuTopology`: one `"cpu:<n>"` entry per NUMA
    /// node, whose preferred devices are the usable ones on that node and whose other devices
    /// are every other usable one (a device of unknown node, like soft-RoCE, is "other"
    /// everywhere).
    pub fn discover(sys: &SysfsRoot, filter: &DeviceFilter) -> Topology {
        let numa_nodes = sys.numa_nodes();
        let nics = sys.net_interfaces();
        let rdma_devices = sys.rdma_devices();
        let kept: Vec<&RdmaDevice> = rdma_devices
            .iter()
            .filter(|d| {
                let keep = filter.allows(&d.name);
                if !keep {
                    tracing::debug!(device = %d.name, "RDMA device filtered out");
                }
                keep && d.is_usable()
            })
            .collect();
        let mut matrix = PriorityMatrix::default();
        for node in &numa_nodes {
            let mut entry = PriorityEntry::default();
            for d in &kept {
                if d.numa_node == Some(node.id) {
                    entry.preferred.push(d.name.clone());
                } else {
                    entry.available.push(d.name.clone());
                }
            }
            matrix.entries.insert(format!("cpu:{}", node.id), entry);
        }
        let topology = Topology { source: TopologySource::Discovered, numa_nodes, nics, rdma_devices, matrix };
        tracing::debug!(
            numa_nodes = topology.numa_nodes.len(),
            nics = topology.nics.len(),
            rdma_devices = topology.rdma_devices.len(),
            usable = topology.matrix.devices().len(),
            "topology discovered from {}",
            sys.path().display()
        );
        topology
    }

    /// This topology with its matrix replaced by one given as JSON (Mooncake's
    /// `Topology::parse`); what was discovered about nodes and NICs is kept. Devices of the
    /// given matrix that `sys` shows no usable RDMA device for are dropped: Mooncake's RDMA
    /// transport drops those it cannot open (`disableDevice`), which is what its wheel then
    /// prints; the filters do not apply to a given matrix, in Mooncake either.
    pub fn with_matrix(&self, mut matrix: PriorityMatrix, source: TopologySource, sys: &SysfsRoot) -> Topology {
        let usable: Vec<String> = sys.rdma_devices().into_iter().filter(|d| d.is_usable()).map(|d| d.name).collect();
        matrix.retain_devices(|d| {
            let keep = usable.iter().any(|u| u == d);
            if !keep {
                tracing::info!(device = d, "NIC priority matrix names a device this machine cannot use; dropped");
            }
            keep
        });
        Topology { source, matrix, ..self.clone() }
    }

    /// What an engine starts with under `auto_discover` (Mooncake's `TransferEngineImpl::init`):
    /// the matrix of `custom_json` when that file can be read and parsed, else discovery. A
    /// file that cannot be used is logged and discovery is used instead (Mooncake falls back
    /// the same way for an unreadable file; for a malformed one it would keep an empty matrix).
    pub fn for_engine(sys: &SysfsRoot, filter: &DeviceFilter, custom_json: Option<&Path>) -> Topology {
        let discovered = Topology::discover(sys, filter);
        let Some(path) = custom_json else {
            return discovered;
        };
        match read_matrix_file(path) {
            Ok(matrix) => {
                tracing::info!("MC_CUSTOM_TOPO_JSON: NIC priority matrix from {}", path.display());
                discovered.with_matrix(matrix, TopologySource::CustomFile(path.to_path_buf()), sys)
            }
            Err(e) => {
                tracing::warn!("MC_CUSTOM_TOPO_JSON={}: {e}; using the discovered topology", path.display());
                discovered
            }
        }
    }

    /// Mooncake's text of the matrix (`Topology::toString`).
    pub fn to_mooncake_json(&self) -> String {
        self.matrix.to_styled_string()
    }

    /// The NUMA node ids, ascending.
    pub fn node_ids(&self) -> Vec<u32> {
        self.numa_nodes.iter().map(|n| n.id).collect()
    }
}

/// Reads and parses a matrix file.
pub fn read_matrix_file(path: &Path) -> Result<PriorityMatrix, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    PriorityMatrix::parse(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::sysfs::fake::FakeSysfs;
    use super::*;

    fn names(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn devices_are_preferred_on_their_own_node() {
        let f = FakeSysfs::two_nodes();
        let t = Topology::discover(&SysfsRoot::new(f.path()), &DeviceFilter::default());
        assert_eq!(t.node_ids(), [0, 1]);
        let m = &t.matrix.entries;
        assert_eq!(m.len(), 2);
        assert_eq!(names(&m["cpu:0"].preferred), ["mlx5_0"]);
        assert_eq!(names(&m["cpu:0"].available), ["mlx5_1", "rxe0"], "mlx5_2 has no active port");
        assert_eq!(names(&m["cpu:1"].preferred), ["mlx5_1"]);
        assert_eq!(names(&m["cpu:1"].available), ["mlx5_0", "rxe0"]);
        assert_eq!(t.rdma_devices.len(), 4, "the inventory keeps unusable devices");
        let filtered = Topology::discover(&SysfsRoot::new(f.path()), &DeviceFilter::new(&["mlx5_0".into()], &[]));
        assert_eq!(filtered.rdma_devices.len(), 4, "and filtered ones");
        assert_eq!(t.nics.iter().filter(|n| n.numa_node == Some(1)).count(), 1);
        assert_eq!(t.source, TopologySource::Discovered);
    }

    #[test]
    fn filters_remove_devices_from_the_matrix() {
        let f = FakeSysfs::two_nodes();
        let sys = SysfsRoot::new(f.path());
        let allow = Topology::discover(&sys, &DeviceFilter::new(&["mlx5_1".into()], &["mlx5_1".into()]));
        assert_eq!(allow.matrix.devices(), ["mlx5_1"]);
        assert!(allow.matrix.entries["cpu:0"].preferred.is_empty());
        let deny = Topology::discover(&sys, &DeviceFilter::new(&[], &["rxe0".into(), "mlx5_0".into()]));
        assert_eq!(deny.matrix.devices(), ["mlx5_1"]);
        let requested = Topology::discover(&sys, &DeviceFilter::default().requesting("rxe0"));
        assert_eq!(requested.matrix.devices(), ["rxe0"]);
        assert_eq!(names(&requested.matrix.entries["cpu:1"].available), ["rxe0"]);
    }

    #[test]
    fn no_numa_support_gives_an_empty_matrix_like_mooncake() {
        let f = FakeSysfs::new();
        f.file("class/infiniband/mlx5_0/ports/1/state", "4: ACTIVE\n");
        let t = Topology::discover(&SysfsRoot::new(f.path()), &DeviceFilter::default());
        assert!(t.matrix.is_empty());
        assert_eq!(t.to_mooncake_json(), "{}\n");
        assert_eq!(t.rdma_devices.len(), 1);
    }

    #[test]
    fn the_json_round_trips_and_a_custom_file_replaces_the_matrix() {
        let f = FakeSysfs::two_nodes();
        let sys = SysfsRoot::new(f.path());
        let t = Topology::discover(&sys, &DeviceFilter::default());
        let text = t.to_mooncake_json();
        assert_eq!(PriorityMatrix::parse(&text).unwrap(), t.matrix);

        let custom = f.path().join("custom.json");
        let json = r#"{"cpu:0": [["mlx5_9"], ["mlx5_2"]], "cuda:0": [["mlx5_1"], ["mlx5_0"]]}"#;
        std::fs::write(&custom, json).unwrap();
        let only_0 = DeviceFilter::new(&["mlx5_0".into()], &[]);
        let c = Topology::for_engine(&sys, &only_0, Some(&custom));
        assert_eq!(c.source, TopologySource::CustomFile(custom.clone()));
        assert_eq!(
            c.matrix.devices(),
            ["mlx5_1", "mlx5_0"],
            "unknown and inactive devices dropped, filters not applied"
        );
        assert!(c.matrix.entries["cpu:0"].preferred.is_empty() && c.matrix.entries["cpu:0"].available.is_empty());
        assert_eq!(c.node_ids(), [0, 1], "nodes stay those discovered");

        std::fs::write(&custom, "{not json").unwrap();
        let bad = Topology::for_engine(&sys, &DeviceFilter::default(), Some(&custom));
        assert_eq!(bad.source, TopologySource::Discovered, "a malformed file falls back to discovery");
        assert_eq!(bad.matrix, t.matrix);
        assert!(read_matrix_file(&custom).unwrap_err().contains("malformed NIC priority matrix: not JSON"));
        let missing = f.path().join("missing.json");
        assert!(read_matrix_file(&missing).unwrap_err().contains("cannot read"));
        assert_eq!(Topology::for_engine(&sys, &DeviceFilter::default(), Some(&missing)).matrix, t.matrix);
    }

    #[test]
    fn this_machine_has_at_least_one_node_when_sysfs_shows_one() {
        let t = Topology::discover(&SysfsRoot::default(), &DeviceFilter::default());
        let has_nodes = Path::new("/sys/devices/system/node/node0").exists();
        assert_eq!(!t.numa_nodes.is_empty(), has_nodes);
        assert!(t.nics.iter().all(|n| n.name != "lo"));
    }
}
