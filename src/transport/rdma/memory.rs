//! Memory regions of the RDMA transport: every registered region, on every device, in chunks
//! of at most the device's (or `MC_MAX_MR_SIZE`'s) largest MR.
//!
//! Only regions registered as remotely accessible get remote access rights, and only they are
//! published (with their rkeys); private ones are registered for local access alone, so a
//! leaked rkey of one is refused by the NIC. A work request holds the region's `Arc` until it
//! completes: unregistering removes the region at once (no new work finds it), waits until
//! the work in flight has drained, then deregisters, so in-flight transfers end normally and
//! nothing touches the memory once `unregisterLocalMemory` returned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::device::{Device, MemoryRegion};

/// One piece of a region, registered on every device (`mrs[device.index]`).
pub struct Chunk {
    pub addr: u64,
    pub len: u64,
    pub mrs: Vec<MemoryRegion>,
}

/// One registered region.
pub struct RegionMrs {
    pub addr: u64,
    pub len: u64,
    /// The resolved location (`"cpu:0"`, …): the buffer name in the descriptor and the key of
    /// the NIC priority matrix.
    pub location: String,
    pub remote: bool,
    pub chunks: Vec<Chunk>,
}

impl RegionMrs {
    fn end(&self) -> u64 {
        self.addr + self.len
    }

    /// Whether all of `[addr, addr + len)` lies inside the region.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.addr && addr.checked_add(len).is_some_and(|end| end <= self.end())
    }

    /// The chunks covering `[addr, addr + len)` (which lies inside the region), with the part
    /// of the range in each.
    pub fn pieces(&self, addr: u64, len: u64) -> impl Iterator<Item = (&Chunk, u64, u64)> {
        let end = addr + len;
        self.chunks.iter().filter_map(move |c| {
            let from = addr.max(c.addr);
            let to = end.min(c.addr + c.len);
            (from < to).then_some((c, from, to - from))
        })
    }
}

/// A buffer as the descriptor publishes it.
pub struct PublishedBuffer {
    pub location: String,
    pub addr: u64,
    pub len: u64,
    pub rkeys: Vec<u32>,
    pub lkeys: Vec<u32>,
}

/// See the module documentation.
#[derive(Default)]
pub struct MemoryTable {
    by_addr: RwLock<BTreeMap<u64, Arc<RegionMrs>>>,
}

impl MemoryTable {
    /// Registers a region on every device, or on none (the error names the device and cause).
    pub fn register(
        &self,
        devices: &[Arc<Device>],
        addr: u64,
        len: u64,
        location: &str,
        remote: bool,
        max_mr_size: u64,
    ) -> Result<(), String> {
        let limit = devices.iter().map(|d| d.max_mr_size).min().unwrap_or(max_mr_size).min(max_mr_size).max(4096);
        let started = Instant::now();
        let mut chunks = Vec::new();
        let mut at = addr;
        while at < addr + len {
            let clen = limit.min(addr + len - at);
            let mut mrs = Vec::with_capacity(devices.len());
            for d in devices {
                mrs.push(MemoryRegion::register(d, at, clen, remote)?);
            }
            chunks.push(Chunk { addr: at, len: clen, mrs });
            at += clen;
        }
        tracing::debug!(
            addr = format_args!("{addr:#x}"), len, location, remote, chunks = chunks.len(),
            devices = devices.len(), took = ?started.elapsed(), "RDMA memory registered"
        );
        let region = Arc::new(RegionMrs { addr, len, location: location.to_string(), remote, chunks });
        self.by_addr.write().insert(addr, region);
        Ok(())
    }

    /// Removes the region at `addr`, waits (at most `drain`) for the work in flight on it, and
    /// deregisters it. False when no region starts there.
    pub fn unregister(&self, addr: u64, drain: Duration) -> bool {
        let Some(region) = self.by_addr.write().remove(&addr) else { return false };
        let deadline = Instant::now() + drain;
        let mut logged = false;
        while Arc::strong_count(&region) > 1 {
            if Instant::now() >= deadline {
                tracing::warn!(
                    addr = format_args!("{addr:#x}"),
                    "work requests still use this region after {drain:?}; deregistering it anyway (they fail)"
                );
                break;
            }
            if !logged {
                tracing::debug!(addr = format_args!("{addr:#x}"), "waiting for RDMA work on the region to drain");
                logged = true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(region);
        true
    }

    /// The region containing all of `[addr, addr + len)`.
    pub fn find(&self, addr: u64, len: u64) -> Option<Arc<RegionMrs>> {
        let map = self.by_addr.read();
        let (_, r) = map.range(..=addr).next_back()?;
        r.contains(addr, len).then(|| r.clone())
    }

    /// The remotely accessible chunks with their keys, in address order.
    pub fn published(&self) -> Vec<PublishedBuffer> {
        let map = self.by_addr.read();
        let mut out = Vec::new();
        for r in map.values().filter(|r| r.remote) {
            for c in &r.chunks {
                out.push(PublishedBuffer {
                    location: r.location.clone(),
                    addr: c.addr,
                    len: c.len,
                    rkeys: c.mrs.iter().map(|m| m.rkey).collect(),
                    lkeys: c.mrs.iter().map(|m| m.lkey).collect(),
                });
            }
        }
        out
    }

    /// Drops every region (transport shutdown; nothing is in flight any more).
    pub fn clear(&self) {
        self.by_addr.write().clear();
    }

    pub fn len(&self) -> usize {
        self.by_addr.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
