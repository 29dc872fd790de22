//! Memory a process maps for others to reach: anonymous mappings (a store client's segment
//! and staging buffer) and memfd mappings shared with another process (a dummy store client
//! and its `mooncake_client`). Both are written and read only through bounds-checked
//! [`write_at`](Mapping::write_at)/[`read_at`](Mapping::read_at), so their users need no
//! `unsafe` of their own.
//!
//! Memory another process hands us is mapped only when it cannot shrink under us: a mapping
//! of a file that is later truncated raises SIGBUS in whoever touches the lost pages, and that
//! would be this process. [`check_unshrinkable`] demands a memfd sealed with `F_SEAL_SHRINK`
//! (seals can be added, never removed) at least as long as what is mapped; the memfds we create
//! for others ([`SharedMapping::create`], [`memfd_unshrinkable`]) carry that seal.
//!
//! Failures are [`MapError`]s, which keep apart what the caller asked wrong from what the
//! kernel refused: the caller decides what each one means to its own users.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// Why memory could not be mapped. Both carry the whole message, ready to show.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The request itself cannot be mapped (no bytes, more than the address space, a memfd
    /// shorter than asked): retrying the same call cannot succeed.
    #[error("{0}")]
    Request(String),
    /// The kernel refused a call: the error's kind is the errno's, its text names the call.
    #[error("{0}")]
    Os(io::Error),
}

impl MapError {
    /// A refused call: `context` followed by nix's errno text (`ENOMEM: Out of memory`), the
    /// text these messages have always had.
    fn os(context: String, e: nix::Error) -> MapError {
        MapError::Os(io::Error::new(io::Error::from(e).kind(), format!("{context}: {e}")))
    }
}

impl From<MapError> for io::Error {
    fn from(e: MapError) -> io::Error {
        match e {
            MapError::Request(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
            MapError::Os(e) => e,
        }
    }
}

/// Results of this module.
pub type MapResult<T> = Result<T, MapError>;

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
    pub fn new(len: u64) -> MapResult<Mapping> {
        let size = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| MapError::Request(format!("cannot map {len} bytes")))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| MapError::os(format!("cannot map {len} bytes of memory"), e))?;
        Ok(Mapping { ptr, len: size.get() })
    }

    /// Maps `len` bytes of the file `fd` from `offset` (page-aligned), shared: what is written
    /// lands in the file (Mooncake's `mount_segment` of a file or shm path). The range must lie
    /// inside the file.
    pub fn file(fd: std::os::fd::BorrowedFd<'_>, offset: u64, len: u64) -> MapResult<Mapping> {
        let size = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| MapError::Request(format!("cannot map {len} bytes")))?;
        let file_len = nix::sys::stat::fstat(fd).map_err(|e| MapError::os("fstat".into(), e))?.st_size as u64;
        if offset > file_len || len > file_len - offset {
            return Err(MapError::Request(format!(
                "bytes {offset}..{} are not inside the file ({file_len} bytes)",
                offset.saturating_add(len)
            )));
        }
        let off = libc::off_t::try_from(offset).map_err(|_| MapError::Request(format!("offset {offset} too large")))?;
        // SAFETY: a new shared mapping of a range inside the file (checked above) at an address
        // the kernel picks; it aliases only the file's pages, which is the point.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                off,
            )
        }
        .map_err(|e| MapError::os(format!("cannot map {len} bytes of the file"), e))?;
        Ok(Mapping { ptr, len: size.get() })
    }

    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Copies `bytes` to the absolute address `addr`, which must lie (with all of `bytes`)
    /// inside this mapping; false (and nothing written) otherwise.
    pub fn write_at(&self, addr: u64, bytes: &[u8]) -> bool {
        write_in(self.addr(), self.len(), addr, bytes)
    }

    /// Fills `out` from the absolute address `addr` of this mapping; false (and `out`
    /// untouched) when the range is not inside it.
    pub fn read_at(&self, addr: u64, out: &mut [u8]) -> bool {
        read_in(self.addr(), self.len(), addr, out)
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

/// A new memfd named `name` of `len` bytes, sealed against shrinking (and growing, and further
/// sealing) so that a process it is handed to may map it ([`check_unshrinkable`]). Writes
/// stay allowed.
pub fn memfd_unshrinkable(name: &std::ffi::CStr, len: u64) -> MapResult<std::os::fd::OwnedFd> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let internal = |what: &str, e: nix::Error| MapError::os(format!("shared memory of {len} bytes: {what}"), e);
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| internal("memfd_create", e))?;
    let size = i64::try_from(len).map_err(|_| MapError::Request(format!("{len} bytes is too large")))?;
    nix::unistd::ftruncate(&fd, size).map_err(|e| internal("ftruncate", e))?;
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| internal("F_ADD_SEALS", e))?;
    Ok(fd)
}

