//! Mooncake's metadata keys over any key-value service (HTTP, etcd, redis), `wire.md` §5.
//!
//! - `mooncake/[<cluster>/]rpc_meta/<name>` = `{"ip_or_host_name": …, "rpc_port": …}`;
//! - `mooncake/[<cluster>/]ram/<name>` = the segment descriptor (a name containing `/` is stored
//!   under `mooncake/[<cluster>/]<name>`, without `ram/`).
//!
//! Values are compact JSON; etcd and redis values end with a newline, HTTP values do not, as
//! Mooncake writes them. [`KvStore`] is the only thing a backend implements.

use serde_json::{Value, json};

use super::{Error, MetadataStore, SegmentDescriptor, descriptor};

/// A key-value service. Calls block the calling thread (on the shared runtime) for at most the
/// backend's timeout.
pub trait KvStore: Send + Sync {
    /// The backend's name, for logs (`"http"`, `"etcd"`, `"redis"`).
    fn kind(&self) -> &'static str;
    /// The value of `key`, `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Stores `value` under `key`. A service that refuses (HTTP 400 for a duplicate
    /// `rpc_meta`) gives [`Error::Rejected`].
    fn put(&self, key: &str, value: &[u8]) -> Result<(), Error>;
    /// Deletes `key`; a key that does not exist is not an error.
    fn delete(&self, key: &str) -> Result<(), Error>;
    /// Whether stored JSON ends with a newline (etcd, redis) or not (HTTP).
    fn trailing_newline(&self) -> bool;
    /// Calls `on_change(key)` whenever a key under `prefix` changes or disappears, for backends
    /// that can watch (etcd); others do nothing and peers see changes when they refetch.
    fn watch(&self, _prefix: &str, _on_change: std::sync::Arc<dyn Fn(&str) + Send + Sync>) -> Result<(), Error> {
        Ok(())
    }
}

/// Where an engine's handshake port is, as `rpc_meta` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcMeta {
    pub host: String,
    pub port: u16,
}

/// Mooncake's key names for one cluster id.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `cluster` is `MC_METADATA_CLUSTER_ID` (`None`: the plain `mooncake/` prefix).
    pub fn new(cluster: Option<&str>) -> Keys {
        let prefix = match cluster.filter(|c| !c.is_empty()) {
            Some(c) => format!("mooncake/{c}/"),
            None => "mooncake/".to_string(),
        };
        Keys { prefix }
    }

    pub fn rpc_meta(&self, name: &str) -> String {
        format!("{}rpc_meta/{name}", self.prefix)
    }

    pub fn segment(&self, name: &str) -> String {
        if name.contains('/') { format!("{}{name}", self.prefix) } else { format!("{}ram/{name}", self.prefix) }
    }

    /// The prefix of every (slash-free) segment key.
    pub fn segment_prefix(&self) -> String {
        format!("{}ram/", self.prefix)
    }
}

/// [`MetadataStore`] over a [`KvStore`] with Mooncake's keys and values.
pub struct KvMetadata<K: KvStore> {
    kv: K,
    keys: Keys,
}

impl<K: KvStore> KvMetadata<K> {
    pub fn new(kv: K, cluster: Option<&str>) -> KvMetadata<K> {
        KvMetadata { kv, keys: Keys::new(cluster) }
    }

    pub fn kv(&self) -> &K {
        &self.kv
    }

    fn encode(&self, v: &Value) -> Vec<u8> {
        let mut s = v.to_string();
        if self.kv.trailing_newline() {
            s.push('\n');
        }
        s.into_bytes()
    }

    fn get_json(&self, key: &str) -> Result<Option<Value>, Error> {
        match self.kv.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Malformed(format!("{} key {key}: {e}", self.kv.kind()))),
        }
    }
}

