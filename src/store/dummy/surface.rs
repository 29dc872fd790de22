//! The rest of Mooncake's store surface on a dummy client, as Mooncake's dummy answers it:
//! removals and replica descriptors go to the real client; sessions are `INVALID_PARAMS`
//! (Mooncake's dummy client has none).

use super::client::{DummyClient, unexpected};
use super::proto::{DummyRequest, DummyResponse};
use crate::store::surface::ReplicaDesc;
use crate::store::{StoreError, StoreResult};

fn no_sessions<T>(n: usize) -> Vec<StoreResult<T>> {
    tracing::error!("a dummy client has no put or get sessions");
    (0..n).map(|_| Err(StoreError::invalid("a dummy client has no sessions"))).collect()
}

impl DummyClient {
    pub fn batch_remove(&self, keys: &[&str], force: bool) -> Vec<StoreResult<()>> {
        keys.iter().map(|k| self.remove(k, force)).collect()
    }

    pub fn batch_replica_desc(&self, keys: &[&str]) -> Vec<StoreResult<Vec<ReplicaDesc>>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let request = DummyRequest::ReplicaDescs { keys: keys.iter().map(|k| k.to_string()).collect() };
        match self.call(&request, None) {
            Ok(DummyResponse::ReplicaDescs(out)) if out.len() == keys.len() => out
                .into_iter()
                .zip(keys)
                .map(|(r, k)| r.map_err(|c| StoreError::from_master(c, &format!("GetReplicas {k:?}"))))
                .collect(),
            Ok(other) => {
                let e = unexpected(&other);
                keys.iter().map(|_| Err(e.clone())).collect()
            }
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Mooncake's dummy client clears nothing and answers an empty list.
    pub fn batch_replica_clear(&self, _keys: &[&str], _segment_name: &str) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }

    pub fn batch_put_session_start(
        &self,
        keys: &[&str],
        _sizes: &[u64],
        _config: &crate::store::ReplicaConfig,
    ) -> Vec<StoreResult<()>> {
        no_sessions(keys.len())
    }

    pub fn batch_put_session_finish(&self, keys: &[&str], _revoke: bool) -> Vec<StoreResult<()>> {
        no_sessions(keys.len())
    }

    pub fn batch_get_session_start(&self, keys: &[&str]) -> Vec<StoreResult<()>> {
        no_sessions(keys.len())
    }

    pub fn batch_get_session_end(&self, _keys: &[&str]) -> StoreResult<()> {
        Err(StoreError::invalid("a dummy client has no sessions"))
    }
}
