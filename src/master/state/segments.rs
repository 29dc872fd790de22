//! Mounted segments and where a put's replicas go.
//!
//! Placement follows Mooncake's allocation strategy (`allocation_strategy.h`): replicas of one
//! put go to segments of distinct *names* (a name is an owner's Transfer Engine segment, so two
//! segments mounted by one process share it and never hold two replicas of a key); the
//! preferred names are tried first, in order; then the other names, the one with the most free
//! space first (ties broken at random, so that equal clients fill evenly). It is best effort:
//! when fewer names can take the value than asked, the put gets as many replicas as fit (at
//! least one, or the put fails with `NO_AVAILABLE_HANDLE`).

use std::collections::{HashMap, HashSet};

use rand::Rng;
use rand::seq::SliceRandom;

use super::objects::Alloc;
use crate::master::allocator::OffsetAllocator;
use crate::proto::{ClientId, ErrorCode, Outcome, SegmentId};

/// One mounted segment.
#[derive(Debug)]
pub struct Segment {
    pub client: ClientId,
    pub name: String,
    pub base: u64,
    pub size: u64,
    pub alloc: OffsetAllocator,
    /// Being unmounted gracefully: nothing new is placed here (Mooncake's draining segment).
    pub draining: bool,
}

/// Every mounted segment by id.
#[derive(Debug, Default)]
pub struct SegmentTable {
    segments: HashMap<SegmentId, Segment>,
}

impl SegmentTable {
    /// Mounts a segment. Mounting the same id again with the same owner and range is accepted
    /// (Mooncake's mount is idempotent: a client may retry it); any other reuse of the id is
    /// `SEGMENT_ALREADY_EXISTS`.
    pub fn mount(&mut self, id: SegmentId, client: ClientId, name: &str, base: u64, size: u64) -> Outcome<()> {
        if size == 0 || name.is_empty() || base.checked_add(size).is_none() {
            return Err(ErrorCode::InvalidParams);
        }
        if let Some(s) = self.segments.get(&id) {
            return if s.client == client && s.name == name && s.base == base && s.size == size {
                Ok(())
            } else {
                Err(ErrorCode::SegmentAlreadyExists)
            };
        }
        let alloc = OffsetAllocator::new(base, size);
        self.segments.insert(id, Segment { client, name: name.to_string(), base, size, alloc, draining: false });
        Ok(())
    }

    pub fn get_mut(&mut self, id: SegmentId) -> Option<&mut Segment> {
        self.segments.get_mut(&id)
    }

    /// Takes a segment out of the table (its space goes with it).
    pub fn remove(&mut self, id: SegmentId) -> Option<Segment> {
        self.segments.remove(&id)
    }

    pub fn get(&self, id: SegmentId) -> Option<&Segment> {
        self.segments.get(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Every segment, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&SegmentId, &Segment)> {
        self.segments.iter()
    }

    /// The segments `client` mounted.
    pub fn owned_by(&self, client: ClientId) -> Vec<SegmentId> {
        self.segments.iter().filter(|(_, s)| s.client == client).map(|(&id, _)| id).collect()
    }

    /// Usable bytes of all segments.
    pub fn capacity(&self) -> u64 {
        self.segments.values().map(|s| s.alloc.capacity()).sum()
    }

    /// Allocated bytes of all segments.
    pub fn used(&self) -> u64 {
        self.segments.values().map(|s| s.alloc.used()).sum()
    }

    /// The number of distinct segment names.
    pub fn names(&self) -> usize {
        self.segments.values().map(|s| s.name.as_str()).collect::<HashSet<_>>().len()
    }

    /// Returns `alloc`'s space to its segment (nothing when the segment is gone).
    pub fn free(&mut self, alloc: &Alloc) {
        if let Some(s) = self.segments.get_mut(&alloc.segment) {
            s.alloc.free(alloc.offset);
        }
    }

    /// The address a replica's bytes start at, and its segment's name.
    pub fn locate(&self, alloc: &Alloc) -> Option<(&str, u64)> {
        self.segments.get(&alloc.segment).map(|s| (s.name.as_str(), s.base + alloc.offset))
    }

    /// Reserves `len` bytes on up to `replicas` segments of distinct names (see the module
    /// documentation); returns what it got, possibly nothing.
    pub fn place(&mut self, len: u64, replicas: usize, preferred: &[String], rng: &mut impl Rng) -> Vec<Alloc> {
        let mut out = Vec::with_capacity(replicas);
        let mut used_names: HashSet<String> = HashSet::new();
        for name in preferred {
            if out.len() == replicas {
                return out;
            }
            if used_names.contains(name) {
                continue;
            }
            if let Some(a) = self.allocate_on_name(name, len) {
                used_names.insert(name.clone());
                out.push(a);
            }
        }
        if out.len() == replicas {
            return out;
        }
        // The other names, each with the most free bytes among its segments that fit.
        let mut best: HashMap<&str, u64> = HashMap::new();
        for s in self.segments.values() {
            if used_names.contains(&s.name) || s.draining || !s.alloc.fits(len) {
                continue;
            }
            let free = s.alloc.free_bytes();
            let e = best.entry(s.name.as_str()).or_insert(0);
            *e = (*e).max(free);
        }
        let mut names: Vec<(String, u64)> = best.into_iter().map(|(n, f)| (n.to_string(), f)).collect();
        names.shuffle(rng);
        names.sort_by_key(|n| std::cmp::Reverse(n.1));
        for (name, _) in names {
            if out.len() == replicas {
                break;
            }
            if let Some(a) = self.allocate_on_name(&name, len) {
                out.push(a);
            }
        }
        out
    }

    /// Allocates on the segment called `name` with the most free bytes that can take `len`
    /// (never on a draining one).
    pub fn allocate_on_name(&mut self, name: &str, len: u64) -> Option<Alloc> {
        let (&id, seg) = self
            .segments
            .iter_mut()
            .filter(|(_, s)| s.name == name && !s.draining && s.alloc.fits(len))
            .max_by_key(|(_, s)| s.alloc.free_bytes())?;
        let offset = seg.alloc.allocate(len)?;
        let len = seg.alloc.allocated_len(offset).unwrap_or(len);
        Some(Alloc { segment: id, offset, len })
    }
}
