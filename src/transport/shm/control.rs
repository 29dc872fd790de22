//! The control block a same-host target shares with its initiators: a small memfd that both
//! sides map, holding the target's current remotely accessible regions (behind a seqlock) and
//! one slot per concurrent copier, through which the target learns when copies that may have
//! seen an old table have ended.
//!
//! Layout (all fields are `u64` words, accessed only atomically):
//! - header, [`HEADER_WORDS`] words: magic, nonce (2 words), owner pid, table sequence,
//!   region count, closed flag;
//! - [`SLOTS`] slots of [`SLOT_WORDS`] words (one cache line each): the op number in flight
//!   (0: idle), the copier's pid, a cut-off flag;
//! - [`MAX_REGIONS`] regions of 2 words: address, length, sorted by address.
//!
//! A copier owns a slot while it holds an OFD write lock on byte `LOCK_BASE + slot` of the file:
//! the kernel drops the lock when the copier's process dies, so a dead copier never holds up
//! the target, and no pid can be reused to fake one.
//!
//! The block is mapped only when its memfd is sealed against shrinking
//! (`sys::mapping::check_unshrinkable`; the target creates it sealed): an initiator maps the
//! target's memfd, and a target that truncated it (a bug, or a hostile process advertising a
//! block) would otherwise raise SIGBUS in the initiator on its next copy. The seal protects the
//! target's own mapping from its initiators as well, which can open the same memfd.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// "MCSHM001".
pub const MAGIC: u64 = 0x4d43_5348_4d30_3031;
pub const HEADER_WORDS: usize = 64;
pub const SLOTS: usize = 128;
pub const SLOT_WORDS: usize = 8;
/// Regions beyond this many disable the same-host path of the target (peers use TCP).
pub const MAX_REGIONS: usize = 8192;
/// The region count written when the table overflowed.
pub const OVERFLOW: u64 = u64::MAX;
const LOCK_BASE: i64 = 1 << 30;

const H_MAGIC: usize = 0;
const H_NONCE: usize = 1; // and 2
const H_PID: usize = 3;
const H_SEQ: usize = 4;
const H_COUNT: usize = 5;
const H_CLOSED: usize = 6;

const S_STATE: usize = 0;
const S_PID: usize = 1;
const S_CUT_OFF: usize = 2;

const SLOTS_AT: usize = HEADER_WORDS;
const REGIONS_AT: usize = SLOTS_AT + SLOTS * SLOT_WORDS;
/// Words in the whole block.
pub const WORDS: usize = REGIONS_AT + 2 * MAX_REGIONS;
/// Bytes of the file (a whole number of 4 KiB pages).
pub const BYTES: usize = (WORDS * 8).div_ceil(4096) * 4096;

/// One shared mapping of a control block file.
pub struct ControlMap {
    base: NonNull<AtomicU64>,
    file: File,
}

