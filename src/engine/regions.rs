//! Registered memory regions of one engine.
//!
//! Regions never overlap. Lookups find the one region that contains a whole range (a range
//! spanning two adjacent registrations is refused, as Mooncake's server refuses it). Every
//! region carries a drain lock: incoming accesses hold a read lease while they move bytes, and
//! unregistering removes the region first, then waits for those leases, so no access can land
//! after `unregisterLocalMemory` returns. Before it waits, it marks the region revoked
//! ([`crate::transport::memory::revoke`]): a holder that a peer can hold up (the TCP data server
//! receiving a trickled write) then gets its progress timeout as a hard deadline, after which it
//! closes that connection and drops the lease, so unregistering returns within that bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::RwLock;

use crate::transport::memory::revoke;
use crate::transport::{MemoryLease, TargetMemory};

/// One registered region.
#[derive(Debug)]
pub struct Region {
    pub addr: u64,
    pub len: u64,
    /// `"cpu:<n>"`, `"cuda:<n>"`, `"*"`, …, as given.
    pub location: String,
    /// `location`, with `"*"` resolved to the NUMA node of the first page (`"cpu:<n>"`, or
    /// `"*"` while that page has none): the name an RDMA descriptor gives the region.
    pub resolved_location: String,
    /// Only remotely accessible regions are published and served to peers.
    pub remote_accessible: bool,
    drain: Arc<RwLock<()>>,
    /// Set when unregistering starts (see the module documentation).
    revoked: Arc<AtomicBool>,
}

impl Region {
    pub fn new(addr: u64, len: u64, location: &str, remote_accessible: bool) -> Region {
        Region {
            addr,
            len,
            location: location.to_string(),
            resolved_location: location.to_string(),
            remote_accessible,
            drain: Arc::new(RwLock::new(())),
            revoked: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The region with `"*"` resolved (see [`Region::resolved_location`]).
    pub fn resolving(mut self, resolved_location: String) -> Region {
        self.resolved_location = resolved_location;
        self
    }

    fn end(&self) -> u64 {
        self.addr.saturating_add(self.len)
    }

    fn contains(&self, addr: u64, len: u64) -> bool {
        len > 0 && addr >= self.addr && addr.checked_add(len).is_some_and(|end| end <= self.end())
    }
}

/// Why a registration or removal was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RegionError {
    /// Zero length, or `addr + len` overflows.
    Invalid(u64, u64),
    /// The range overlaps a registered region (or another entry of the same batch).
    Overlap {
        addr: u64,
        len: u64,
        existing: (u64, u64),
    },
    NotRegistered(u64),
}

impl std::fmt::Display for RegionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegionError::Invalid(a, l) => write!(f, "region {a:#x}+{l} is empty or wraps around"),
            RegionError::Overlap { addr, len, existing: (ea, el) } => {
                write!(f, "region {addr:#x}+{len} overlaps registered region {ea:#x}+{el}")
            }
            RegionError::NotRegistered(a) => write!(f, "no region is registered at {a:#x}"),
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct RegionTable {
    by_addr: RwLock<BTreeMap<u64, Arc<Region>>>,
}

impl RegionTable {
    /// Registers every region, or none of them.
    pub fn insert_all(&self, regions: Vec<Region>) -> Result<(), RegionError> {
        let mut map = self.by_addr.write();
        let mut sorted: Vec<&Region> = regions.iter().collect();
        sorted.sort_by_key(|r| r.addr);
        for (i, r) in sorted.iter().enumerate() {
            if r.len == 0 || r.addr.checked_add(r.len).is_none() {
                return Err(RegionError::Invalid(r.addr, r.len));
            }
            if i > 0 && sorted[i - 1].end() > r.addr {
                let prev = sorted[i - 1];
                return Err(RegionError::Overlap { addr: r.addr, len: r.len, existing: (prev.addr, prev.len) });
            }
            if let Some(existing) = overlapping(&map, r.addr, r.len) {
                return Err(RegionError::Overlap { addr: r.addr, len: r.len, existing });
            }
        }
        for r in regions {
            map.insert(r.addr, Arc::new(r));
        }
        Ok(())
    }

    /// Unregisters the region that starts at `addr`, after every access in flight on it ended.
    pub fn remove(&self, addr: u64) -> Result<Arc<Region>, RegionError> {
        let region = self.by_addr.write().remove(&addr).ok_or(RegionError::NotRegistered(addr))?;
        // Leases are only taken under the map's read lock, so none can start after the removal;
        // this waits for the ones already held (told to hurry up first).
        revoke(&region.revoked);
        drop(region.drain.write());
        Ok(region)
    }

    /// Unregisters several regions; all must be registered, or none is removed.
    pub fn remove_all(&self, addrs: &[u64]) -> Result<(), RegionError> {
        let removed: Vec<Arc<Region>> = {
            let mut map = self.by_addr.write();
            if let Some(&missing) = addrs.iter().find(|a| !map.contains_key(a)) {
                return Err(RegionError::NotRegistered(missing));
            }
            addrs.iter().filter_map(|a| map.remove(a)).collect()
        };
        for r in &removed {
            revoke(&r.revoked);
        }
        for r in removed {
            drop(r.drain.write());
        }
        Ok(())
    }

