//! The target side's view of registered memory: a request may touch memory only through a
//! [`MemoryLease`] on one registered, remotely accessible region.

use parking_lot::RawRwLock;
use parking_lot::lock_api::ArcRwLockReadGuard;

/// Proof that `[addr, addr + len)` lies inside one registered region, held while bytes move.
/// Unregistering the region waits until every lease on it is dropped, so no byte lands in
/// memory after `unregisterLocalMemory` has returned.
pub struct MemoryLease {
    _guard: ArcRwLockReadGuard<RawRwLock, ()>,
}

impl MemoryLease {
    /// Wraps the read guard of a region's drain lock.
    pub fn new(guard: ArcRwLockReadGuard<RawRwLock, ()>) -> MemoryLease {
        MemoryLease { _guard: guard }
    }
}

/// Looks up registered regions for incoming requests.
pub trait TargetMemory: Send + Sync {
    /// A lease when `[addr, addr + len)` is non-empty, does not overflow, and lies entirely
    /// inside one region registered as remotely accessible; `None` otherwise.
    fn lease(&self, addr: u64, len: u64) -> Option<MemoryLease>;
}

/// Copies `len` bytes between two ranges of this process (they may overlap).
///
/// # Safety
/// `src` must be valid for reads and `dst` valid for writes of `len` bytes for the duration of
/// the call: the engine guarantees it by checking both against registered regions (the source
/// at submission, the target through a [`MemoryLease`] held during the copy).
pub unsafe fn copy_bytes(src: usize, dst: usize, len: u64) {
    // SAFETY: the caller guarantees both ranges are valid (see above); `copy` allows overlap.
    unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, len as usize) };
}
