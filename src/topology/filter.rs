//! Which RDMA devices discovery keeps: Mooncake's `MC_TE_FILTERS` allow-list, TENT's
//! `MC_TE_FILTERS_EXCLUDE` deny-list, and the device names a caller passes (Python's
//! `get_local_topology(device_name)`, Mooncake's `discover(filter)`).
//!
//! As in Mooncake (`topology.cpp` `getIbvDeviceWhitelist`, `tent/src/common/config.cpp`
//! `setArrayConfig`, `tent/src/platform/cpu_probe.cpp` `filterInfiniBandDevices`): lists are
//! comma-separated, each name trimmed of blanks, empty names dropped; the deny-list is ignored
//! when an allow-list is set; a caller's names must match as well as the allow-list.
//! The lists apply to RDMA devices only (Mooncake never filters network interfaces). Lists
//! are read by [`parse_list`], which lives in `config` so that config need not name topology.

pub use crate::config::parse_list;

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// `MC_TE_FILTERS`: only these (empty: no restriction).
    pub allow: Vec<String>,
    /// `MC_TE_FILTERS_EXCLUDE`: not these, unless `allow` is set.
    pub deny: Vec<String>,
    /// The caller's names: only these (empty: no restriction).
    pub requested: Vec<String>,
}

impl DeviceFilter {
    /// The environment's lists, as [`crate::config::Config`] read them.
    pub fn new(allow: &[String], deny: &[String]) -> DeviceFilter {
        DeviceFilter { allow: allow.to_vec(), deny: deny.to_vec(), requested: Vec::new() }
    }

    /// Restricts discovery further to `names` (comma-separated, as Mooncake's Python module
    /// splits `device_name`).
    pub fn requesting(mut self, names: &str) -> DeviceFilter {
        self.requested = parse_list(names);
        self
    }

    pub fn allows(&self, device: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|n| n == device);
        if !self.requested.is_empty() && !listed(&self.requested) {
            return false;
        }
        if !self.allow.is_empty() {
            return listed(&self.allow);
        }
        !listed(&self.deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allow_list_wins_over_deny_list() {
        let f = DeviceFilter::new(&v(&["mlx5_0"]), &v(&["mlx5_0", "mlx5_1"]));
        assert!(f.allows("mlx5_0") && !f.allows("mlx5_1") && !f.allows("mlx5_2"));
        let f = DeviceFilter::new(&[], &v(&["mlx5_1"]));
        assert!(f.allows("mlx5_0") && !f.allows("mlx5_1"));
        assert!(DeviceFilter::default().allows("anything"));
    }

    #[test]
    fn requested_names_must_match_as_well() {
        let f = DeviceFilter::new(&v(&["mlx5_0", "mlx5_1"]), &[]).requesting("mlx5_1,mlx5_2");
        assert!(!f.allows("mlx5_0") && f.allows("mlx5_1") && !f.allows("mlx5_2"));
        let f = DeviceFilter::new(&[], &v(&["mlx5_1"])).requesting("mlx5_1");
        assert!(!f.allows("mlx5_1"), "the deny-list still applies without an allow-list");
        assert!(DeviceFilter::default().requesting("").allows("x"), "an empty request restricts nothing");
    }
}
