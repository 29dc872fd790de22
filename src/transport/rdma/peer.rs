//! What an initiator knows of a target segment reached over RDMA, built once per cached
//! descriptor: its devices (GID, LID), its buffers with one rkey per device, and which of its
//! devices serve each memory location (its NIC priority matrix).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::verbs::parse_gid;
use crate::metadata::SegmentDescriptor;

/// One device of the target.
#[derive(Debug, Clone)]
pub struct PeerDevice {
    pub name: String,
    pub lid: u16,
    pub gid: [u8; 16],
}

/// One published buffer of the target.
#[derive(Debug, Clone)]
pub struct PeerBuffer {
    pub addr: u64,
    pub len: u64,
    pub location: String,
    pub rkeys: Vec<u32>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RdmaPeer {
    /// Distinguishes routes of different descriptors (route equality).
    pub id: u64,
    /// The name the segment was opened by: the server part of the target's NIC paths.
    pub segment: String,
    /// Where its handshake port is.
    pub rpc: (String, u16),
    pub devices: Vec<PeerDevice>,
    /// Sorted by address.
    pub buffers: Vec<PeerBuffer>,
    /// location → device indices to use, preferred ones first.
    locations: HashMap<String, Vec<usize>>,
    /// Every device index (for locations the matrix does not name).
    all: Vec<usize>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl RdmaPeer {
    /// Builds the peer from an rdma descriptor; the error says what is unusable.
    pub fn from_descriptor(segment: &str, rpc: (String, u16), d: &SegmentDescriptor) -> Result<RdmaPeer, String> {
        let mut devices = Vec::with_capacity(d.devices.len());
        for dev in &d.devices {
            let gid =
                parse_gid(&dev.gid).ok_or_else(|| format!("device {} has a malformed gid {:?}", dev.name, dev.gid))?;
            devices.push(PeerDevice { name: dev.name.clone(), lid: dev.lid, gid });
        }
        if devices.is_empty() {
            return Err("the descriptor lists no RDMA device".into());
        }
        let mut buffers: Vec<PeerBuffer> = d
            .buffers
            .iter()
            .filter(|b| b.rkey.len() == devices.len())
            .map(|b| PeerBuffer { addr: b.addr, len: b.length, location: b.name.clone(), rkeys: b.rkey.clone() })
            .collect();
        buffers.sort_by_key(|b| b.addr);
        let index_of = |name: &str| devices.iter().position(|x| x.name == name);
        let mut locations = HashMap::new();
        if let Some(matrix) = &d.priority_matrix {
            for (loc, entry) in &matrix.entries {
                let preferred: Vec<usize> = entry.preferred.iter().filter_map(|n| index_of(n)).collect();
                let list = if preferred.is_empty() {
                    entry.available.iter().filter_map(|n| index_of(n)).collect()
                } else {
                    preferred
                };
                if !list.is_empty() {
                    locations.insert(loc.clone(), list);
                }
            }
        }
        Ok(RdmaPeer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            segment: segment.to_string(),
            rpc,
            all: (0..devices.len()).collect(),
            devices,
            buffers,
            locations,
        })
    }

    /// The buffer holding all of `[addr, addr + len)`.
    pub fn buffer_for(&self, addr: u64, len: u64) -> Option<&PeerBuffer> {
        let end = addr.checked_add(len)?;
        let i = self.buffers.partition_point(|b| b.addr <= addr);
        let b = self.buffers.get(i.checked_sub(1)?)?;
        (end <= b.addr + b.len).then_some(b)
    }

    /// The devices to stripe over for memory at `location`: the matrix's preferred ones (its
    /// other ones when none is preferred), else every device.
    pub fn devices_for(&self, location: &str) -> &[usize] {
        self.locations.get(location).map(Vec::as_slice).unwrap_or(&self.all)
    }

    /// The NIC path of device `i`: `"<segment>@<device>"`.
    pub fn nic_path(&self, i: usize) -> String {
        format!("{}@{}", self.segment, self.devices[i].name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn descriptor() -> SegmentDescriptor {
        let gid = "00:00:00:00:00:00:00:00:00:00:ff:ff:c0:00:02:01";
        SegmentDescriptor::from_json(&json!({
            "name": "h:1", "protocol": "rdma", "tcp_data_port": 0,
            "devices": [{"name": "rxe0", "lid": 0, "gid": gid}, {"name": "rxe1", "lid": 0, "gid": gid}],
            "buffers": [
                {"name": "cpu:1", "addr": 8192, "length": 4096, "rkey": [3, 4], "lkey": [3, 4]},
                {"name": "cpu:0", "addr": 4096, "length": 4096, "rkey": [1, 2], "lkey": [1, 2]}
            ],
            "priority_matrix": {"cpu:0": [["rxe1"], ["rxe0"]], "cpu:1": [[], ["rxe0", "rxe1"]]}
        }))
        .unwrap()
    }

    #[test]
    fn buffers_devices_and_matrix_are_resolved() {
        let p = RdmaPeer::from_descriptor("h:1", ("h".into(), 1), &descriptor()).unwrap();
        assert_eq!(p.buffer_for(4096, 4096).unwrap().rkeys, [1, 2]);
        assert_eq!(p.buffer_for(8192 + 100, 10).unwrap().location, "cpu:1");
        assert!(p.buffer_for(4096 + 4000, 200).is_none(), "a range across two buffers is refused");
        assert!(p.buffer_for(100, 1).is_none());
        assert!(p.buffer_for(12288, 1).is_none());
        assert!(p.buffer_for(u64::MAX, 2).is_none());
        assert_eq!(p.devices_for("cpu:0"), [1]);
        assert_eq!(p.devices_for("cpu:1"), [0, 1], "no preferred device: the others");
        assert_eq!(p.devices_for("cuda:0"), [0, 1], "unknown location: every device");
        assert_eq!(p.nic_path(1), "h:1@rxe1");
        assert_eq!(p.devices[0].gid[15], 1);
    }

    #[test]
    fn a_descriptor_with_mismatched_keys_is_rejected() {
        let mut v = descriptor().to_json();
        v["buffers"][0]["rkey"] = json!([1]);
        assert!(SegmentDescriptor::from_json(&v).is_err());
        let mut v = descriptor().to_json();
        v["devices"][0]["gid"] = json!("");
        assert!(SegmentDescriptor::from_json(&v).is_err());
    }
}
