//! Read-only views of the state for the master's HTTP API (`/get_all_keys`,
//! `/get_all_segments`, `/query_key`, `/batch_query_keys`).
//!
//! Unlike the RPC reads, nothing here grants a read lease, touches a key's LRU time or counts
//! as a request in the metrics: an operator looking at the master must not change what it
//! evicts.

use super::{KeyEntry, MasterState};
use crate::proto::{ClientId, ErrorCode, Outcome, SegmentId};

/// One memory replica of a visible object, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// The engine segment the replica lives in (also its transport endpoint).
    pub segment_name: String,
    /// The replica's address inside that segment.
    pub addr: u64,
    /// The object's size in bytes.
    pub size: u64,
}

/// One mounted segment, as `/get_segments_detail` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentView {
    pub id: SegmentId,
    pub client: ClientId,
    pub name: String,
    pub base: u64,
    pub size: u64,
    pub used: u64,
    pub capacity: u64,
}

impl MasterState {
    /// Every mounted segment, sorted by name, then base address.
    pub fn segment_views(&self) -> Vec<SegmentView> {
        let mut views: Vec<SegmentView> = self
            .segments
            .iter()
            .map(|(id, s)| SegmentView {
                id: *id,
                client: s.client,
                name: s.name.clone(),
                base: s.base,
                size: s.size,
                used: s.alloc.used(),
                capacity: s.alloc.capacity(),
            })
            .collect();
        views.sort_unstable_by(|a, b| (&a.name, a.base).cmp(&(&b.name, b.base)));
        views
    }

    /// The names of the mounted segments, each once, sorted.
    pub fn segment_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.segments.iter().map(|(_, s)| s.name.clone()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every key with a visible version, sorted (puts still in progress are left out).
    pub fn visible_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.keys.iter().filter(|(_, e)| e.visible.is_some()).map(|(k, _)| k.clone()).collect();
        keys.sort_unstable();
        keys
    }

    /// The replicas of `key`'s visible version: `OBJECT_NOT_FOUND` for an unknown key,
    /// `REPLICA_IS_NOT_READY` for a key with only a put in progress (the codes of
    /// [`MasterState::get_replicas`], without its lease).
    pub fn peek_replicas(&self, key: &str) -> Outcome<Vec<ReplicaView>> {
        match self.keys.get(key) {
            None => Err(ErrorCode::ObjectNotFound),
            Some(KeyEntry { visible: None, .. }) => Err(ErrorCode::ReplicaIsNotReady),
            Some(KeyEntry { visible: Some(obj), .. }) => Ok(obj
                .allocs
                .iter()
                .filter_map(|a| self.segments.locate(a))
                .map(|(name, addr)| ReplicaView { segment_name: name.to_string(), addr, size: obj.size })
                .collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::master::state::Policy;

    #[test]
    fn views_show_visible_keys_only_and_grant_no_lease() {
        let t0 = Instant::now();
        let mut st = MasterState::new(Policy::default());
        assert!(st.segment_names().is_empty());
        st.mount_segment(1, 1, "b:1", 0, 1 << 20, t0).unwrap();
        st.mount_segment(1, 2, "b:1", 1 << 21, 1 << 20, t0).unwrap();
        st.mount_segment(2, 3, "a:2", 1 << 22, 1 << 20, t0).unwrap();
        assert_eq!(st.segment_names(), ["a:2", "b:1"]);
        let views = st.segment_views();
        assert_eq!(
            views.iter().map(|v| (v.id, v.client, v.base)).collect::<Vec<_>>(),
            [(3, 2, 1 << 22), (1, 1, 0), (2, 1, 1 << 21)]
        );
        let put = st.put_start(1, "done", 100, &Default::default(), false, t0).unwrap();
        st.put_end(1, "done", put.put_id, t0).unwrap();
        st.put_start(1, "pending", 100, &Default::default(), false, t0).unwrap();
        assert_eq!(st.visible_keys(), ["done"]);
        let replicas = st.peek_replicas("done").unwrap();
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0].size, 100);
        assert_eq!(st.peek_replicas("pending"), Err(ErrorCode::ReplicaIsNotReady));
        assert_eq!(st.peek_replicas("nope"), Err(ErrorCode::ObjectNotFound));
        assert_eq!(st.counters().get, 0, "a peek is not a get");
        // No lease was granted: a plain remove succeeds at once.
        assert_eq!(st.remove("done", false, t0), Ok(()));
    }
}
