//! `ReplicaClear` (Mooncake's `BatchReplicaClear`): a client drops replicas of objects it wrote
//! that no reader holds a lease on.

use std::time::Instant;

use super::{Alloc, MasterState};
use crate::proto::ClientId;

impl MasterState {
    /// For each key (in order): skipped when it is empty, unknown, not visible (a put still in
    /// progress), written by another client, under a read lease, or the subject of a replica
    /// operation in progress; otherwise, with `segment_name` empty the object is removed, else
    /// its replicas on segments of that name are freed (the object goes when none is left; a
    /// key without a replica there is skipped). Returns the keys cleared. Every skip logs one
    /// line, as Mooncake's master does.
    pub fn replica_clear(
        &mut self,
        client: ClientId,
        keys: &[String],
        segment_name: &str,
        now: Instant,
    ) -> Vec<String> {
        let mut cleared = Vec::new();
        for key in keys {
            if key.is_empty() {
                tracing::warn!("ReplicaClear: empty key, skipped");
                continue;
            }
            let Some(entry) = self.keys.get(key) else {
                tracing::warn!(key, "ReplicaClear: not found, skipped");
                continue;
            };
            let Some(obj) = entry.visible.as_ref() else {
                tracing::warn!(key, "ReplicaClear: a put is in progress, skipped");
                continue;
            };
            if obj.owner != client {
                tracing::warn!(key, "ReplicaClear: written by another client, skipped");
                continue;
            }
            if obj.leased(now) {
                tracing::warn!(key, "ReplicaClear: under a read lease, skipped");
                continue;
            }
            if self.tasks.has_op(key) {
                tracing::warn!(key, "ReplicaClear: a replica operation is in progress, skipped");
                continue;
            }
            if segment_name.is_empty() {
                self.take_visible(key, now);
                cleared.push(key.clone());
                continue;
            }
            let segments = &self.segments;
            let here: Vec<Alloc> = obj
                .allocs
                .iter()
                .copied()
                .filter(|a| segments.get(a.segment).is_some_and(|s| s.name == segment_name))
                .collect();
            if here.is_empty() {
                tracing::warn!(key, segment_name, "ReplicaClear: no replica on the segment, skipped");
                continue;
            }
            if here.len() == obj.allocs.len() {
                self.take_visible(key, now);
            } else {
                // Not leased: no reader copies these bytes, so they are freed at once.
                for a in &here {
                    self.segments.free(a);
                }
                if let Some(obj) = self.keys.get_mut(key).and_then(|e| e.visible.as_mut()) {
                    obj.allocs.retain(|a| !here.contains(a));
                }
            }
            cleared.push(key.clone());
        }
        cleared
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{MasterState, Policy};
    use crate::proto::{ClientId, ReplicaConfig};

    const A: ClientId = 0xa;

    #[test]
    fn a_replica_operation_in_progress_keeps_the_key() {
        let t0 = Instant::now();
        let mut st = MasterState::new(Policy::default());
        st.mount_segment(A, 1, "a:1", 0x10_0000, 1 << 20, t0).unwrap();
        let cfg = ReplicaConfig { replica_num: 1, ..Default::default() };
        let slot = st.put_start(A, "k", 1000, &cfg, false, t0).unwrap();
        st.put_end(A, "k", slot.put_id, t0).unwrap();
        st.mount_segment(A, 2, "b:1", 0x90_0000, 1 << 20, t0).unwrap();
        let source = "a:1";
        let op = st.replica_op_start(A, "k", source, &["b:1".to_string()], false, t0).unwrap();
        let later = t0 + Duration::from_secs(11); // the operation's read lease has run out
        assert!(st.replica_clear(A, &["k".to_string()], "", later).is_empty());
        assert!(st.replica_clear(A, &["k".to_string()], source, later).is_empty());
        st.replica_op_end(A, "k", op.op, true, later).unwrap();
        assert_eq!(st.replica_clear(A, &["k".to_string()], "", later), ["k"]);
        assert!(st.keys.is_empty());
    }
}
