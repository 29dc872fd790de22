//! What the kernel says about NUMA nodes, network interfaces and RDMA devices, read from sysfs.
//!
//! Every read goes through a [`SysfsRoot`] (normally `/sys`), so that tests can build a fake
//! tree in a temporary directory. Missing or unreadable files are not errors: the kernel omits
//! what a machine does not have (no `device/numa_node` for virtual devices or soft-RoCE, no
//! `/sys/devices/system/node` without `CONFIG_NUMA`), and discovery reports "unknown" there.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// One NUMA node and the CPUs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    pub id: u32,
    /// CPU numbers, ascending (from `nodeN/cpulist`; empty for a memory-only node).
    pub cpus: Vec<u32>,
}

/// One network interface of `/sys/class/net` (loopback excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetInterface {
    pub name: String,
    /// `device/numa_node` (or the device's parent's); `None` when the kernel does not say.
    pub numa_node: Option<u32>,
    /// `operstate` is `up`.
    pub up: bool,
    /// Backed by a device (`device` link present); bridges, veths, ifb… are virtual.
    pub physical: bool,
}

/// One port of an RDMA device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdmaPort {
    pub port: u32,
    /// The text after `N: ` in `ports/<port>/state`: `ACTIVE`, `DOWN`, `INIT`, …
    pub state: String,
    /// `ports/<port>/link_layer`: `InfiniBand` or `Ethernet` (RoCE).
    pub link_layer: String,
}

impl RdmaPort {
    pub fn is_active(&self) -> bool {
        self.state == "ACTIVE"
    }
}

/// One RDMA device of `/sys/class/infiniband`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdmaDevice {
    pub name: String,
    pub numa_node: Option<u32>,
    pub ports: Vec<RdmaPort>,
}

impl RdmaDevice {
    /// Mooncake uses a device only when one of its ports is active.
    pub fn is_usable(&self) -> bool {
        self.ports.iter().any(RdmaPort::is_active)
    }
}

/// The directory sysfs is read from.
#[derive(Debug, Clone)]
pub struct SysfsRoot(PathBuf);

impl Default for SysfsRoot {
    fn default() -> Self {
        SysfsRoot(PathBuf::from("/sys"))
    }
}

