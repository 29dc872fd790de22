//! The staging buffer: registered memory that values outside registered memory pass through
//! (`put(bytes)`, `get() -> bytes`), as Mooncake's `local_buffer_size` buffer does.
//!
//! Callers borrow a chunk, copy into or out of it, transfer, and drop it. A value larger than
//! the buffer moves in several chunks, so any size works with any buffer; callers that find
//! the buffer full wait (bounded) for a chunk to come back.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{ErrorCode, StoreError, StoreResult};
use crate::sys::mapping::Mapping;

/// Chunks are multiples of this, so that concurrent small values do not fragment the buffer.
const GRAIN: u64 = 4096;

/// The longest a caller waits for room before failing with `BUFFER_OVERFLOW`.
const WAIT: Duration = Duration::from_secs(30);

pub struct Staging {
    memory: Mapping,
    /// Free ranges `(offset, len)`, sorted by offset, neighbours merged.
    free: Mutex<Vec<(u64, u64)>>,
    returned: Condvar,
}

/// A borrowed range of the staging buffer; given back on drop.
pub struct Chunk<'a> {
    staging: &'a Staging,
    offset: u64,
    len: u64,
}

impl Staging {
    pub fn new(len: u64) -> StoreResult<Staging> {
        let len = len.max(GRAIN).div_ceil(GRAIN) * GRAIN;
        let memory = Mapping::new(len)?;
        Ok(Staging { free: Mutex::new(vec![(0, memory.len())]), memory, returned: Condvar::new() })
    }

    pub fn addr(&self) -> u64 {
        self.memory.addr()
    }

    pub fn len(&self) -> u64 {
        self.memory.len()
    }

    /// A chunk of at most `want` bytes (at least one byte, at most the buffer). Takes the
    /// largest piece available up to `want` rather than waiting for a perfect fit, so large
    /// values stream through a busy buffer.
    pub fn borrow(&self, want: u64) -> StoreResult<Chunk<'_>> {
        let want = want.clamp(1, self.len()).div_ceil(GRAIN) * GRAIN;
        // A small request waits for its whole size; a large one takes a piece of at least
        // a quarter of the buffer (or of itself).
        let least = want.min((self.len() / 4).max(GRAIN));
        let deadline = Instant::now() + WAIT;
        let mut free = self.free.lock();
        loop {
            let best = free.iter().enumerate().filter(|(_, (_, len))| *len >= least).max_by_key(|(_, (_, len))| *len);
            if let Some((i, &(offset, len))) = best {
                let take = len.min(want);
                if take == len {
                    free.remove(i);
                } else {
                    free[i] = (offset + take, len - take);
                }
                return Ok(Chunk { staging: self, offset, len: take });
            }
            if self.returned.wait_until(&mut free, deadline).timed_out() {
                return Err(StoreError::new(
                    ErrorCode::BufferOverflow,
                    format!("the staging buffer ({} bytes) stayed full for {WAIT:?}", self.len()),
                ));
            }
        }
    }

    fn give_back(&self, offset: u64, len: u64) {
        let mut free = self.free.lock();
        let i = free.partition_point(|&(o, _)| o < offset);
        free.insert(i, (offset, len));
        // Merge with the next, then with the previous neighbour.
        if i + 1 < free.len() && free[i].0 + free[i].1 == free[i + 1].0 {
            free[i].1 += free[i + 1].1;
            free.remove(i + 1);
        }
        if i > 0 && free[i - 1].0 + free[i - 1].1 == free[i].0 {
            free[i - 1].1 += free[i].1;
            free.remove(i);
        }
        drop(free);
        self.returned.notify_all();
    }
}

impl Chunk<'_> {
    pub fn addr(&self) -> u64 {
        self.staging.addr() + self.offset
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Copies `bytes` to `addr` inside this chunk; false (nothing written) outside it.
    pub fn write_at(&self, addr: u64, bytes: &[u8]) -> bool {
        self.contains(addr, bytes.len() as u64) && self.staging.memory.write_at(addr, bytes)
    }

    /// Fills `out` from `addr` inside this chunk; false (nothing read) outside it.
    pub fn read_at(&self, addr: u64, out: &mut [u8]) -> bool {
        self.contains(addr, out.len() as u64) && self.staging.memory.read_at(addr, out)
    }

    fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.addr() && addr.checked_add(len).is_some_and(|end| end <= self.addr() + self.len)
    }
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        self.staging.give_back(self.offset, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_never_overlap_and_all_space_comes_back() {
        let s = Staging::new(64 * GRAIN).unwrap();
        let a = s.borrow(1).unwrap();
        let b = s.borrow(10 * GRAIN).unwrap();
        let c = s.borrow(1000 * GRAIN).unwrap();
        assert_eq!(a.len(), GRAIN);
        assert_eq!(b.len(), 10 * GRAIN);
        assert_eq!(c.len(), 53 * GRAIN, "a large request takes what is left");
        let ranges = [(a.offset, a.len), (b.offset, b.len), (c.offset, c.len)];
        for (i, x) in ranges.iter().enumerate() {
            for y in &ranges[i + 1..] {
                assert!(x.0 + x.1 <= y.0 || y.0 + y.1 <= x.0, "{x:?} overlaps {y:?}");
            }
        }
        drop(b);
        drop(a);
        drop(c);
        assert_eq!(*s.free.lock(), vec![(0, 64 * GRAIN)]);
    }

    #[test]
    fn a_full_buffer_hands_out_space_once_it_comes_back() {
        let s = std::sync::Arc::new(Staging::new(4 * GRAIN).unwrap());
        let all = s.borrow(4 * GRAIN).unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| s.borrow(GRAIN).map(|c| c.len()));
            std::thread::sleep(Duration::from_millis(50));
            drop(all);
            assert_eq!(waiter.join().unwrap().unwrap(), GRAIN);
        });
    }
}
