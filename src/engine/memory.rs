//! Registering and unregistering local memory.

use super::regions::{Region, RegionError};
use super::{Error, Result, TransferEngine};
use crate::error::Code;

fn region_error(e: RegionError) -> Error {
    let code = match e {
        RegionError::Invalid(..) => Code::InvalidArgument,
        RegionError::Overlap { .. } => Code::AddressOverlapped,
        RegionError::NotRegistered(_) => Code::AddressNotRegistered,
    };
    Error::new(code, e.to_string())
}

/// Checks a location string: `"cpu:<n>"`, `"cuda:<n>"`, `"*"`, or any other device name
/// Mooncake accepts (kept as given: it only labels the region for tcp).
fn check_location(location: &str) -> Result<()> {
    if location.is_empty() || location.contains('\0') {
        return Err(Error::invalid(format!("location {location:?} is empty")));
    }
    Ok(())
}

/// Resolves `"*"` to the node of the region's first page, as Mooncake's RDMA transport names a
/// `"*"` registration (`rdma_transport.cpp` `registerLocalMemoryInternal`). A tcp descriptor
/// publishes one buffer per registration under the server's name whatever this says
/// (`tcp_transport.cpp` `registerLocalMemory`); an RDMA descriptor will use it, or the per-node
/// split of `topology::pages::memory_location`.
fn resolve(region: Region) -> Region {
    if region.location != crate::topology::ANY_LOCATION || region.len == 0 {
        return region;
    }
    let resolved = crate::topology::pages::first_page_location(region.addr);
    region.resolving(resolved)
}

impl super::EngineShared {
    /// Gives same-host peers the current table of remotely accessible regions; when
    /// `revoking`, returns once none of them can still write into a removed one.
    fn sync_same_host(&self, revoking: bool) {
        if let Some(export) = &self.shm_export {
            export.sync(|| self.regions.remote_regions(), revoking);
        }
    }
}

impl TransferEngine {
    /// Registers `[addr, addr + len)`. A remotely accessible region is published in the
    /// descriptor at once and may be read and written by peers; a private one may only be the
    /// local side of transfers.
    pub fn register_memory(&self, addr: u64, len: u64, location: &str, remote_accessible: bool) -> Result<()> {
        self.shared.check_running()?;
        check_location(location)?;
        if addr == 0 {
            return Err(Error::invalid("addr is NULL"));
        }
        let region = resolve(Region::new(addr, len, location, remote_accessible));
        let resolved = region.resolved_location.clone();
        #[cfg(rdma_transport)]
        let rdma_args = super::rdma::region_args(std::slice::from_ref(&region));
        self.shared.regions.insert_all(vec![region]).map_err(region_error)?;
        #[cfg(rdma_transport)]
        if let Err(e) = self.shared.rdma_register(&rdma_args) {
            let _ = self.shared.regions.remove(addr);
            return Err(e);
        }
        self.shared.sync_same_host(false);
        self.shared.publish();
        tracing::debug!(addr = format_args!("{addr:#x}"), len, location, %resolved, remote_accessible, "registered memory");
        Ok(())
    }

    /// Registers several remotely accessible regions: all of them, or none.
    pub fn register_memory_batch(&self, entries: &[(u64, u64)], location: &str) -> Result<()> {
        self.shared.check_running()?;
        check_location(location)?;
        if let Some(i) = entries.iter().position(|&(a, _)| a == 0) {
            return Err(Error::invalid(format!("entry {i}: addr is NULL")));
        }
        let regions: Vec<Region> = entries.iter().map(|&(a, l)| resolve(Region::new(a, l, location, true))).collect();
        #[cfg(rdma_transport)]
        let rdma_args = super::rdma::region_args(&regions);
        self.shared.regions.insert_all(regions).map_err(region_error)?;
        #[cfg(rdma_transport)]
        if let Err(e) = self.shared.rdma_register(&rdma_args) {
            let addrs: Vec<u64> = entries.iter().map(|&(a, _)| a).collect();
            let _ = self.shared.regions.remove_all(&addrs);
            return Err(e);
        }
        self.shared.sync_same_host(false);
        self.shared.publish();
        Ok(())
    }

    /// The location of the region that starts at `addr`, with `"*"` resolved to the NUMA node
    /// of its first page at registration (`None`: no region starts there).
    pub fn region_location(&self, addr: u64) -> Option<String> {
        self.shared.regions.resolved_location(addr)
    }

    /// Unregisters the region starting at `addr`. Returns after every access in flight on it
    /// has ended; from then on no peer can touch it.
    pub fn unregister_memory(&self, addr: u64) -> Result<()> {
        self.shared.regions.remove(addr).map_err(region_error)?;
        #[cfg(rdma_transport)]
        self.shared.rdma_unregister(&[addr]);
        self.shared.sync_same_host(true);
        self.shared.publish();
        Ok(())
    }

    /// Unregisters several regions: all of them, or none when one is not registered.
    pub fn unregister_memory_batch(&self, addrs: &[u64]) -> Result<()> {
        self.shared.regions.remove_all(addrs).map_err(region_error)?;
        #[cfg(rdma_transport)]
        self.shared.rdma_unregister(addrs);
        self.shared.sync_same_host(true);
        self.shared.publish();
        Ok(())
    }
}