// SAFETY: the mapping is only accessed through atomics, and it lives until `drop`.
unsafe impl Send for ControlMap {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for ControlMap {}

impl ControlMap {
    /// Maps `file` (a memfd sealed against shrinking, at least [`BYTES`] long) shared,
    /// read-write.
    pub fn map(file: File) -> std::io::Result<ControlMap> {
        use std::os::fd::AsFd;
        crate::sys::mapping::check_unshrinkable(file.as_fd(), BYTES as u64)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("control block refused: {e}")))?;
        // SAFETY: a fresh shared mapping of a file we hold open; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<AtomicU64>()).ok_or_else(|| std::io::Error::other("mmap returned NULL"))?;
        Ok(ControlMap { base, file })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Address of the mapping in this process.
    pub fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS, "control block word {i} out of range");
        // SAFETY: `i` is inside the mapping (checked above), which is page-aligned and stays
        // mapped while `self` lives; `AtomicU64` has the layout of `u64`, and every process
        // touches these words only atomically.
        unsafe { &*self.base.as_ptr().add(i) }
    }

    fn slot_word(&self, slot: usize, field: usize) -> &AtomicU64 {
        assert!(slot < SLOTS);
        self.word(SLOTS_AT + slot * SLOT_WORDS + field)
    }

    // ---- header ----

    /// Writes the header of a new block (target side, before anyone else can see it).
    pub fn init_header(&self, nonce: [u64; 2], pid: u32) {
        self.word(H_NONCE).store(nonce[0], Ordering::Relaxed);
        self.word(H_NONCE + 1).store(nonce[1], Ordering::Relaxed);
        self.word(H_PID).store(u64::from(pid), Ordering::Relaxed);
        self.word(H_MAGIC).store(MAGIC, Ordering::Release);
    }

    /// Magic, nonce and pid as the header holds them.
    pub fn header(&self) -> (u64, [u64; 2], u32) {
        (
            self.word(H_MAGIC).load(Ordering::Acquire),
            [self.word(H_NONCE).load(Ordering::Relaxed), self.word(H_NONCE + 1).load(Ordering::Relaxed)],
            self.word(H_PID).load(Ordering::Relaxed) as u32,
        )
    }

    pub fn set_closed(&self) {
        self.word(H_CLOSED).store(1, Ordering::SeqCst);
    }

    pub fn closed(&self) -> bool {
        self.word(H_CLOSED).load(Ordering::Acquire) != 0
    }

    // ---- region table (seqlock) ----

    /// Replaces the region table (target side; callers serialise writers). `regions` must be
    /// sorted and non-overlapping; more than [`MAX_REGIONS`] marks the table as overflowed.
    pub fn write_regions(&self, regions: &[(u64, u64)]) {
        let seq = self.word(H_SEQ);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        if regions.len() > MAX_REGIONS {
            self.word(H_COUNT).store(OVERFLOW, Ordering::Relaxed);
        } else {
            for (i, &(addr, len)) in regions.iter().enumerate() {
                self.word(REGIONS_AT + 2 * i).store(addr, Ordering::Relaxed);
                self.word(REGIONS_AT + 2 * i + 1).store(len, Ordering::Relaxed);
            }
            self.word(H_COUNT).store(regions.len() as u64, Ordering::Relaxed);
        }
        seq.store(s.wrapping_add(2), Ordering::Release);
        // Pairs with the copier's fence in `begin_op`: after this, either the copier sees the
        // new table, or the target sees its slot busy (see `export::ShmExport::quiesce`).
        fence(Ordering::SeqCst);
    }

    /// True when `[addr, addr + len)` lies inside one region of a consistent snapshot of the
    /// table; `None` when no consistent snapshot could be read in time (a writer that died
    /// mid-update) or the table overflowed.
    pub fn contains(&self, addr: u64, len: u64) -> Option<bool> {
        let end = addr.checked_add(len)?;
        let seq = self.word(H_SEQ);
        let deadline = Instant::now() + Duration::from_millis(10);
        let mut spins = 0u32;
        loop {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let found = self.search(addr, end);
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    return found;
                }
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
    }

    /// Binary search of the (possibly torn) table; the caller validates the snapshot.
    fn search(&self, addr: u64, end: u64) -> Option<bool> {
        let count = self.word(H_COUNT).load(Ordering::Relaxed);
        if count == OVERFLOW {
            return None;
        }
        let count = (count as usize).min(MAX_REGIONS);
        let (mut lo, mut hi) = (0usize, count);
        // The last region whose address is <= addr.
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.word(REGIONS_AT + 2 * mid).load(Ordering::Relaxed) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 || end == addr {
            return Some(false);
        }
        let base = self.word(REGIONS_AT + 2 * (lo - 1)).load(Ordering::Relaxed);
        let rlen = self.word(REGIONS_AT + 2 * (lo - 1) + 1).load(Ordering::Relaxed);
        Some(base.checked_add(rlen).is_some_and(|rend| end <= rend))
    }

    // ---- slots ----

    /// Copier side: takes a free slot (an OFD lock the kernel releases when this process dies).
    /// `owned` lists the slots this open file already holds (a lock its owner already has is
    /// granted again, so they must be skipped).
    pub fn claim_slot(&self, pid: u32, owned: &[usize]) -> Option<usize> {
        (0..SLOTS).filter(|s| !owned.contains(s)).find(|&slot| {
            if !set_lock(&self.file, slot, libc::F_WRLCK as i16) {
                return false;
            }
            self.slot_word(slot, S_CUT_OFF).store(0, Ordering::Relaxed);
            self.slot_word(slot, S_PID).store(u64::from(pid), Ordering::Relaxed);
            self.slot_word(slot, S_STATE).store(0, Ordering::Release);
            true
        })
    }

    /// Copier side: gives a slot back.
    pub fn release_slot(&self, slot: usize) {
        self.slot_word(slot, S_STATE).store(0, Ordering::Release);
        set_lock(&self.file, slot, libc::F_UNLCK as i16);
    }

    /// Copier side: announces op `op` on `slot`; after this the copier must read the table.
    pub fn begin_op(&self, slot: usize, op: u64) {
        self.slot_word(slot, S_STATE).store(op, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Copier side: the op on `slot` is over (its bytes have moved or failed).
    pub fn end_op(&self, slot: usize) {
        self.slot_word(slot, S_STATE).store(0, Ordering::Release);
    }

    /// True when the target cut this slot off the same-host path.
    pub fn cut_off(&self, slot: usize) -> bool {
        self.slot_word(slot, S_CUT_OFF).load(Ordering::Acquire) != 0
    }

    /// Target side: the op in flight on `slot` (0: none).
    pub fn slot_state(&self, slot: usize) -> u64 {
        self.slot_word(slot, S_STATE).load(Ordering::Acquire)
    }

    pub fn slot_pid(&self, slot: usize) -> u32 {
        self.slot_word(slot, S_PID).load(Ordering::Relaxed) as u32
    }

    pub fn set_cut_off(&self, slot: usize) {
        self.slot_word(slot, S_CUT_OFF).store(1, Ordering::SeqCst);
    }

    /// Target side: true while some live process holds `slot`.
    pub fn slot_held(&self, slot: usize) -> bool {
        // SAFETY: a plain struct of integers, fully initialised below.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as i16;
        lock.l_whence = libc::SEEK_SET as i16;
        lock.l_start = LOCK_BASE + slot as i64;
        lock.l_len = 1;
        // SAFETY: F_OFD_GETLK reads and writes the `flock` we own.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        // A failed query counts as held: waiting is the safe side.
        rc != 0 || lock.l_type != libc::F_UNLCK as i16
    }
}

/// Sets (`F_WRLCK`) or clears (`F_UNLCK`) this open file's lock on a slot's byte; false when
/// another open file description holds it.
fn set_lock(file: &File, slot: usize, kind: i16) -> bool {
    // SAFETY: a plain struct of integers, fully initialised below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as i16;
    lock.l_start = LOCK_BASE + slot as i64;
    lock.l_len = 1;
    // SAFETY: F_OFD_SETLK reads the `flock` we own; `file` is open.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) == 0 }
}

impl Drop for ControlMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing borrows it past `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ControlMap {
        ControlMap::map(File::from(crate::sys::mapping::memfd_unshrinkable(c"mc-test", BYTES as u64).unwrap())).unwrap()
    }

    #[test]
    fn only_a_block_that_cannot_shrink_is_mapped() {
        let fd = nix::sys::memfd::memfd_create(c"mc-test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        let file = File::from(fd);
        file.set_len(BYTES as u64).unwrap();
        let e = ControlMap::map(file).err().expect("an unsealed memfd is refused");
        assert!(e.to_string().contains("F_SEAL_SHRINK"), "{e}");
        let short = crate::sys::mapping::memfd_unshrinkable(c"mc-test", 4096).unwrap();
        assert!(ControlMap::map(File::from(short)).is_err(), "a sealed but short memfd is refused");
        let c = block();
        assert!(c.file().set_len(0).is_err(), "the block cannot be truncated under its mappings");
        c.init_header([1, 2], 7);
        assert_eq!(c.header().0, MAGIC);
    }

    #[test]
    fn lookups_follow_the_table() {
        let c = block();
        c.init_header([1, 2], 7);
        assert_eq!(c.contains(100, 1), Some(false));
        c.write_regions(&[(100, 50), (150, 50), (1000, 10)]);
        assert_eq!(c.contains(100, 50), Some(true));
        assert_eq!(c.contains(120, 50), Some(false), "a range spanning two regions");
        assert_eq!(c.contains(99, 2), Some(false));
        assert_eq!(c.contains(1009, 1), Some(true));
        assert_eq!(c.contains(1009, 2), Some(false));
        assert_eq!(c.contains(5000, 1), Some(false));
        assert_eq!(c.contains(u64::MAX, 2), None, "overflowing range");
        c.write_regions(&[(1000, 10)]);
        assert_eq!(c.contains(100, 1), Some(false));
        c.write_regions(&vec![(0, 1); MAX_REGIONS + 1]);
        assert_eq!(c.contains(1000, 1), None, "an overflowed table is unusable");
    }

    #[test]
    fn slots_are_exclusive_between_open_files_and_free_on_close() {
        let c = block();
        let path = format!("/proc/self/fd/{}", c.file().as_raw_fd());
        let other = ControlMap::map(std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap()).unwrap();
        let a = other.claim_slot(1, &[]).unwrap();
        assert!(c.slot_held(a));
        let b = other.claim_slot(1, &[a]).unwrap();
        assert_ne!(a, b, "one open file cannot take a slot twice");
        other.begin_op(a, 5);
        assert_eq!(c.slot_state(a), 5);
        other.end_op(a);
        assert_eq!(c.slot_state(a), 0);
        drop(other);
        assert!(!c.slot_held(a) && !c.slot_held(b), "closing the file frees its slots");
    }
}
