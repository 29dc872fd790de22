//! The master's whole state as one synchronous struct: the server serialises requests through a
//! mutex around it, and every operation takes `now` so that tests drive the clock.
//!
//! # Semantics (our defined behaviour; Mooncake's codes where Mooncake has a case)
//!
//! **Segments.** `MountSegment` adds `size` bytes at `base` of engine segment `name`; several
//! segments may share a name (a process mounting twice). Mounting an id again with the same
//! owner and range is accepted (Mooncake's mount is idempotent); another reuse of the id is
//! `SEGMENT_ALREADY_EXISTS`; size 0 is `INVALID_PARAMS`. `UnmountSegment` drops every object
//! whose replicas are all there, takes just that replica from the others, and revokes the puts
//! in progress with a replica there (their `PutEnd` then finds nothing: `OBJECT_NOT_FOUND`; the
//! space they hold elsewhere is freed only `put_start_release_timeout` after their start,
//! since their writer may still be writing). It answers the longest read lease left on a
//! dropped replica, so that the owner keeps the memory registered that long.
//!
//! **Put.** `PutStart`: empty key or size 0 → `INVALID_PARAMS`; key over 4096 bytes →
//! `INVALID_KEY`; a visible object and no upsert → `OBJECT_ALREADY_EXISTS` (the client keeps
//! the first value, as Mooncake's does). A put of the key in progress and no upsert →
//! `REPLICA_IS_NOT_READY` (the client waits and retries; Mooncake answers
//! `OBJECT_ALREADY_EXISTS` here, which would let a client report success for a value that never
//! became visible), unless that put started more than `put_start_discard_timeout` ago: it is
//! then discarded (Mooncake's rule) and the new one proceeds. With upsert several puts may be
//! in progress; each `PutEnd` replaces the visible version, so the last to end wins.
//! `replica_num` 0 is read as 1. No segment mounted, or no segment that can take the value even
//! after eviction → `NO_AVAILABLE_HANDLE` (Mooncake's strategy returns that for both).
//! Fewer distinct names than replicas → as many replicas as there are names (Mooncake's best
//! effort). When the allocation falls short, or the usage after it would pass the high
//! watermark, the master evicts first and tries once more.
//!
//! `PutEnd` of a put the master does not know (never started, revoked, discarded) →
//! `OBJECT_NOT_FOUND` (Mooncake's code for a put end without start); by another client than
//! the one that started it → `ILLEGAL_CLIENT`. The replaced version, if any, is retired: freed
//! at once without a read lease, when its lease runs out otherwise. `PutRevoke` frees the put's
//! space at once (its writer says it stopped).
//!
//! **Get.** Only visible versions count. `GetReplicas` of a key with only a put in progress is
//! `REPLICA_IS_NOT_READY` (Mooncake's `GetReplicaList`), of an unknown key `OBJECT_NOT_FOUND`;
//! a hit grants (or extends) a read lease of `default_kv_lease_ttl` from `now` and refreshes
//! the key's LRU time. `BatchExists` answers false for keys without a visible version and
//! grants a lease on the others (Mooncake's `ExistKey` does).
//!
//! **Remove.** Unknown key → `OBJECT_NOT_FOUND`; only a put in progress →
//! `REPLICA_IS_NOT_READY` (Mooncake refuses to remove incomplete objects); leased and not
//! forced → `OBJECT_HAS_LEASE`. Otherwise the key disappears at once, but a leased version's
//! space is freed only when the lease runs out, so a reader still copying never sees its bytes
//! reused. `RemoveByRegex` (regex search, like `std::regex_search`) and `RemoveAll` count the
//! keys removed, skipping leased ones unless forced and keys with nothing visible.
//!
//! **Eviction.** Hard-pinned, leased and unfinished objects are never evicted. Soft-pinned
//! ones go only when nothing else is left (and only with `allow_evict_soft_pinned_objects`),
//! until their pin runs out (`soft_pin_ttl_ms` of the put, else `default_kv_soft_pin_ttl`,
//! at most `max_kv_soft_pin_ttl`, counted from `PutEnd`); then they are ordinary. One eviction
//! frees about `eviction_ratio` of the total capacity, or at least what the failing put needs,
//! least recently used first. The periodic [`MasterState::tick`] evicts above the high
//! watermark, frees deferred space whose time came, and revokes puts older than
//! `put_start_release_timeout`.
//!
//! **Clients.** See `clients.rs`: a client is *known* once it mounted a segment or was told once
//! that it was not; one that sends nothing for `client_ttl` expires (its segments unmounted,
//! its puts revoked), and so does, at once, one whose last connection closes. Time the master
//! itself did not run (stopped, stalled) is not counted against its clients.

