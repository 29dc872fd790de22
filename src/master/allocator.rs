//! Space accounting inside one mounted segment: a best-fit offset allocator.
//!
//! The master never touches a segment's bytes; it only hands out non-overlapping ranges of it.
//! Free ranges live in two ordered maps, one by offset (to find and merge neighbours when a
//! range is freed) and one by `(size, offset)` (to find the smallest range that fits, which keeps
//! large ranges whole for large values). Every range starts on a 64-byte boundary of the
//! owner's address space and every length is a multiple of 64, so that replicas never share a
//! cache line and the allocator's maps never hold slivers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The alignment of every allocation, in bytes (of the absolute address, not just the offset).
pub const ALIGN: u64 = 64;

/// Best-fit allocator over `[0, capacity)` of one segment.
#[derive(Debug, Clone)]
pub struct OffsetAllocator {
    /// Free ranges: offset → length.
    by_offset: BTreeMap<u64, u64>,
    /// The same free ranges keyed by `(length, offset)`.
    by_size: BTreeSet<(u64, u64)>,
    /// Allocated ranges: offset → length (lengths rounded up to `ALIGN`).
    allocated: HashMap<u64, u64>,
    /// The first usable offset: what aligns `base + offset` to `ALIGN`.
    start: u64,
    capacity: u64,
    used: u64,
}

impl OffsetAllocator {
    /// An allocator for a segment of `size` bytes at address `base`. The usable part starts at
    /// the first 64-byte-aligned address and ends at the last whole 64-byte block, so
    /// [`capacity`](Self::capacity) may be a little less than `size`.
    pub fn new(base: u64, size: u64) -> OffsetAllocator {
        let start = base.wrapping_neg() % ALIGN;
        let capacity = size.saturating_sub(start) / ALIGN * ALIGN;
        let mut alloc = OffsetAllocator {
            by_offset: BTreeMap::new(),
            by_size: BTreeSet::new(),
            allocated: HashMap::new(),
            start,
            capacity,
            used: 0,
        };
        if capacity > 0 {
            alloc.insert_free(start, capacity);
        }
        alloc
    }

    /// Reserves `len` bytes (rounded up to 64); returns the offset from the segment's base, or
    /// `None` when no free range is long enough (or `len` is 0).
    pub fn allocate(&mut self, len: u64) -> Option<u64> {
        let len = round_up(len)?;
        if len == 0 {
            return None;
        }
        let &(free_len, offset) = self.by_size.range((len, 0)..).next()?;
        self.remove_free(offset, free_len);
        if free_len > len {
            self.insert_free(offset + len, free_len - len);
        }
        self.allocated.insert(offset, len);
        self.used += len;
        Some(offset)
    }

    /// Returns the range allocated at `offset`, merging it with free neighbours; false (and
    /// nothing changes) when nothing is allocated there.
    pub fn free(&mut self, offset: u64) -> bool {
        let Some(len) = self.allocated.remove(&offset) else { return false };
        self.used -= len;
        let end = offset + len;
        let mut start = offset;
        if let Some((&prev, &prev_len)) = self.by_offset.range(..offset).next_back()
            && prev + prev_len == offset
        {
            self.remove_free(prev, prev_len);
            start = prev;
        }
        let mut merged_end = end;
        if let Some(&next_len) = self.by_offset.get(&end) {
            self.remove_free(end, next_len);
            merged_end = end + next_len;
        }
        self.insert_free(start, merged_end - start);
        true
    }

    /// The length allocated at `offset` (rounded up to 64), if anything is.
    pub fn allocated_len(&self, offset: u64) -> Option<u64> {
        self.allocated.get(&offset).copied()
    }

    /// Bytes allocated now (sum of rounded lengths).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Usable bytes (see [`new`](Self::new)).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes not allocated.
    pub fn free_bytes(&self) -> u64 {
        self.capacity - self.used
    }

    /// The longest free range: the largest value one allocation can still take.
    pub fn largest_free(&self) -> u64 {
        self.by_size.last().map_or(0, |&(len, _)| len)
    }

    /// Whether an allocation of `len` bytes would succeed now.
    pub fn fits(&self, len: u64) -> bool {
        round_up(len).is_some_and(|len| len > 0 && len <= self.largest_free())
    }

    /// The number of free ranges (1 when nothing is allocated).
    pub fn free_ranges(&self) -> usize {
        self.by_offset.len()
    }

    /// The first usable offset (what aligns the base address).
    pub fn start(&self) -> u64 {
        self.start
    }

    fn insert_free(&mut self, offset: u64, len: u64) {
        self.by_offset.insert(offset, len);
        self.by_size.insert((len, offset));
    }