    /// True when `[addr, addr + len)` lies inside one registered region (any accessibility):
    /// the check for a request's local source.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let map = self.by_addr.read();
        map.range(..=addr).next_back().is_some_and(|(_, r)| r.contains(addr, len))
    }

    /// Regions peers may access, in address order.
    pub fn remote_regions(&self) -> Vec<(u64, u64)> {
        self.by_addr.read().values().filter(|r| r.remote_accessible).map(|r| (r.addr, r.len)).collect()
    }

    /// Every region, in address order.
    pub fn all(&self) -> Vec<Arc<Region>> {
        self.by_addr.read().values().cloned().collect()
    }

    /// The resolved location of the region that starts at `addr`.
    pub fn resolved_location(&self, addr: u64) -> Option<String> {
        self.by_addr.read().get(&addr).map(|r| r.resolved_location.clone())
    }

    pub fn len(&self) -> usize {
        self.by_addr.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TargetMemory for RegionTable {
    fn lease(&self, addr: u64, len: u64) -> Option<MemoryLease> {
        let map = self.by_addr.read();
        let (_, region) = map.range(..=addr).next_back()?;
        if !region.remote_accessible || !region.contains(addr, len) {
            return None;
        }
        Some(MemoryLease::revocable(region.drain.read_arc(), region.revoked.clone()))
    }

    fn vouches_for(&self, addr: u64, len: u64) -> bool {
        self.contains(addr, len)
    }
}

fn overlapping(map: &BTreeMap<u64, Arc<Region>>, addr: u64, len: u64) -> Option<(u64, u64)> {
    let end = addr + len;
    if let Some((_, prev)) = map.range(..=addr).next_back()
        && prev.end() > addr
    {
        return Some((prev.addr, prev.len));
    }
    map.range(addr..end).next().map(|(_, next)| (next.addr, next.len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(regions: &[(u64, u64)]) -> RegionTable {
        let t = RegionTable::default();
        t.insert_all(regions.iter().map(|&(a, l)| Region::new(a, l, "cpu:0", true)).collect()).unwrap();
        t
    }

    #[test]
    fn overlap_is_refused_and_adjacent_is_fine() {
        let t = table(&[(1000, 100)]);
        assert!(t.insert_all(vec![Region::new(1050, 10, "", true)]).is_err());
        assert!(t.insert_all(vec![Region::new(950, 51, "", true)]).is_err());
        assert!(t.insert_all(vec![Region::new(900, 300, "", true)]).is_err());
        assert!(t.insert_all(vec![Region::new(1100, 10, "", true)]).is_ok());
        assert!(t.insert_all(vec![Region::new(990, 10, "", true)]).is_ok());
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let t = table(&[(1000, 100)]);
        let r = t.insert_all(vec![Region::new(5000, 10, "", true), Region::new(1099, 2, "", true)]);
        assert!(r.is_err());
        assert!(!t.contains(5000, 1));
        assert!(t.insert_all(vec![Region::new(10, 10, "", true), Region::new(15, 10, "", true)]).is_err());
    }

    #[test]
    fn ranges_spanning_two_regions_are_refused() {
        let t = table(&[(1000, 100), (1100, 100)]);
        assert!(t.lease(1050, 50).is_some());
        assert!(t.lease(1050, 51).is_none());
        assert!(t.lease(999, 2).is_none());
        assert!(t.lease(1000, 0).is_none());
        assert!(t.lease(u64::MAX - 1, 4).is_none());
    }

    #[test]
    fn private_regions_are_never_leased() {
        let t = RegionTable::default();
        t.insert_all(vec![Region::new(1000, 100, "cpu:0", false)]).unwrap();
        assert!(t.lease(1000, 10).is_none());
        assert!(t.contains(1000, 10));
        assert!(t.remote_regions().is_empty());
    }

    #[test]
    fn remove_waits_for_leases() {
        let t = Arc::new(table(&[(1000, 100)]));
        let lease = t.lease(1000, 10).unwrap();
        let t2 = t.clone();
        let remover = std::thread::spawn(move || t2.remove(1000));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!remover.is_finished(), "remove returned while a lease was held");
        assert!(t.lease(1000, 10).is_none(), "a new lease was granted during removal");
        drop(lease);
        assert!(remover.join().unwrap().is_ok());
        assert!(matches!(t.remove(1000), Err(RegionError::NotRegistered(1000))));
    }

    proptest! {
        #[test]
        fn never_two_overlapping_regions(ops in proptest::collection::vec((0u64..2000, 1u64..300), 1..40)) {
            let t = RegionTable::default();
            for (a, l) in ops {
                let _ = t.insert_all(vec![Region::new(a, l, "", true)]);
            }
            let regions = t.remote_regions();
            for w in regions.windows(2) {
                prop_assert!(w[0].0 + w[0].1 <= w[1].0);
            }
        }
    }
}