mod admin;
mod clients;
mod dispatch;
mod eviction;
mod objects;
mod puts;
mod replica_clear;
mod segments;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

pub use admin::{ReplicaView, SegmentView};
pub use clients::{ClientEntry, STALL_THRESHOLD};
pub use objects::{Alloc, Deferred, KeyEntry, Object, PendingPut};
pub use segments::{Segment, SegmentTable};

use crate::proto::{ClientId, ErrorCode, ObjectInfo, Outcome, PutId, Replica};

/// The longest key a put accepts; longer ones are `INVALID_KEY`. Mooncake's master has no
/// limit of its own; ours keeps one client from growing the index (and every frame naming the
/// key) without bound.
pub const MAX_KEY_LEN: usize = 4096;

/// The settings the state obeys (a part of [`crate::master::MasterConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub lease_ttl: Duration,
    pub soft_pin_ttl: Duration,
    pub max_soft_pin_ttl: Duration,
    pub allow_evict_soft_pinned: bool,
    pub high_watermark: f64,
    pub eviction_ratio: f64,
    pub client_ttl: Duration,
    pub put_discard_timeout: Duration,
    pub put_release_timeout: Duration,
}

impl Default for Policy {
    /// Mooncake 0.3.13's defaults.
    fn default() -> Policy {
        Policy {
            lease_ttl: Duration::from_millis(10_000),
            soft_pin_ttl: Duration::from_millis(1_800_000),
            max_soft_pin_ttl: Duration::from_millis(86_400_000),
            allow_evict_soft_pinned: true,
            high_watermark: 0.90,
            eviction_ratio: 0.05,
            client_ttl: Duration::from_secs(10),
            put_discard_timeout: Duration::from_secs(30),
            put_release_timeout: Duration::from_secs(600),
        }
    }
}

/// Event counts since start, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub put_start: u64,
    pub put_start_failures: u64,
    pub put_end: u64,
    pub put_end_failures: u64,
    pub put_revoke: u64,
    pub put_revoke_failures: u64,
    pub get: u64,
    pub get_failures: u64,
    pub exist: u64,
    pub remove: u64,
    pub remove_failures: u64,
    pub remove_by_regex: u64,
    pub remove_all: u64,
    pub removed_keys: u64,
    pub mount: u64,
    pub mount_failures: u64,
    pub unmount: u64,
    pub unmount_failures: u64,
    pub ping: u64,
    /// Puts discarded by a newer put of their key, or revoked with an unmounted segment.
    pub puts_discarded: u64,
    /// Puts revoked because they outlived `put_start_release_timeout` or their client left.
    pub puts_released: u64,
    pub eviction_attempts: u64,
    pub eviction_successes: u64,
    pub evicted_keys: u64,
    pub evicted_bytes: u64,
    pub expired_clients: u64,
    /// Gaps in the master's own progress longer than `clients::STALL_THRESHOLD`.
    pub master_stalls: u64,
}

