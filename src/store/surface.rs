//! The rest of Mooncake's `MooncakeDistributedStore` surface on the real client: set-up on a
//! shared engine, batch removal and replica descriptors. Sessions are in `session.rs`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::client::RealClient;
use super::rpc::MasterClient;
use super::{RPC_TIMEOUT, StoreConfig, StoreResult};
use crate::engine::TransferEngine;

/// Mooncake's `ReplicaStatus::COMPLETE`: the only state a reader is shown (an object becomes
/// visible once every replica is written).
pub const REPLICA_COMPLETE: i32 = 3;

/// One replica as `get_replica_desc` shows it (Mooncake's memory `Replica::Descriptor`): the
/// engine segment that holds it (its `transport_endpoint`), where and how many bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDesc {
    pub transport_endpoint: String,
    pub buffer_address: u64,
    pub size: u64,
    /// Mooncake's `ReplicaStatus` value ([`REPLICA_COMPLETE`]).
    pub status: i32,
}

impl RealClient {
    /// `setup` on an engine the caller already runs (Mooncake's `setup(..., engine)`): the
    /// store registers its segment and staging buffer in it and uses its segment name; the
    /// protocol, devices and `local_hostname` of `config` are the engine's business. `close`
    /// unregisters what the store registered and leaves the engine running.
    pub fn setup_with_engine(config: &StoreConfig, engine: Arc<TransferEngine>) -> StoreResult<RealClient> {
        crate::logging::init();
        let master = MasterClient::connect(&config.master_server_addr, rand::random(), RPC_TIMEOUT)?;
        RealClient::start(config, master, engine, false)
    }

    /// Drops the replicas of `keys` this client wrote on segment `segment_name` (`""`: the
    /// whole objects) that no read lease holds; the keys cleared (Mooncake's
    /// `batch_replica_clear`, which answers an empty list when the request fails).
    pub fn batch_replica_clear(&self, keys: &[&str], segment_name: &str) -> StoreResult<Vec<String>> {
        let inner = self.inner.live()?;
        let request = crate::proto::Request::ReplicaClear {
            client: inner.master.client_id(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            segment_name: segment_name.to_string(),
        };
        match inner.master.call(&request)? {
            crate::proto::Response::Keys(keys) => Ok(keys),
            other => Err(super::client::unexpected("ReplicaClear", &other)),
        }
    }

    /// Removes each key as `remove` does; one outcome per key.
    pub fn batch_remove(&self, keys: &[&str], force: bool) -> Vec<StoreResult<()>> {
        keys.iter().map(|k| self.remove(k, force)).collect()
    }

    /// The replicas of each key (one request; each answer grants a read lease, as Mooncake's
    /// query does, so that the addresses stay valid for that long).
    pub fn batch_replica_desc(&self, keys: &[&str]) -> Vec<StoreResult<Vec<ReplicaDesc>>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        if keys.is_empty() {
            return Vec::new();
        }
        inner
            .objects(keys)
            .into_iter()
            .map(|info| {
                info.map(|info| {
                    info.replicas
                        .iter()
                        .map(|r| ReplicaDesc {
                            transport_endpoint: r.segment_name.clone(),
                            buffer_address: r.addr,
                            size: info.size,
                            status: REPLICA_COMPLETE,
                        })
                        .collect()
                })
            })
            .collect()
    }
}
