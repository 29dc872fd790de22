//! The key-value table behind the server, and the rules both Mooncake servers apply to a PUT.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use parking_lot::Mutex;

use super::Flavour;

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The value was stored (a new key, or a key that may be overwritten).
    Updated,
    /// `MasterEmbedded` only: an `rpc_meta` key was PUT again with the value it already has;
    /// nothing changed.
    Unchanged,
    /// An `rpc_meta` key that already exists was PUT again (any body in `Standalone`, a
    /// different body in `MasterEmbedded`); the stored value is kept.
    DuplicateRpcMeta,
}

/// The server's store: keys to the bytes PUT under them, never parsed.
///
/// Both Mooncake servers refuse to overwrite a key that contains `rpc_meta` anywhere, so that a
/// second engine cannot take over the name of a live one; every other key is overwritten by
/// each PUT. Safe to share between threads; every call takes one short lock.
#[derive(Debug, Default)]
pub struct MetadataTable {
    entries: Mutex<HashMap<String, Bytes>>,
}

/// The substring that marks an engine's handshake-port entry (`mooncake/rpc_meta/<name>`).
const RPC_META: &str = "rpc_meta";

impl MetadataTable {
    /// An empty table.
    pub fn new() -> MetadataTable {
        MetadataTable::default()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.lock().get(key).cloned()
    }

    /// Stores `value` under `key` following `flavour`'s rules (see [`PutOutcome`]).
    pub fn put(&self, key: &str, value: Bytes, flavour: Flavour) -> PutOutcome {
        let mut entries = self.entries.lock();
        if key.contains(RPC_META)
            && let Some(old) = entries.get(key)
        {
            return match flavour {
                Flavour::MasterEmbedded if *old == value => PutOutcome::Unchanged,
                _ => PutOutcome::DuplicateRpcMeta,
            };
        }
        entries.insert(key.to_string(), value);
        PutOutcome::Updated
    }

    /// Removes `key`; false when it was not there.
    pub fn delete(&self, key: &str) -> bool {
        self.entries.lock().remove(key).is_some()
    }

    /// Removes every key for which `doomed` is true and returns how many went (for an embedding
    /// that cleans up after engines it knows to be gone, as `mooncake_master` can).
    pub fn remove_matching(&self, mut doomed: impl FnMut(&str) -> bool) -> usize {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|k, _| !doomed(k));
        before - entries.len()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    /// A copy of every entry, sorted by key.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.entries.lock().iter().map(|(k, v)| (k.clone(), v.to_vec())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn ordinary_keys_are_overwritten_in_both_flavours() {
        for flavour in [Flavour::Standalone, Flavour::MasterEmbedded] {
            let t = MetadataTable::new();
            assert_eq!(t.put("mooncake/ram/n", b("1"), flavour), PutOutcome::Updated);
            assert_eq!(t.put("mooncake/ram/n", b("1"), flavour), PutOutcome::Updated);
            assert_eq!(t.put("mooncake/ram/n", b("2"), flavour), PutOutcome::Updated);
            assert_eq!(t.get("mooncake/ram/n"), Some(b("2")));
            assert_eq!(t.len(), 1);
        }
    }

    #[test]
    fn standalone_refuses_any_second_rpc_meta_put() {
        let t = MetadataTable::new();
        let k = "mooncake/rpc_meta/127.0.0.1:1";
        assert_eq!(t.put(k, b("a"), Flavour::Standalone), PutOutcome::Updated);
        assert_eq!(t.put(k, b("a"), Flavour::Standalone), PutOutcome::DuplicateRpcMeta);
        assert_eq!(t.put(k, b("b"), Flavour::Standalone), PutOutcome::DuplicateRpcMeta);
        assert_eq!(t.get(k), Some(b("a")));
    }

    #[test]
    fn master_accepts_an_identical_rpc_meta_put() {
        let t = MetadataTable::new();
        let k = "mooncake%2Frpc_meta%2Fn";
        assert_eq!(t.put(k, b("a"), Flavour::MasterEmbedded), PutOutcome::Updated);
        assert_eq!(t.put(k, b("a"), Flavour::MasterEmbedded), PutOutcome::Unchanged);
        assert_eq!(t.put(k, b("b"), Flavour::MasterEmbedded), PutOutcome::DuplicateRpcMeta);
        assert_eq!(t.get(k), Some(b("a")));
    }

    #[test]
    fn rpc_meta_anywhere_in_the_key_counts() {
        let t = MetadataTable::new();
        assert_eq!(t.put("xrpc_metay", b(""), Flavour::Standalone), PutOutcome::Updated);
        assert_eq!(t.put("xrpc_metay", b(""), Flavour::Standalone), PutOutcome::DuplicateRpcMeta);
        // Case matters, as in both servers.
        assert_eq!(t.put("RPC_META", b(""), Flavour::Standalone), PutOutcome::Updated);
        assert_eq!(t.put("RPC_META", b(""), Flavour::Standalone), PutOutcome::Updated);
    }

    #[test]
    fn a_deleted_rpc_meta_key_can_be_put_again() {
        let t = MetadataTable::new();
        let k = "mooncake/rpc_meta/n";
        assert_eq!(t.put(k, b("a"), Flavour::Standalone), PutOutcome::Updated);
        assert!(t.delete(k));
        assert!(!t.delete(k));
        assert_eq!(t.put(k, b("b"), Flavour::Standalone), PutOutcome::Updated);
        assert_eq!(t.get(k), Some(b("b")));
    }

    #[test]
    fn empty_values_are_values() {
        let t = MetadataTable::new();
        assert_eq!(t.put("k", Bytes::new(), Flavour::Standalone), PutOutcome::Updated);
        assert_eq!(t.get("k"), Some(Bytes::new()));
        assert!(t.get("other").is_none());
    }

    #[test]
    fn remove_matching_and_snapshot() {
        let t = MetadataTable::new();
        for k in ["mooncake/ram/a", "mooncake/rpc_meta/a", "mooncake/ram/b"] {
            t.put(k, b(k), Flavour::Standalone);
        }
        assert_eq!(t.remove_matching(|k| k.ends_with("/a")), 2);
        let snap = t.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap["mooncake/ram/b"], b"mooncake/ram/b");
        assert!(!t.is_empty());
    }
}