/// Gauges and counters at one instant, for `/metrics`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub counters: Counters,
    pub objects: u64,
    pub soft_pinned: u64,
    pub puts_in_progress: u64,
    pub clients: u64,
    pub segments: u64,
    /// Per segment name: (name, allocated bytes, capacity).
    pub per_name: Vec<(String, u64, u64)>,
    pub used: u64,
    pub capacity: u64,
}

/// The object index, the segments and the clients.
#[derive(Debug)]
pub struct MasterState {
    policy: Policy,
    segments: SegmentTable,
    keys: HashMap<String, KeyEntry>,
    puts: HashMap<PutId, PendingPut>,
    next_put: PutId,
    deferred: Vec<Deferred>,
    /// Readers still copying a retired version (by version), whose space is deferred.
    retired_readers: HashMap<PutId, u32>,
    clients: HashMap<ClientId, ClientEntry>,
    counters: Counters,
    rng: SmallRng,
    /// Copy and move tasks and the replica operations executing them (`tasks.rs`).
    tasks: tasks::TaskTable,
    /// The master's own progress, to tell its stalls from its clients' silence (`clients.rs`).
    awake: clients::Awake,
}

impl MasterState {
    pub fn new(policy: Policy) -> MasterState {
        MasterState {
            policy,
            segments: SegmentTable::default(),
            keys: HashMap::new(),
            puts: HashMap::new(),
            next_put: 1,
            deferred: Vec::new(),
            retired_readers: HashMap::new(),
            clients: HashMap::new(),
            counters: Counters::default(),
            rng: SmallRng::from_os_rng(),
            tasks: tasks::TaskTable::default(),
            awake: clients::Awake::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn segments(&self) -> &SegmentTable {
        &self.segments
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The replicas of `key`'s visible version, with a fresh read lease.
    pub fn get_replicas(&mut self, key: &str, now: Instant) -> Outcome<ObjectInfo> {
        self.counters.get += 1;
        let lease = self.policy.lease_ttl;
        let r = match self.keys.get_mut(key) {
            None => Err(ErrorCode::ObjectNotFound),
            Some(KeyEntry { visible: None, .. }) => Err(ErrorCode::ReplicaIsNotReady),
            Some(KeyEntry { visible: Some(obj), .. }) => {
                obj.lease_until = obj.lease_until.max(now + lease);
                obj.last_access = now;
                obj.readers = obj.readers.saturating_add(1);
                let read_id = obj.version;
                let replicas = obj
                    .allocs
                    .iter()
                    .filter_map(|a| self.segments.locate(a))
                    .map(|(name, addr)| Replica { segment_name: name.to_string(), addr })
                    .collect();
                Ok(ObjectInfo { size: obj.size, replicas, lease_ttl_ms: lease.as_millis() as u64, read_id })
            }
        };
        if r.is_err() {
            self.counters.get_failures += 1;
        }
        r
    }

    /// Readers that finished copying: a retired version whose last reader is done is freed.
    pub fn reads_done(&mut self, reads: &[(String, u64)]) {
        for (key, version) in reads {
            if let Some(obj) = self.keys.get_mut(key.as_str()).and_then(|e| e.visible.as_mut())
                && obj.version == *version
            {
                obj.readers = obj.readers.saturating_sub(1);
                continue;
            }
            let Some(left) = self.retired_readers.get_mut(version) else { continue };
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.retired_readers.remove(version);
                let mut i = 0;
                while i < self.deferred.len() {
                    if self.deferred[i].read_lease && self.deferred[i].version == *version {
                        let d = self.deferred.swap_remove(i);
                        self.segments.free(&d.alloc);
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Whether `key` has a visible version; grants a read lease when it has.
    pub fn exists(&mut self, key: &str, now: Instant) -> bool {
        self.counters.exist += 1;
        let lease = self.policy.lease_ttl;
        match self.keys.get_mut(key).and_then(|e| e.visible.as_mut()) {
            Some(obj) => {
                obj.lease_until = obj.lease_until.max(now + lease);
                obj.last_access = now;
                true
            }
            None => false,
        }
    }

    /// Removes `key` (see the module documentation).
    pub fn remove(&mut self, key: &str, force: bool, now: Instant) -> Outcome<()> {
        self.counters.remove += 1;
        let r = match self.keys.get(key) {
            None => Err(ErrorCode::ObjectNotFound),
            Some(KeyEntry { visible: None, .. }) => Err(ErrorCode::ReplicaIsNotReady),
            Some(KeyEntry { visible: Some(obj), .. }) if !force && obj.leased(now) => Err(ErrorCode::ObjectHasLease),
            Some(_) => {
                self.take_visible(key, now);
                Ok(())
            }
        };
        if r.is_err() {
            self.counters.remove_failures += 1;
        }
        r
    }

    /// Removes every visible key `pattern` matches (a search, not a whole-key match); returns
    /// how many. A bad pattern is `INVALID_PARAMS`.
    pub fn remove_by_regex(&mut self, pattern: &str, force: bool, now: Instant) -> Outcome<i64> {
        self.counters.remove_by_regex += 1;
        let re = regex::Regex::new(pattern).map_err(|e| {
            tracing::debug!(pattern, "bad regex: {e}");
            ErrorCode::InvalidParams
        })?;
        Ok(self.remove_where(|k| re.is_match(k), force, now))
    }

    /// Removes every visible key (leased ones only with `force`); returns how many.
    pub fn remove_all(&mut self, force: bool, now: Instant) -> i64 {
        self.counters.remove_all += 1;
        self.remove_where(|_| true, force, now)
    }

    fn remove_where(&mut self, matches: impl Fn(&str) -> bool, force: bool, now: Instant) -> i64 {
        let doomed: Vec<String> = self
            .keys
            .iter()
            .filter(|(k, e)| e.visible.as_ref().is_some_and(|o| force || !o.leased(now)) && matches(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            self.take_visible(k, now);
        }
        doomed.len() as i64
    }

    /// Takes `key`'s visible version out of the index and retires it.
    fn take_visible(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.keys.get_mut(key) else { return };
        let Some(obj) = entry.visible.take() else { return };
        if entry.is_empty() {
            self.keys.remove(key);
        }
        self.counters.removed_keys += 1;
        self.retire(obj, now);
    }

    /// Gauges and counters now, for metrics.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut objects = 0;
        let mut soft_pinned = 0;
        for obj in self.keys.values().filter_map(|e| e.visible.as_ref()) {
            objects += 1;
            soft_pinned += u64::from(obj.soft_pinned(now));
        }
        let mut per_name: HashMap<&str, (u64, u64)> = HashMap::new();
        for (_, s) in self.segments.iter() {
            let e = per_name.entry(s.name.as_str()).or_default();
            e.0 += s.alloc.used();
            e.1 += s.alloc.capacity();
        }
        let mut per_name: Vec<(String, u64, u64)> =
            per_name.into_iter().map(|(n, (u, c))| (n.to_string(), u, c)).collect();
        per_name.sort();
        Snapshot {
            counters: self.counters.clone(),
            objects,
            soft_pinned,
            puts_in_progress: self.puts.len() as u64,
            clients: self.known_clients() as u64,
            segments: self.segments.len() as u64,
            per_name,
            used: self.segments.used(),
            capacity: self.segments.capacity(),
        }
    }

    /// Whether `key` has a visible version (no lease granted, LRU untouched; tests and tools).
    pub fn contains(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|e| e.visible.is_some())
    }

    /// The number of visible objects (tests and logs).
    pub fn object_count(&self) -> usize {
        self.keys.values().filter(|e| e.visible.is_some()).count()
    }

    /// Space waiting for a lease or timeout before it is freed (tests).
    pub fn deferred_bytes(&self) -> u64 {
        self.deferred.iter().map(|d| d.alloc.len).sum()
    }
}
