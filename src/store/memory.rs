//! The memory a store client owns (its segment and its staging buffer) and the raw copies
//! between it and the caller's buffers.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

use super::{StoreError, StoreResult};

/// An anonymous private mapping, unmapped on drop. Pages are touched lazily, so a large
/// segment costs only what is written into it (`MAP_NORESERVE`).
pub struct Mapping {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; sharing its address between threads
// is what the store does (the engine and the master coordinate who writes where).
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself has no interior state besides the address.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (rounded up to whole pages by the kernel).
    pub fn new(len: u64) -> StoreResult<Mapping> {
        let size = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| StoreError::invalid(format!("cannot map {len} bytes")))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| {
            StoreError::new(super::ErrorCode::InternalError, format!("cannot map {len} bytes of memory: {e}"))
        })?;
        Ok(Mapping { ptr, len: size.get() })
    }

    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `new`, unmapped once here; the
        // owner unregistered it from the engine before dropping it.
        if let Err(e) = unsafe { munmap(self.ptr, self.len) } {
            tracing::warn!("munmap of the store's memory failed: {e}");
        }
    }
}

/// Copies `src` into memory at `dst`.
///
/// # Safety
/// `dst..dst + src.len()` must be writable memory that nothing else accesses during the copy
/// (a registered user buffer or a range the master reserved for this put).
pub unsafe fn copy_in(dst: u64, src: &[u8]) {
    // SAFETY: `src` is a valid slice; the caller guarantees the destination range.
    unsafe { crate::transport::memory::copy_bytes(src.as_ptr() as usize, dst as usize, src.len() as u64) };
}

/// Copies `dst.len()` bytes from memory at `src` into `dst`.
///
/// # Safety
/// `src..src + dst.len()` must be readable memory (a registered buffer or a leased replica).
pub unsafe fn copy_out(src: u64, dst: &mut [u8]) {
    // SAFETY: `dst` is a valid slice; the caller guarantees the source range.
    unsafe { crate::transport::memory::copy_bytes(src as usize, dst.as_mut_ptr() as usize, dst.len() as u64) };
}

/// Copies `len` bytes between two raw ranges.
///
/// # Safety
/// Both ranges must be valid for `len` bytes (registered memory or a leased/reserved replica).
pub unsafe fn copy_raw(src: u64, dst: u64, len: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { crate::transport::memory::copy_bytes(src as usize, dst as usize, len) };
}

/// Memory shared between a dummy client and its `mooncake_client`: a memfd mapped
/// `MAP_SHARED` in both processes (each side has its own `SharedMapping` of the same fd).
pub struct SharedMapping {
    fd: std::os::fd::OwnedFd,
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: as for `Mapping`: plain memory whose use is coordinated by the store protocol.
unsafe impl Send for SharedMapping {}
// SAFETY: as above.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// A new memfd of `len` bytes, mapped.
    pub fn create(len: u64) -> StoreResult<SharedMapping> {
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let internal = |what: &str, e: nix::Error| {
            StoreError::new(super::ErrorCode::InternalError, format!("shared memory of {len} bytes: {what}: {e}"))
        };
        let fd = memfd_create(c"mooncake-dummy", MFdFlags::MFD_CLOEXEC).map_err(|e| internal("memfd_create", e))?;
        let size = i64::try_from(len).map_err(|_| StoreError::invalid(format!("{len} bytes is too large")))?;
        nix::unistd::ftruncate(&fd, size).map_err(|e| internal("ftruncate", e))?;
        SharedMapping::map(fd, len)
    }

    /// Maps `len` bytes of a memfd received from the other side.
    pub fn map(fd: std::os::fd::OwnedFd, len: u64) -> StoreResult<SharedMapping> {
        let size = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| StoreError::invalid(format!("cannot map {len} bytes")))?;
        let file_len = nix::sys::stat::fstat(&fd).map(|st| st.st_size as u64).unwrap_or(0);
        if file_len < len {
            return Err(StoreError::invalid(format!("the shared memory has {file_len} bytes, not {len}")));
        }
        // SAFETY: a new shared mapping of a memfd at least `len` bytes long (checked above) at an
        // address the kernel picks; it aliases only the other process's mapping of the same fd,
        // which is the point.
        let ptr = unsafe {
            nix::sys::mman::mmap(None, size, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, &fd, 0)
        }
        .map_err(|e| StoreError::new(super::ErrorCode::InternalError, format!("cannot map shared memory: {e}")))?;
        Ok(SharedMapping { fd, ptr, len: size.get() })
    }

    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`, unmapped once; users unregistered it first.
        if let Err(e) = unsafe { munmap(self.ptr, self.len) } {
            tracing::warn!("munmap of shared memory failed: {e}");
        }
    }
}
