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
        self.shared
            .regions
            .insert_all(vec![Region::new(addr, len, location, remote_accessible)])
            .map_err(region_error)?;
        self.shared.publish();
        tracing::debug!(addr = format_args!("{addr:#x}"), len, location, remote_accessible, "registered memory");
        Ok(())
    }

    /// Registers several remotely accessible regions: all of them, or none.
    pub fn register_memory_batch(&self, entries: &[(u64, u64)], location: &str) -> Result<()> {
        self.shared.check_running()?;
        check_location(location)?;
        if let Some(i) = entries.iter().position(|&(a, _)| a == 0) {
            return Err(Error::invalid(format!("entry {i}: addr is NULL")));
        }
        let regions = entries.iter().map(|&(a, l)| Region::new(a, l, location, true)).collect();
        self.shared.regions.insert_all(regions).map_err(region_error)?;
        self.shared.publish();
        Ok(())
    }

    /// Unregisters the region starting at `addr`. Returns after every access in flight on it
    /// has ended; from then on no peer can touch it.
    pub fn unregister_memory(&self, addr: u64) -> Result<()> {
        self.shared.regions.remove(addr).map_err(region_error)?;
        self.shared.publish();
        Ok(())
    }

    /// Unregisters several regions: all of them, or none when one is not registered.
    pub fn unregister_memory_batch(&self, addrs: &[u64]) -> Result<()> {
        self.shared.regions.remove_all(addrs).map_err(region_error)?;
        self.shared.publish();
        Ok(())
    }
}
