//! Making room: LRU eviction with pins, and the periodic tick that frees what waited.

use std::time::Instant;

use super::MasterState;
use crate::proto::PutId;

impl MasterState {
    /// Evicts visible objects, least recently used first, until about `target` bytes are free
    /// or nothing evictable is left; returns the bytes freed. Hard-pinned and leased objects
    /// stay; soft-pinned ones go only in a second pass, when the first did not free enough.
    pub(super) fn evict(&mut self, target: u64, now: Instant) -> u64 {
        self.counters.eviction_attempts += 1;
        let mut freed = self.evict_pass(target, false, now);
        if freed < target && self.policy.allow_evict_soft_pinned {
            freed += self.evict_pass(target - freed, true, now);
        }
        if freed > 0 {
            self.counters.eviction_successes += 1;
            tracing::debug!(freed, target, "evicted");
        }
        freed
    }

    /// One pass over the candidates: unpinned ones, or (`soft_pinned`) the soft-pinned ones.
    fn evict_pass(&mut self, target: u64, soft_pinned: bool, now: Instant) -> u64 {
        let mut candidates: Vec<(Instant, &str)> = self
            .keys
            .iter()
            .filter_map(|(k, e)| e.visible.as_ref().map(|o| (k, o)))
            .filter(|(_, o)| !o.hard_pin && !o.leased(now) && o.soft_pinned(now) == soft_pinned)
            .map(|(k, o)| (o.last_access, k.as_str()))
            .collect();
        candidates.sort_unstable();
        let mut doomed = Vec::new();
        let mut freed = 0u64;
        for (_, key) in candidates {
            if freed >= target {
                break;
            }
            let footprint = self.keys[key].visible.as_ref().map_or(0, |o| o.footprint());
            freed += footprint;
            doomed.push(key.to_string());
        }
        for key in doomed {
            let Some(entry) = self.keys.get_mut(&key) else { continue };
            let Some(obj) = entry.visible.take() else { continue };
            if entry.is_empty() {
                self.keys.remove(&key);
            }
            self.counters.evicted_keys += 1;
            self.counters.evicted_bytes += obj.footprint();
            for a in &obj.allocs {
                self.segments.free(a);
            }
        }
        freed
    }

    /// Periodic housekeeping (the server calls it about every 100 ms): frees deferred space
    /// whose lease or timeout ran out, revokes puts older than `put_start_release_timeout`,
    /// and evicts while the usage is above the high watermark.
    pub fn tick(&mut self, now: Instant) {
        self.tick_tasks(now);
        let mut i = 0;
        while i < self.deferred.len() {
            if self.deferred[i].until <= now {
                let d = self.deferred.swap_remove(i);
                self.retired_readers.remove(&d.version);
                self.segments.free(&d.alloc);
            } else {
                i += 1;
            }
        }
        let release = self.policy.put_release_timeout;
        let old: Vec<PutId> = self.puts.iter().filter(|(_, p)| now >= p.started + release).map(|(&id, _)| id).collect();
        for id in old {
            tracing::debug!(put = id, "revoking a put that outlived put_start_release_timeout");
            self.release_put(id);
        }
        let capacity = self.segments.capacity();
        let used = self.segments.used();
        let watermark = (self.policy.high_watermark * capacity as f64) as u64;
        if capacity > 0 && used > watermark {
            let target = self.eviction_target(used - watermark);
            self.evict(target, now);
        }
    }
}
