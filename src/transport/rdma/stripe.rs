//! Which NIC pair a slice uses: the local devices of its memory's location (active ports
//! only), the peer's devices for the remote buffer's location (paused rails left out unless
//! all are paused), and the stripe `k = ordinal + attempt` over both lists.
//!
//! The lists are resolved once per run of slices on the same local region and peer buffer
//! ([`Stripe`]), not per slice: a submission's slices mostly share both, and resolving them
//! hashes location strings and reads every device's port state. A port going down or a rail
//! being paused is therefore seen from the next run (or retry) on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::memory::RegionMrs;
use super::path::Nic;
use super::peer::RdmaPeer;

/// Peer NIC paths whose link failed (transport retry exceeded), and since when. `count`
/// mirrors the map's size, so that the common case (nothing paused) reads one atomic instead
/// of taking the lock.
#[derive(Default)]
pub(crate) struct RailPauses {
    map: Mutex<HashMap<String, Instant>>,
    count: AtomicUsize,
}

impl RailPauses {
    /// Skips `peer_nic_path` from now on, for the pause the settings give.
    pub fn pause(&self, peer_nic_path: &str) {
        let mut map = self.map.lock();
        map.insert(peer_nic_path.to_string(), Instant::now());
        self.count.store(map.len(), Ordering::Release);
    }

    /// Whether some rail may be paused (expired pauses count until the next [`Self::healthy`]).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// Appends to `out` the devices of `all` whose NIC path is not paused, after dropping the
    /// pauses older than `pause`.
    fn healthy(&self, pause: Duration, peer: &RdmaPeer, all: &[usize], out: &mut Vec<usize>) {
        let mut map = self.map.lock();
        map.retain(|_, since| since.elapsed() < pause);
        self.count.store(map.len(), Ordering::Release);
        if map.is_empty() {
            out.extend_from_slice(all);
            return;
        }
        // Formats each candidate's path: only while some rail is paused.
        out.extend(all.iter().copied().filter(|&i| !map.contains_key(&peer.nic_path(i))));
    }
}

/// What the previous slices of one `dispatch` call resolved, reused while the next one lies
/// in the same region and peer buffer: the region, its location's local devices with an
/// active port, and the peer's devices to use for the buffer. Kept (empty) with `dispatch`'s
/// per-thread buffers, so that its lists are not allocated per call.
#[derive(Default)]
pub(crate) struct Stripe {
    region: Option<Arc<RegionMrs>>,
    /// The region location's devices whose port was active when the region was looked up,
    /// preferred ones first.
    local: Vec<usize>,
    /// `(peer id, buffer address)` that `remote` was built for.
    buffer: Option<(u64, u64)>,
    remote: Vec<usize>,
}

impl Stripe {
    /// The remembered region when it holds `[addr, addr + len)`.
    pub fn region_holding(&self, addr: u64, len: u64) -> Option<&Arc<RegionMrs>> {
        self.region.as_ref().filter(|r| r.contains(addr, len))
    }

    /// Remembers `region` and which of its location's `devices` have an active port.
    pub fn set_region(&mut self, region: Arc<RegionMrs>, devices: &[usize], nics: &[Arc<Nic>]) {
        self.region = Some(region);
        self.local.clear();
        self.local.extend(devices.iter().copied().filter(|&i| nics.get(i).is_some_and(|n| n.device.is_active())));
    }

    /// Stripe `k`'s local device; `None` when no port is active.
    pub fn local_device(&self, k: usize) -> Option<usize> {
        self.local.get(k % self.local.len().max(1)).copied()
    }

    /// Resolves the peer's devices to stripe over for its buffer at `buffer_addr`, of
    /// `location`, unless they are the remembered ones.
    pub fn remote_for(
        &mut self,
        pauses: &RailPauses,
        pause: Duration,
        peer: &RdmaPeer,
        buffer_addr: u64,
        location: &str,
    ) {
        let key = (peer.id, buffer_addr);
        if self.buffer == Some(key) {
            return;
        }
        self.remote.clear();
        let all = peer.devices_for(location);
        if pauses.any() {
            pauses.healthy(pause, peer, all, &mut self.remote);
        }
        if self.remote.is_empty() {
            self.remote.extend_from_slice(all);
        }
        self.buffer = Some(key);
    }

    /// Stripe `k`'s peer device; `None` when the peer has none.
    pub fn remote_device(&self, k: usize) -> Option<usize> {
        self.remote.get(k % self.remote.len().max(1)).copied()
    }

    /// Forgets the region and buffer (keeping the lists' room).
    pub fn clear(&mut self) {
        self.region = None;
        self.local.clear();
        self.buffer = None;
        self.remote.clear();
    }
}