    fn remove_free(&mut self, offset: u64, len: u64) {
        self.by_offset.remove(&offset);
        self.by_size.remove(&(len, offset));
    }
}

/// `len` rounded up to [`ALIGN`]; `None` on overflow.
pub fn round_up(len: u64) -> Option<u64> {
    len.checked_add(ALIGN - 1).map(|l| l / ALIGN * ALIGN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn best_fit_takes_the_smallest_range_that_fits() {
        let mut a = OffsetAllocator::new(0, 64 * 10);
        let x = a.allocate(64).unwrap();
        let y = a.allocate(64 * 3).unwrap();
        let z = a.allocate(64).unwrap();
        let _w = a.allocate(64 * 4).unwrap();
        assert_eq!((x, y, z), (0, 64, 256));
        // Free ranges now: [64, 256) (3 blocks) and the last block [576, 640).
        assert!(a.free(y));
        assert_eq!(a.allocate(64), Some(576), "the 1-block hole is the best fit");
        assert_eq!(a.allocate(64 * 2), Some(64));
    }

    #[test]
    fn lengths_and_addresses_are_aligned() {
        let base = 0x1000_0010; // 16 bytes past a 64-byte boundary
        let mut a = OffsetAllocator::new(base, 1000);
        assert_eq!(a.start(), 48);
        assert_eq!(a.capacity(), (1000 - 48) / 64 * 64);
        let o = a.allocate(1).unwrap();
        assert_eq!((base + o) % ALIGN, 0);
        assert_eq!(a.allocated_len(o), Some(64));
        let p = a.allocate(65).unwrap();
        assert_eq!((base + p) % ALIGN, 0);
        assert_eq!(a.used(), 64 * 3);
    }

    #[test]
    fn freeing_merges_neighbours_and_rejects_unknown_offsets() {
        let mut a = OffsetAllocator::new(0, 64 * 4);
        let offs: Vec<u64> = (0..4).map(|_| a.allocate(64).unwrap()).collect();
        assert_eq!(a.allocate(64), None);
        assert_eq!(a.largest_free(), 0);
        assert!(a.free(offs[1]));
        assert!(a.free(offs[3]));
        assert_eq!(a.free_ranges(), 2);
        assert!(a.free(offs[2]));
        assert_eq!(a.free_ranges(), 1);
        assert_eq!(a.largest_free(), 64 * 3);
        assert!(!a.free(offs[2]), "double free is refused");
        assert!(!a.free(12345));
        assert!(a.free(offs[0]));
        assert_eq!((a.free_ranges(), a.used(), a.largest_free()), (1, 0, 64 * 4));
    }

    #[test]
    fn zero_and_oversized_requests_fail() {
        let mut a = OffsetAllocator::new(0, 4096);
        assert_eq!(a.allocate(0), None);
        assert_eq!(a.allocate(4097), None);
        assert_eq!(a.allocate(u64::MAX), None);
        assert!(!a.fits(0));
        assert!(a.fits(4096));
        assert_eq!(a.allocate(4096), Some(0));
        assert!(OffsetAllocator::new(0, 63).allocate(1).is_none());
    }

    proptest! {
        #[test]
        fn random_sequences_never_overlap(ops in proptest::collection::vec((any::<bool>(), 1u64..5000, any::<u16>()), 1..200)) {
            let mut a = OffsetAllocator::new(4096 + 8, 64 * 1024);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (alloc, len, pick) in ops {
                if alloc || live.is_empty() {
                    if let Some(off) = a.allocate(len) {
                        let rounded = a.allocated_len(off).unwrap();
                        prop_assert!(rounded >= len && rounded.is_multiple_of(ALIGN));
                        prop_assert_eq!((4096 + 8 + off) % ALIGN, 0);
                        prop_assert!(off + rounded <= a.start() + a.capacity());
                        for &(o, l) in &live {
                            prop_assert!(off + rounded <= o || o + l <= off, "overlap");
                        }
                        live.push((off, rounded));
                    } else {
                        prop_assert!(a.largest_free() < round_up(len).unwrap());
                    }
                } else {
                    let (off, _) = live.swap_remove(usize::from(pick) % live.len());
                    prop_assert!(a.free(off));
                }
                prop_assert_eq!(a.used(), live.iter().map(|&(_, l)| l).sum::<u64>());
            }
            for (off, _) in live.drain(..) {
                prop_assert!(a.free(off));
            }
            prop_assert_eq!(a.free_ranges(), 1);
            prop_assert_eq!(a.largest_free(), a.capacity());
            prop_assert_eq!(a.used(), 0);
        }
    }
}
