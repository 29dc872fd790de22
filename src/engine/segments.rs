//! Open remote segments: id ↔ name ↔ cached descriptor.
//!
//! Ids start at 1 (0 is `LOCAL_SEGMENT`) and are never reused within an engine, so a closed id
//! cannot silently address a different peer later.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::metadata::SegmentDescriptor;

/// One open segment.
#[derive(Debug)]
pub struct SegmentEntry {
    pub id: i32,
    /// The name it was opened with.
    pub name: String,
    pub descriptor: SegmentDescriptor,
    /// Where its handshake port is (notifications; the data host when the descriptor has
    /// none). `None` when the metadata service had no `rpc_meta` for it at open time: looked up
    /// again when a notification needs it.
    pub rpc: Option<(String, u16)>,
    /// The metadata service reported a change: refetch before the next transfer.
    pub stale: std::sync::atomic::AtomicBool,
    /// Its RDMA view (devices, keys, matrix), built at its first RDMA transfer.
    #[cfg(rdma_transport)]
    pub rdma: std::sync::OnceLock<std::result::Result<Arc<crate::transport::rdma::RdmaPeer>, String>>,
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<i32, Arc<SegmentEntry>>,
    by_name: HashMap<String, i32>,
    next_id: i32,
}

/// See the module documentation.
pub struct SegmentCache {
    maps: RwLock<Maps>,
}

impl Default for SegmentCache {
    fn default() -> Self {
        SegmentCache { maps: RwLock::new(Maps { next_id: 1, ..Maps::default() }) }
    }
}

impl SegmentCache {
    pub fn get(&self, id: i32) -> Option<Arc<SegmentEntry>> {
        self.maps.read().by_id.get(&id).cloned()
    }

    pub fn id_of(&self, name: &str) -> Option<i32> {
        self.maps.read().by_name.get(name).copied()
    }

    /// Stores (or refreshes) the descriptor of `name`, keeping its id when it is open already.
    pub fn upsert(&self, name: &str, descriptor: SegmentDescriptor, rpc: Option<(String, u16)>) -> i32 {
        let mut m = self.maps.write();
        let id = match m.by_name.get(name) {
            Some(&id) => id,
            None => {
                let id = m.next_id;
                m.next_id += 1;
                m.by_name.insert(name.to_string(), id);
                id
            }
        };
        let entry = SegmentEntry {
            id,
            name: name.to_string(),
            descriptor,
            rpc,
            stale: Default::default(),
            #[cfg(rdma_transport)]
            rdma: Default::default(),
        };
        m.by_id.insert(id, Arc::new(entry));
        id
    }

    /// Forgets segment `id`; false when it was not open.
    pub fn remove_id(&self, id: i32) -> bool {
        let mut m = self.maps.write();
        match m.by_id.remove(&id) {
            Some(e) => {
                m.by_name.remove(&e.name);
                true
            }
            None => false,
        }
    }

    /// Forgets segment `name`; false when it was not open.
    pub fn remove_name(&self, name: &str) -> bool {
        let mut m = self.maps.write();
        match m.by_name.remove(name) {
            Some(id) => {
                m.by_id.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Marks `name`'s cached descriptor stale (a watch saw it change or vanish).
    pub fn mark_stale(&self, name: &str) {
        let m = self.maps.read();
        if let Some(entry) = m.by_name.get(name).and_then(|id| m.by_id.get(id)) {
            entry.stale.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.maps.read().by_name.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc() -> SegmentDescriptor {
        SegmentDescriptor::from_json(&serde_json::json!({"name":"n","protocol":"tcp"})).unwrap()
    }

    #[test]
    fn ids_start_at_one_are_kept_on_refresh_and_never_reused() {
        let c = SegmentCache::default();
        let a = c.upsert("a:1", desc(), Some(("a".into(), 1)));
        assert_eq!(a, 1);
        assert_eq!(c.upsert("a:1", desc(), Some(("a".into(), 1))), 1);
        assert!(c.remove_id(1));
        assert!(c.get(1).is_none());
        assert_eq!(c.upsert("a:1", desc(), Some(("a".into(), 1))), 2);
        assert!(c.remove_name("a:1"));
        assert!(!c.remove_name("a:1"));
    }
}
