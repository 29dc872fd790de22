//! What the index holds per key: the visible version, the puts in progress, and space whose
//! release waits for a lease or a timeout.

use std::time::Instant;

use crate::proto::{ClientId, PutId, SegmentId};

/// One replica's space: `len` bytes (already rounded to the allocator's alignment) at
/// `offset` of segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alloc {
    pub segment: SegmentId,
    pub offset: u64,
    pub len: u64,
}

/// A visible (completely written) version of a key.
#[derive(Debug, Clone)]
pub struct Object {
    pub size: u64,
    /// At least one; each on a segment of a distinct name.
    pub allocs: Vec<Alloc>,
    /// No byte of `allocs` is freed or reused before this instant (read leases only extend it).
    pub lease_until: Instant,
    /// The last get or put of the key: eviction takes the oldest first.
    pub last_access: Instant,
    /// Never evicted.
    pub hard_pin: bool,
    /// Identifies this version in `ReadsDone` (the id of the put that wrote it).
    pub version: PutId,
    /// Gets answered whose reader has not said `ReadsDone` yet.
    pub readers: u32,
    /// Evicted only after every unpinned object, until this instant; `None`: not soft-pinned.
    pub soft_pin_until: Option<Instant>,
    /// The client whose put wrote this version (`ReplicaClear` clears only its own objects).
    pub owner: ClientId,
}

impl Object {
    /// Whether a reader may still be copying the bytes.
    pub fn leased(&self, now: Instant) -> bool {
        self.lease_until > now
    }

    /// Whether the soft pin still holds.
    pub fn soft_pinned(&self, now: Instant) -> bool {
        self.soft_pin_until.is_some_and(|until| until > now)
    }

    /// The bytes the object takes in all its segments.
    pub fn footprint(&self) -> u64 {
        self.allocs.iter().map(|a| a.len).sum()
    }
}

/// Space reserved by `PutStart`, not yet visible.
#[derive(Debug, Clone)]
pub struct PendingPut {
    pub key: String,
    pub client: ClientId,
    pub size: u64,
    pub allocs: Vec<Alloc>,
    pub started: Instant,
    pub hard_pin: bool,
    /// How long the object stays soft-pinned once visible; `None`: not soft-pinned.
    pub soft_pin_ttl: Option<std::time::Duration>,
}

/// Everything the master knows about one key. An entry with neither a visible version nor a
/// put in progress is removed from the index.
#[derive(Debug, Default)]
pub struct KeyEntry {
    pub visible: Option<Object>,
    /// Puts of this key in progress, oldest first (several only with upsert).
    pub puts: Vec<PutId>,
}

impl KeyEntry {
    pub fn is_empty(&self) -> bool {
        self.visible.is_none() && self.puts.is_empty()
    }
}

/// Space taken out of the index whose release waits until `until`: a removed or replaced
/// version a reader holds a lease on, or a discarded put whose writer may still be writing.
#[derive(Debug, Clone, Copy)]
pub struct Deferred {
    pub alloc: Alloc,
    pub until: Instant,
    /// A reader's lease (not a writer's grace time): the owner must keep the memory that long
    /// if it unmounts the segment.
    pub read_lease: bool,
    /// The retired version whose readers hold this space (0 for a writer's grace time).
    pub version: PutId,
}
