//! The bench's data buffers: one per NUMA node, as Mooncake's bench takes one
//! `numa_alloc_onnode` buffer per node (pages are committed on first touch in both: a zeroed
//! allocation of this size is an anonymous mapping), and the byte pattern `--verify` writes and
//! checks.

use std::path::Path;

/// One zeroed, heap-allocated buffer.
///
/// The engine reads and writes it through its address while transfers run, so the bench only
/// looks at its bytes (with [`Buffer::bytes`] / [`Buffer::bytes_mut`]) when none are in flight.
pub struct Buffer {
    mem: Vec<u8>,
}

impl Buffer {
    /// Allocates `len` bytes of zeroed memory (committed lazily by the kernel).
    pub fn new(len: u64) -> std::io::Result<Buffer> {
        let len = usize::try_from(len).map_err(|_| std::io::Error::other("buffer size does not fit in usize"))?;
        if len == 0 {
            return Err(std::io::Error::other("buffer size is 0"));
        }
        // `vec![0; n]` asks the allocator for zeroed memory (calloc: fresh anonymous pages, not
        // written); filling a vector would commit every page up front.
        Ok(Buffer { mem: vec![0u8; len] })
    }

    /// The address to register and to put in requests.
    pub fn addr(&self) -> u64 {
        self.mem.as_ptr() as u64
    }

    pub fn len(&self) -> u64 {
        self.mem.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Reads the buffer. Call only while no transfer that writes it is in flight.
    pub fn bytes(&self) -> &[u8] {
        &self.mem
    }

    /// Writes the buffer. Call only while no transfer touches it.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }
}

/// Configured NUMA nodes (Mooncake: `numa_num_configured_nodes()`), 1 when unknown.
pub fn numa_nodes() -> usize {
    count_nodes(Path::new("/sys/devices/system/node")).max(1)
}

fn count_nodes(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("node").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

/// The 8 bytes at word `word` of buffer `buffer` in the `--verify` pattern (splitmix64), so
/// a block that lands at a wrong offset or in a wrong buffer is caught too.
fn pattern_word(buffer: usize, word: u64) -> u64 {
    let mut z = word.wrapping_add((buffer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Calls `f(range_in_bytes, pattern_bytes)` for each piece of `[offset, offset + len)` that
/// falls in one pattern word.
fn for_each_word(buffer: usize, offset: u64, len: usize, mut f: impl FnMut(std::ops::Range<usize>, &[u8]) -> bool) {
    let mut i = 0;
    while i < len {
        let at = offset + i as u64;
        let within = (at % 8) as usize;
        let n = (8 - within).min(len - i);
        let word = pattern_word(buffer, at / 8).to_le_bytes();
        if !f(i..i + n, &word[within..within + n]) {
            return;
        }
        i += n;
    }
}

/// Fills `bytes`, which sit at `offset` of buffer `buffer`, with the pattern.
pub fn fill_pattern(buffer: usize, offset: u64, bytes: &mut [u8]) {
    for_each_word(buffer, offset, bytes.len(), |r, p| {
        bytes[r].copy_from_slice(p);
        true
    });
}

/// The first offset (relative to `bytes`) where `bytes`, at `offset` of buffer `buffer`,
/// differs from the pattern.
pub fn check_pattern(buffer: usize, offset: u64, bytes: &[u8]) -> Option<usize> {
    let mut bad = None;
    for_each_word(buffer, offset, bytes.len(), |r, p| {
        if bytes[r.clone()] == *p {
            return true;
        }
        bad = Some(r.start + bytes[r].iter().zip(p).position(|(a, b)| a != b).unwrap_or(0));
        false
    });
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_position_dependent_and_checkable_at_any_offset() {
        let mut whole = vec![0u8; 100];
        fill_pattern(3, 5, &mut whole);
        let mut part = vec![0u8; 37];
        fill_pattern(3, 5 + 11, &mut part);
        assert_eq!(&whole[11..48], &part[..]);
        assert_eq!(check_pattern(3, 5, &whole), None);
        assert_eq!(check_pattern(4, 5, &whole), Some(0), "another buffer's pattern differs");
        whole[42] ^= 1;
        assert_eq!(check_pattern(3, 5, &whole), Some(42));
    }

    #[test]
    fn buffer_maps_zeroed_memory() {
        let mut b = Buffer::new(1 << 20).unwrap();
        assert_eq!(b.len(), 1 << 20);
        assert!(b.bytes().iter().all(|&x| x == 0));
        b.bytes_mut()[7] = 1;
        assert_eq!(b.bytes()[7], 1);
        assert!(Buffer::new(0).is_err());
    }

    #[test]
    fn at_least_one_numa_node() {
        assert!(numa_nodes() >= 1);
        assert_eq!(count_nodes(Path::new("/nonexistent")), 0);
    }
}
