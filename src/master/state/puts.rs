//! Puts: reserving space, making it visible, revoking and discarding it.

use std::time::{Duration, Instant};

use super::{Deferred, MAX_KEY_LEN, MasterState, Object, PendingPut};
use crate::master::allocator::round_up;
use crate::proto::{ClientId, ErrorCode, Outcome, PutId, PutSlot, Replica, ReplicaConfig};

impl MasterState {
    /// Reserves space for `key` (see the module documentation).
    pub fn put_start(
        &mut self,
        client: ClientId,
        key: &str,
        size: u64,
        config: &ReplicaConfig,
        upsert: bool,
        now: Instant,
    ) -> Outcome<PutSlot> {
        self.counters.put_start += 1;
        let r = self.try_put_start(client, key, size, config, upsert, now);
        if r.is_err() {
            self.counters.put_start_failures += 1;
        }
        r
    }

    fn try_put_start(
        &mut self,
        client: ClientId,
        key: &str,
        size: u64,
        config: &ReplicaConfig,
        upsert: bool,
        now: Instant,
    ) -> Outcome<PutSlot> {
        if key.is_empty() || size == 0 {
            return Err(ErrorCode::InvalidParams);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(ErrorCode::InvalidKey);
        }
        let Some(rounded) = round_up(size) else { return Err(ErrorCode::InvalidParams) };
        if !upsert && let Some(entry) = self.keys.get(key) {
            if entry.visible.is_some() {
                return Err(ErrorCode::ObjectAlreadyExists);
            }
            let stale: Vec<PutId> = entry
                .puts
                .iter()
                .copied()
                .filter(|id| self.puts.get(id).is_some_and(|p| now >= p.started + self.policy.put_discard_timeout))
                .collect();
            for id in stale {
                tracing::debug!(key, put = id, "discarding a put that outlived put_start_discard_timeout");
                self.discard_put(id);
            }
            if self.keys.get(key).is_some_and(|e| !e.puts.is_empty()) {
                return Err(ErrorCode::ReplicaIsNotReady);
            }
        }
        if self.segments.is_empty() {
            return Err(ErrorCode::NoAvailableHandle);
        }
        // More replicas than names cannot be placed (and must not size any buffer).
        let names = self.segments.names();
        let replicas = (config.replica_num.max(1) as usize).min(names);
        let need = rounded.saturating_mul(replicas as u64);
        let capacity = self.segments.capacity();
        if (self.segments.used().saturating_add(need)) as f64 > self.policy.high_watermark * capacity as f64 {
            self.evict(self.eviction_target(need), now);
        }
        let mut allocs = self.segments.place(size, replicas, &config.preferred_segments, &mut self.rng);
        if allocs.len() < replicas {
            // Short of space rather than of names: make room and try once more.
            for a in allocs.drain(..) {
                self.segments.free(&a);
            }
            self.evict(self.eviction_target(need), now);
            allocs = self.segments.place(size, replicas, &config.preferred_segments, &mut self.rng);
        }
        if allocs.is_empty() {
            return Err(ErrorCode::NoAvailableHandle);
        }
        if allocs.len() < config.replica_num as usize {
            tracing::debug!(key, asked = config.replica_num, got = allocs.len(), "put gets fewer replicas than asked");
        }
        let put_id = self.next_put;
        self.next_put += 1;
        let mut out = Vec::with_capacity(allocs.len());
        for a in &allocs {
            if let Some((name, addr)) = self.segments.locate(a) {
                out.push(Replica { segment_name: name.to_string(), addr });
            }
        }
        let soft_pin_ttl = config.soft_pin.then(|| {
            let ttl = config.soft_pin_ttl_ms.map_or(self.policy.soft_pin_ttl, Duration::from_millis);
            ttl.min(self.policy.max_soft_pin_ttl)
        });
        self.puts.insert(
            put_id,
            PendingPut {
                key: key.to_string(),
                client,
                size,
                allocs,
                started: now,
                hard_pin: config.hard_pin,
                soft_pin_ttl: soft_pin_ttl.filter(|t| !t.is_zero()),
            },
        );
        self.keys.entry(key.to_string()).or_default().puts.push(put_id);
        Ok(PutSlot { put_id, replicas: out })
    }