impl SysfsRoot {
    pub fn new(root: impl Into<PathBuf>) -> SysfsRoot {
        SysfsRoot(root.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// NUMA nodes: those `devices/system/node/online` lists, else every `nodeN` directory.
    /// Empty when the kernel has no NUMA support.
    pub fn numa_nodes(&self) -> Vec<NumaNode> {
        let base = self.0.join("devices/system/node");
        let ids = match read_trimmed(&base.join("online")).and_then(|s| parse_cpulist(&s)) {
            Some(ids) => ids,
            None => {
                let mut ids: Vec<u32> =
                    entries(&base).iter().filter_map(|n| n.strip_prefix("node").and_then(|d| d.parse().ok())).collect();
                ids.sort_unstable();
                ids
            }
        };
        ids.into_iter()
            .map(|id| {
                let cpulist = read_trimmed(&base.join(format!("node{id}/cpulist")));
                NumaNode { id, cpus: cpulist.and_then(|s| parse_cpulist(&s)).unwrap_or_default() }
            })
            .collect()
    }

    /// Network interfaces by name, without `lo`.
    pub fn net_interfaces(&self) -> Vec<NetInterface> {
        let base = self.0.join("class/net");
        entries(&base)
            .into_iter()
            .filter(|n| n != "lo")
            .map(|name| {
                let dir = base.join(&name);
                let device = dir.join("device");
                NetInterface {
                    numa_node: device_numa_node(&device),
                    up: read_trimmed(&dir.join("operstate")).is_some_and(|s| s == "up"),
                    physical: device.exists(),
                    name,
                }
            })
            .collect()
    }

    /// RDMA devices by name, with their ports.
    pub fn rdma_devices(&self) -> Vec<RdmaDevice> {
        let base = self.0.join("class/infiniband");
        entries(&base)
            .into_iter()
            .map(|name| {
                let dir = base.join(&name);
                let mut ports: Vec<RdmaPort> = entries(&dir.join("ports"))
                    .into_iter()
                    .filter_map(|p| {
                        let port: u32 = p.parse().ok()?;
                        let pdir = dir.join("ports").join(&p);
                        let state = read_trimmed(&pdir.join("state")).unwrap_or_default();
                        // "4: ACTIVE" → "ACTIVE"
                        let state = state.split_once(':').map_or(state.as_str(), |(_, s)| s).trim().to_string();
                        let link_layer = read_trimmed(&pdir.join("link_layer")).unwrap_or_default();
                        Some(RdmaPort { port, state, link_layer })
                    })
                    .collect();
                ports.sort_by_key(|p| p.port);
                RdmaDevice { numa_node: device_numa_node(&dir.join("device")), ports, name }
            })
            .collect()
    }
}

/// `numa_node` of a device directory, else of its parent (a virtio NIC's `device` is the
/// virtio device; the PCI function above it has the node). `-1` means unknown.
fn device_numa_node(device: &Path) -> Option<u32> {
    let own = read_trimmed(&device.join("numa_node"));
    let value = own.or_else(|| read_trimmed(&device.join("../numa_node")))?;
    value.parse::<i64>().ok().filter(|&n| n >= 0).and_then(|n| u32::try_from(n).ok())
}

/// Names in a directory, sorted; empty when it cannot be read.
fn entries(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The kernel's list format, `0-3,8,10-11`; `None` when malformed. An empty text is an empty
/// list (a node without CPUs).
pub fn parse_cpulist(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a > 1 << 16 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake sysfs tree in a temporary directory, removed on drop.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct FakeSysfs {
        pub root: PathBuf,
    }

    impl FakeSysfs {
        pub fn new() -> FakeSysfs {
            static N: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "mooncake-sysfs-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            FakeSysfs { root }
        }

        pub fn file(&self, rel: &str, content: &str) -> &Self {
            let p = self.root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
            self
        }

        pub fn dir(&self, rel: &str) -> &Self {
            std::fs::create_dir_all(self.root.join(rel)).unwrap();
            self
        }

        pub fn path(&self) -> &Path {
            &self.root
        }

        /// Two nodes (CPUs 0-1 and 2-3); eth0 on node 0 (up), eth1 on node 1 (down), a virtual
        /// bridge and lo; mlx5_0 on node 0 and mlx5_1 on node 1 (active), mlx5_2 on node 1
        /// (port down), rxe0 without a node (active).
        pub fn two_nodes() -> FakeSysfs {
            let f = FakeSysfs::new();
            f.file("devices/system/node/online", "0-1\n")
                .file("devices/system/node/node0/cpulist", "0-1\n")
                .file("devices/system/node/node1/cpulist", "2-3\n")
                .file("class/net/eth0/operstate", "up\n")
                .file("class/net/eth0/device/numa_node", "0\n")
                .file("class/net/eth1/operstate", "down\n")
                .file("class/net/eth1/device/numa_node", "1\n")
                .file("class/net/br0/operstate", "unknown\n")
                .file("class/net/lo/operstate", "unknown\n");
            for (dev, node, state) in
                [("mlx5_0", "0", "4: ACTIVE"), ("mlx5_1", "1", "4: ACTIVE"), ("mlx5_2", "1", "1: DOWN")]
            {
                f.file(&format!("class/infiniband/{dev}/device/numa_node"), &format!("{node}\n"))
                    .file(&format!("class/infiniband/{dev}/ports/1/state"), &format!("{state}\n"))
                    .file(&format!("class/infiniband/{dev}/ports/1/link_layer"), "Ethernet\n");
            }
            f.file("class/infiniband/rxe0/ports/1/state", "4: ACTIVE\n");
            f
        }
    }

    impl Drop for FakeSysfs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSysfs;
    use super::*;

    #[test]
    fn cpulists_parse_like_the_kernel_writes_them() {
        assert_eq!(parse_cpulist("0-3,8,10-11\n"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("a"), None);
        assert_eq!(parse_cpulist("0-"), None);
    }

    #[test]
    fn two_nodes_with_their_cpus_nics_and_rdma_devices() {
        let f = FakeSysfs::two_nodes();
        let sys = SysfsRoot::new(f.path());
        let nodes = sys.numa_nodes();
        assert_eq!(nodes, vec![NumaNode { id: 0, cpus: vec![0, 1] }, NumaNode { id: 1, cpus: vec![2, 3] }]);
        let nics = sys.net_interfaces();
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["br0", "eth0", "eth1"], "lo is skipped");
        assert_eq!((nics[1].numa_node, nics[1].up, nics[1].physical), (Some(0), true, true));
        assert_eq!((nics[2].numa_node, nics[2].up), (Some(1), false));
        assert_eq!((nics[0].numa_node, nics[0].physical), (None, false));
        let rdma = sys.rdma_devices();
        let names: Vec<&str> = rdma.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["mlx5_0", "mlx5_1", "mlx5_2", "rxe0"]);
        assert_eq!(rdma[1].numa_node, Some(1));
        assert_eq!(rdma[1].ports[0], RdmaPort { port: 1, state: "ACTIVE".into(), link_layer: "Ethernet".into() });
        assert!(rdma[1].is_usable());
        assert!(!rdma[2].is_usable(), "a device whose only port is down is not usable");
        assert_eq!(rdma[3].numa_node, None, "soft-RoCE has no PCI parent");
    }

    #[test]
    fn nodes_come_from_directories_without_an_online_list_and_unknown_is_minus_one() {
        let f = FakeSysfs::new();
        f.dir("devices/system/node/node1")
            .dir("devices/system/node/node0")
            .dir("devices/system/node/power")
            .file("class/net/eth0/device/numa_node", "-1\n");
        let sys = SysfsRoot::new(f.path());
        let ids: Vec<u32> = sys.numa_nodes().iter().map(|n| n.id).collect();
        assert_eq!(ids, [0, 1]);
        assert!(sys.numa_nodes().iter().all(|n| n.cpus.is_empty()));
        assert_eq!(sys.net_interfaces()[0].numa_node, None);
    }

    #[test]
    fn a_missing_tree_is_empty_not_an_error() {
        let sys = SysfsRoot::new("/nonexistent/mooncake-sysfs");
        assert!(sys.numa_nodes().is_empty() && sys.net_interfaces().is_empty() && sys.rdma_devices().is_empty());
    }

    #[test]
    fn the_parent_device_gives_the_node_of_a_virtio_nic() {
        let f = FakeSysfs::new();
        f.file("class/net/eth0/device/../numa_node", "1\n");
        // `device/../numa_node` resolves inside `class/net/eth0/` here; the real tree has the
        // PCI function there.
        let sys = SysfsRoot::new(f.path());
        assert_eq!(sys.net_interfaces()[0].numa_node, Some(1));
    }
}