impl<K: KvStore> MetadataStore for KvMetadata<K> {
    fn kind(&self) -> &'static str {
        self.kv.kind()
    }

    fn serves_descriptor_on_handshake(&self) -> bool {
        false
    }

    fn get_segment(&self, name: &str) -> Result<SegmentDescriptor, Error> {
        let key = self.keys.segment(name);
        let v = self
            .get_json(&key)?
            .ok_or_else(|| Error::NotFound(format!("{}: no segment {name:?} ({key})", self.kv.kind())))?;
        SegmentDescriptor::from_json(&v).map_err(|e| Error::Malformed(format!("{name}: {e}")))
    }

    fn publish_segment(&self, desc: &SegmentDescriptor) -> Result<(), Error> {
        self.kv.put(&self.keys.segment(&desc.name), &self.encode(&desc.to_json()))
    }

    fn publish_rpc(&self, name: &str, rpc: &RpcMeta) -> Result<(), Error> {
        let v = json!({"ip_or_host_name": rpc.host, "rpc_port": rpc.port});
        self.kv.put(&self.keys.rpc_meta(name), &self.encode(&v))
    }

    fn withdraw_segment(&self, name: &str) -> Result<(), Error> {
        let first = self.kv.delete(&self.keys.rpc_meta(name));
        self.kv.delete(&self.keys.segment(name))?;
        first
    }

    fn rpc_address(&self, name: &str) -> Result<(String, u16), Error> {
        let key = self.keys.rpc_meta(name);
        let v = self
            .get_json(&key)?
            .ok_or_else(|| Error::NotFound(format!("{}: no rpc_meta for {name:?}", self.kv.kind())))?;
        let host = v.get("ip_or_host_name").and_then(Value::as_str).unwrap_or_default();
        let port = v.get("rpc_port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        match (host, port) {
            (h, Some(p)) if !h.is_empty() => Ok((h.to_string(), p)),
            _ => Err(Error::Malformed(format!("{key}: not an rpc_meta value: {}", descriptor::short(&v)))),
        }
    }

    fn watch_segments(&self, on_change: std::sync::Arc<dyn Fn(&str) + Send + Sync>) -> Result<(), Error> {
        let prefix = self.keys.segment_prefix();
        let strip = prefix.clone();
        self.kv.watch(
            &prefix,
            std::sync::Arc::new(move |key: &str| {
                if let Some(name) = key.strip_prefix(&strip) {
                    on_change(name);
                }
            }),
        )
    }

    fn is_published(&self, name: &str) -> Result<bool, Error> {
        Ok(self.kv.get(&self.keys.rpc_meta(name))?.is_some() && self.kv.get(&self.keys.segment(name))?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemKv(Mutex<HashMap<String, Vec<u8>>>, bool);
    impl KvStore for MemKv {
        fn kind(&self) -> &'static str {
            "mem"
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
            Ok(self.0.lock().get(key).cloned())
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), Error> {
            self.0.lock().insert(key.into(), value.into());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<(), Error> {
            self.0.lock().remove(key);
            Ok(())
        }
        fn trailing_newline(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn keys_follow_mooncake() {
        let k = Keys::new(None);
        assert_eq!(k.rpc_meta("127.0.0.1:1"), "mooncake/rpc_meta/127.0.0.1:1");
        assert_eq!(k.segment("node1"), "mooncake/ram/node1");
        assert_eq!(k.segment("a/b"), "mooncake/a/b");
        assert_eq!(Keys::new(Some("c7")).segment("n"), "mooncake/c7/ram/n");
        assert_eq!(Keys::new(Some("")).rpc_meta("n"), "mooncake/rpc_meta/n");
    }

    #[test]
    fn values_are_compact_json_with_the_backends_newline() {
        let m = KvMetadata::new(MemKv(Mutex::default(), true), None);
        m.publish_rpc("n", &RpcMeta { host: "127.0.0.1".into(), port: 15617 }).unwrap();
        let raw = m.kv().get("mooncake/rpc_meta/n").unwrap().unwrap();
        assert_eq!(raw, b"{\"ip_or_host_name\":\"127.0.0.1\",\"rpc_port\":15617}\n");
        assert_eq!(m.rpc_address("n").unwrap(), ("127.0.0.1".into(), 15617));
        let m = KvMetadata::new(MemKv(Mutex::default(), false), None);
        m.publish_rpc("n", &RpcMeta { host: "h".into(), port: 1 }).unwrap();
        assert!(!m.kv().get("mooncake/rpc_meta/n").unwrap().unwrap().ends_with(b"\n"));
    }

    #[test]
    fn withdraw_removes_both_keys() {
        let m = KvMetadata::new(MemKv::default(), None);
        let d = SegmentDescriptor::from_json(&json!({"name":"n","protocol":"tcp","tcp_data_port":5})).unwrap();
        m.publish_rpc("n", &RpcMeta { host: "h".into(), port: 1 }).unwrap();
        m.publish_segment(&d).unwrap();
        assert!(m.is_published("n").unwrap());
        assert_eq!(m.get_segment("n").unwrap().tcp_data_port, 5);
        m.withdraw_segment("n").unwrap();
        assert!(!m.is_published("n").unwrap());
        assert!(matches!(m.get_segment("n"), Err(Error::NotFound(_))));
    }
}