    /// The bytes one eviction aims to free: `eviction_ratio` of the capacity, or `need`.
    pub(super) fn eviction_target(&self, need: u64) -> u64 {
        ((self.policy.eviction_ratio * self.segments.capacity() as f64) as u64).max(need)
    }

    /// Makes put `put_id` of `key` visible.
    pub fn put_end(&mut self, client: ClientId, key: &str, put_id: PutId, now: Instant) -> Outcome<()> {
        self.counters.put_end += 1;
        let r = self.try_put_end(client, key, put_id, now);
        if r.is_err() {
            self.counters.put_end_failures += 1;
        }
        r
    }

    fn try_put_end(&mut self, client: ClientId, key: &str, put_id: PutId, now: Instant) -> Outcome<()> {
        let put = self.take_put(client, key, put_id)?;
        let object = Object {
            size: put.size,
            allocs: put.allocs,
            lease_until: now,
            last_access: now,
            hard_pin: put.hard_pin,
            version: put_id,
            readers: 0,
            soft_pin_until: put.soft_pin_ttl.map(|ttl| now + ttl),
            owner: client,
        };
        let entry = self.keys.entry(put.key).or_default();
        if let Some(old) = entry.visible.replace(object) {
            self.retire(old, now);
        }
        Ok(())
    }

    /// Frees put `put_id` of `key`.
    pub fn put_revoke(&mut self, client: ClientId, key: &str, put_id: PutId) -> Outcome<()> {
        self.counters.put_revoke += 1;
        match self.take_put(client, key, put_id) {
            Ok(put) => {
                for a in &put.allocs {
                    self.segments.free(a);
                }
                Ok(())
            }
            Err(e) => {
                self.counters.put_revoke_failures += 1;
                Err(e)
            }
        }
    }

    /// Takes put `put_id` out of the index, checking its key and owner.
    pub(super) fn take_put(&mut self, client: ClientId, key: &str, put_id: PutId) -> Outcome<PendingPut> {
        match self.puts.get(&put_id) {
            Some(p) if p.key == key && p.client == client => {}
            Some(p) if p.key == key => return Err(ErrorCode::IllegalClient),
            _ => return Err(ErrorCode::ObjectNotFound),
        }
        let put = self.puts.remove(&put_id).ok_or(ErrorCode::ObjectNotFound)?;
        if let Some(entry) = self.keys.get_mut(key) {
            entry.puts.retain(|&id| id != put_id);
            if entry.is_empty() {
                self.keys.remove(key);
            }
        }
        Ok(put)
    }

    /// Revokes a put whose writer may still be writing: its space is released only
    /// `put_start_release_timeout` after it started (Mooncake's discarded-replica rule).
    pub(super) fn discard_put(&mut self, put_id: PutId) {
        let Some(put) = self.puts.remove(&put_id) else { return };
        self.counters.puts_discarded += 1;
        let until = put.started + self.policy.put_release_timeout;
        self.deferred.extend(put.allocs.iter().map(|&alloc| Deferred { alloc, until, read_lease: false, version: 0 }));
        self.unlink_put(&put.key, put_id);
    }

    /// Revokes a put and frees its space at once.
    pub(super) fn release_put(&mut self, put_id: PutId) {
        let Some(put) = self.puts.remove(&put_id) else { return };
        self.counters.puts_released += 1;
        for a in &put.allocs {
            self.segments.free(a);
        }
        self.unlink_put(&put.key, put_id);
    }

    pub(super) fn unlink_put(&mut self, key: &str, put_id: PutId) {
        if let Some(entry) = self.keys.get_mut(key) {
            entry.puts.retain(|&id| id != put_id);
            if entry.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// Frees a version taken out of the index: now when no reader is still copying it, else
    /// when the last one says `ReadsDone` or, at the latest, when its read lease runs out.
    pub(super) fn retire(&mut self, object: Object, now: Instant) {
        if object.leased(now) && object.readers > 0 {
            let (until, version) = (object.lease_until, object.version);
            self.retired_readers.insert(version, object.readers);
            self.deferred.extend(object.allocs.iter().map(|&alloc| Deferred {
                alloc,
                until,
                read_lease: true,
                version,
            }));
        } else {
            for a in &object.allocs {
                self.segments.free(a);
            }
        }
    }
}