/// Whether `len` bytes of `fd`, handed to us by another process, may be mapped: `fd` must be
/// sealed against shrinking (`F_GET_SEALS` has `F_SEAL_SHRINK`; a file that is no memfd has
/// no seals) and at least `len` bytes long (`fstat`). Both are [`MapError::Request`]s: the
/// other process asked for something we refuse.
pub fn check_unshrinkable(fd: std::os::fd::BorrowedFd<'_>, len: u64) -> MapResult<()> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    // The seal first: once it holds, the size checked next cannot go down.
    let seals = match fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits),
        Err(e) => {
            return Err(MapError::Request(format!(
                "the shared memory is not a sealable memfd (F_GET_SEALS: {e}); it must be sealed with F_SEAL_SHRINK"
            )));
        }
    };
    if !seals.contains(SealFlag::F_SEAL_SHRINK) {
        return Err(MapError::Request(
            "the shared memory is not sealed against shrinking (F_SEAL_SHRINK); create it with \
             MFD_ALLOW_SEALING and add the seal"
                .into(),
        ));
    }
    let file_len = nix::sys::stat::fstat(fd).map_err(|e| MapError::os("fstat of shared memory".into(), e))?.st_size;
    let file_len = u64::try_from(file_len).unwrap_or(0);
    if file_len < len {
        return Err(MapError::Request(format!("the shared memory has {file_len} bytes, not {len}")));
    }
    Ok(())
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
    /// A new memfd of `len` bytes sealed against shrinking ([`memfd_unshrinkable`]), mapped.
    pub fn create(len: u64) -> MapResult<SharedMapping> {
        SharedMapping::map(memfd_unshrinkable(c"mooncake-dummy", len)?, len)
    }

    /// Maps `len` bytes of a memfd received from the other side, which must be sealed against
    /// shrinking and long enough ([`check_unshrinkable`]): no later `ftruncate` of the other
    /// side can then take pages from under this mapping.
    pub fn map(fd: std::os::fd::OwnedFd, len: u64) -> MapResult<SharedMapping> {
        use std::os::fd::AsFd;
        let size = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| MapError::Request(format!("cannot map {len} bytes")))?;
        check_unshrinkable(fd.as_fd(), len)?;
        // SAFETY: a new shared mapping of a memfd at least `len` bytes long that cannot shrink
        // (checked above) at an address the kernel picks; it aliases only the other process's
        // mapping of the same fd, which is the point.
        let ptr = unsafe {
            nix::sys::mman::mmap(None, size, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, &fd, 0)
        }
        .map_err(|e| MapError::os("cannot map shared memory".into(), e))?;
        Ok(SharedMapping { fd, ptr, len: size.get() })
    }

    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Copies `bytes` to the absolute address `addr`, which must lie (with all of `bytes`)
    /// inside this mapping; false (and nothing written) otherwise.
    pub fn write_at(&self, addr: u64, bytes: &[u8]) -> bool {
        write_in(self.addr(), self.len(), addr, bytes)
    }

    /// Fills `out` from the absolute address `addr` of this mapping; false (and `out`
    /// untouched) when the range is not inside it.
    pub fn read_at(&self, addr: u64, out: &mut [u8]) -> bool {
        read_in(self.addr(), self.len(), addr, out)
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

/// Whether `[addr, addr + len)` lies inside `[base, base + size)`.
fn inside(base: u64, size: u64, addr: u64, len: u64) -> bool {
    addr >= base && addr.checked_add(len).is_some_and(|end| end <= base + size)
}

/// `write_at` of a live mapping `[base, base + size)`.
fn write_in(base: u64, size: u64, addr: u64, bytes: &[u8]) -> bool {
    if !inside(base, size, addr, bytes.len() as u64) {
        return false;
    }
    // SAFETY: the range was checked to lie inside the caller's live mapping; `bytes` is a
    // valid slice (`copy` allows overlap).
    unsafe { std::ptr::copy(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    true
}

/// `read_at` of a live mapping `[base, base + size)`.
fn read_in(base: u64, size: u64, addr: u64, out: &mut [u8]) -> bool {
    if !inside(base, size, addr, out.len() as u64) {
        return false;
    }
    // SAFETY: the source range lies inside the caller's live mapping; `out` is a valid slice
    // (`copy` allows overlap).
    unsafe { std::ptr::copy(addr as *const u8, out.as_mut_ptr(), out.len()) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_stay_inside_the_mapping() {
        let m = Mapping::new(8192).unwrap();
        assert!(m.write_at(m.addr() + 100, b"hello"));
        let mut out = [0u8; 5];
        assert!(m.read_at(m.addr() + 100, &mut out));
        assert_eq!(&out, b"hello");
        assert!(!m.write_at(m.addr() + m.len() - 2, b"abc"), "past the end");
        assert!(!m.write_at(m.addr() - 1, b"a"), "before the start");
        assert!(!m.read_at(u64::MAX - 1, &mut out), "overflowing range");
        let shared = SharedMapping::create(4096).unwrap();
        let other = SharedMapping::map(shared.fd().try_clone_to_owned().unwrap(), 4096).unwrap();
        assert!(shared.write_at(shared.addr(), b"both"));
        let mut seen = [0u8; 4];
        assert!(other.read_at(other.addr(), &mut seen));
        assert_eq!(&seen, b"both", "two mappings of one memfd see the same bytes");
    }

    #[test]
    fn only_memfds_sealed_against_shrinking_are_mapped() {
        use nix::sys::memfd::{MFdFlags, memfd_create};
        // Unsealed (no MFD_ALLOW_SEALING: no seal can ever be added), of the right size.
        let plain = memfd_create(c"t", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&plain, 4096).unwrap();
        let e = SharedMapping::map(plain, 4096).err().unwrap();
        assert!(matches!(&e, MapError::Request(m) if m.contains("F_SEAL_SHRINK")), "{e}");
        // Sealable but not sealed.
        let open = memfd_create(c"t", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&open, 4096).unwrap();
        assert!(SharedMapping::map(open, 4096).is_err());
        // A regular file has no seals.
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(SharedMapping::map(file.into(), 4096).is_err());
        // Ours is sealed: it maps, and nobody can truncate it under the mapping.
        let ours = SharedMapping::create(8192).unwrap();
        let theirs = SharedMapping::map(ours.fd().try_clone_to_owned().unwrap(), 8192).unwrap();
        assert_eq!(nix::unistd::ftruncate(ours.fd(), 0), Err(nix::errno::Errno::EPERM));
        assert!(theirs.write_at(theirs.addr() + 8191, b"x"));
    }

    #[test]
    fn requests_that_cannot_be_mapped_are_told_from_refusals() {
        let e = Mapping::new(0).err().unwrap();
        assert!(matches!(&e, MapError::Request(m) if m == "cannot map 0 bytes"), "{e:?}");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
        let short = SharedMapping::create(4096).unwrap();
        let e = SharedMapping::map(short.fd().try_clone_to_owned().unwrap(), 8192).err().unwrap();
        assert_eq!(e.to_string(), "the shared memory has 4096 bytes, not 8192");
        let e = MapError::os("cannot map shared memory".into(), nix::errno::Errno::ENOMEM);
        // The text is nix's (`ENOMEM: …`), as the store's messages have always carried it.
        assert_eq!(e.to_string(), format!("cannot map shared memory: {}", nix::errno::Errno::ENOMEM));
        assert!(e.to_string().starts_with("cannot map shared memory: ENOMEM: "), "{e}");
        assert!(matches!(&e, MapError::Os(io) if io.kind() == io::ErrorKind::OutOfMemory));
    }
}
