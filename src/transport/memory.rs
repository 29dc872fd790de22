//! The target side's view of registered memory: a request may touch memory only through a
//! [`MemoryLease`] on one registered, remotely accessible region.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RawRwLock;
use parking_lot::lock_api::ArcRwLockReadGuard;

/// Proof that `[addr, addr + len)` lies inside one registered region, held while bytes move.
/// Unregistering the region waits until every lease on it is dropped, so no byte lands in
/// memory after `unregisterLocalMemory` has returned.
///
/// A lease may carry its region's revocation flag: unregistering sets it (and wakes
/// [`revocations`]) before it waits, so a holder that could be held up by a peer (the TCP data
/// server, a transfer that trickles) knows to finish within its deadline or give the lease up.
pub struct MemoryLease {
    _guard: ArcRwLockReadGuard<RawRwLock, ()>,
    revoked: Option<Arc<AtomicBool>>,
}

impl MemoryLease {
    /// Wraps the read guard of a region's drain lock.
    pub fn new(guard: ArcRwLockReadGuard<RawRwLock, ()>) -> MemoryLease {
        MemoryLease { _guard: guard, revoked: None }
    }

    /// A lease on a region whose unregistration sets `revoked` (see [`revoke`]).
    pub fn revocable(guard: ArcRwLockReadGuard<RawRwLock, ()>, revoked: Arc<AtomicBool>) -> MemoryLease {
        MemoryLease { _guard: guard, revoked: Some(revoked) }
    }

    /// True once the region is being unregistered: the holder should end its access soon.
    pub fn revoked(&self) -> bool {
        self.revoked.as_ref().is_some_and(|r| r.load(Ordering::SeqCst))
    }
}

/// Woken (`notify_waiters`) whenever a region is being unregistered. A holder of leases that
/// waits on a peer enables a `notified()` future, then checks [`MemoryLease::revoked`], then
/// waits: a revocation between the two is never missed.
pub fn revocations() -> &'static tokio::sync::Notify {
    static NOTIFY: OnceLock<tokio::sync::Notify> = OnceLock::new();
    NOTIFY.get_or_init(tokio::sync::Notify::new)
}

/// Marks a region as being unregistered and wakes every holder waiting on [`revocations`].
pub fn revoke(flag: &AtomicBool) {
    flag.store(true, Ordering::SeqCst);
    revocations().notify_waiters();
}

/// Looks up registered regions for incoming requests.
pub trait TargetMemory: Send + Sync {
    /// A lease when `[addr, addr + len)` is non-empty, does not overflow, and lies entirely
    /// inside one region registered as remotely accessible; `None` otherwise.
    fn lease(&self, addr: u64, len: u64) -> Option<MemoryLease>;

    /// Whether `[addr, addr + len)` lies inside one registered region of this process (any
    /// accessibility): a local buffer the engine vouches for. Ranges it does not vouch for are
    /// copied with [`copy_unverified`].
    fn vouches_for(&self, _addr: u64, _len: u64) -> bool {
        false
    }
}

/// Copies `len` bytes between two ranges of this process (they may overlap).
///
/// # Safety
/// `src` must be valid for reads and `dst` valid for writes of `len` bytes for the duration of
/// the call: the engine guarantees it by checking both against registered regions (a local
/// buffer through [`TargetMemory::vouches_for`], the target through a [`MemoryLease`] held
/// during the copy).
pub unsafe fn copy_bytes(src: usize, dst: usize, len: u64) {
    // SAFETY: the caller guarantees both ranges are valid (see above); `copy` allows overlap.
    unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, len as usize) };
}

/// Copies `len` bytes from `src` to `dst` in this process through the kernel
/// (`process_vm_readv` on our own pid), for ranges the engine cannot vouch for (a caller's
/// local buffer that was never registered): an address that is not mapped fails the copy with
/// `EFAULT` instead of faulting the process. Where the kernel refuses the call itself (a
/// seccomp filter, a kernel without it) the bytes are copied directly, as Mooncake's TCP path
/// trusts such a buffer. False when the kernel found a range unmapped.
///
/// # Safety
/// The range of the two that the engine checked (the leased target) must be valid for the
/// call; the other one is the caller's buffer, touched directly only where the kernel call is
/// not available.
pub unsafe fn copy_unverified(src: usize, dst: usize, len: u64) -> bool {
    match kernel_copy(src, dst, len) {
        Ok(()) => true,
        Err((done, libc::ENOSYS | libc::EPERM)) => {
            // SAFETY: see the function's contract: the caller promised its buffer.
            unsafe { copy_bytes(src + done as usize, dst + done as usize, len - done) };
            true
        }
        Err((_, errno)) => {
            tracing::debug!(
                errno,
                src = format_args!("{src:#x}"),
                dst = format_args!("{dst:#x}"),
                len,
                "copy refused by the kernel"
            );
            false
        }
    }
}

/// `process_vm_readv` on our own pid until `len` bytes moved; on failure the bytes already
/// moved and the errno.
fn kernel_copy(src: usize, dst: usize, len: u64) -> Result<(), (u64, i32)> {
    let pid = std::process::id() as libc::pid_t;
    let mut done = 0u64;
    while done < len {
        let chunk = (len - done).min(1 << 30) as usize;
        let local = libc::iovec { iov_base: (dst as u64 + done) as *mut libc::c_void, iov_len: chunk };
        let remote = libc::iovec { iov_base: (src as u64 + done) as *mut libc::c_void, iov_len: chunk };
        // SAFETY: the kernel checks both ranges against this process's mappings and fails with
        // EFAULT instead of touching unmapped memory; nothing is dereferenced here.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n > 0 {
            done += n as u64;
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
            libc::EINTR => continue,
            0 => return Err((done, libc::EFAULT)),
            errno => return Err((done, errno)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{copy_unverified, kernel_copy};

    #[test]
    fn unverified_copies_move_bytes_and_unmapped_memory_fails_them() {
        let src: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut dst = vec![0u8; src.len()];
        // SAFETY: both vectors are valid for their whole length.
        assert!(unsafe { copy_unverified(src.as_ptr() as usize, dst.as_mut_ptr() as usize, src.len() as u64) });
        assert_eq!(src, dst);
        // Address 8 is never mapped: the kernel copy fails, nothing is written.
        let mut guard = vec![7u8; 64];
        match kernel_copy(8, guard.as_mut_ptr() as usize, 64) {
            Err((0, libc::EFAULT)) => assert!(guard.iter().all(|&b| b == 7)),
            Err((_, libc::ENOSYS | libc::EPERM)) => eprintln!("process_vm_readv is not permitted here"),
            other => panic!("copy from an unmapped address: {other:?}"),
        }
    }
}
