//! [`Store`]: the one type the C and Python layers hold. It is a real client (`setup`: an
//! engine, a segment, connections to the master) or a dummy (`setup_dummy`: requests to this
//! host's `mooncake_client`); both answer every call the same way.

use std::sync::Arc;

use super::KeyParts;
use super::KeyRanges;
use super::client::RealClient;
use super::dummy::DummyClient;
use super::surface::ReplicaDesc;
use super::{ByteRange, ErrorCode, KeyBuffer, ReplicaConfig, StoreConfig, StoreError, StoreResult};
use crate::engine::TransferEngine;

/// A store client. Every method may be called from any thread at once. After `close` every
/// operation fails with `INVALID_PARAMS` and `health_check` says 1.
pub struct Store {
    kind: Kind,
}

enum Kind {
    Real(Arc<RealClient>),
    Dummy(DummyClient),
}

macro_rules! both {
    ($self:ident, $c:ident => $e:expr) => {
        match &$self.kind {
            Kind::Real($c) => $e,
            Kind::Dummy($c) => $e,
        }
    };
}

impl Store {
    /// A real client: connects to the master, starts the engine, allocates and mounts the
    /// segment (`global_segment_size`, none when 0) and the staging buffer. A master that is
    /// down fails with `RPC_FAIL`.
    pub fn setup(config: &StoreConfig) -> StoreResult<Store> {
        Ok(Store { kind: Kind::Real(Arc::new(RealClient::setup(config)?)) })
    }

    /// A dummy client of the `mooncake_client` at `server_address` on this host.
    pub fn setup_dummy(mem_pool_size: u64, local_buffer_size: u64, server_address: &str) -> StoreResult<Store> {
        Ok(Store { kind: Kind::Dummy(DummyClient::setup(mem_pool_size, local_buffer_size, server_address)?) })
    }

    /// The real client behind this store (for `mooncake_client`, which serves dummies with it).
    pub fn real(&self) -> Option<Arc<RealClient>> {
        match &self.kind {
            Kind::Real(r) => Some(Arc::clone(r)),
            Kind::Dummy(_) => None,
        }
    }

    /// Contributes `size` more bytes (a real client only).
    pub fn mount_segment(&self, size: u64) -> StoreResult<()> {
        match &self.kind {
            Kind::Real(r) => r.mount_segment(size),
            Kind::Dummy(_) => Err(StoreError::new(ErrorCode::NotSupported, "a dummy client has no segment of its own")),
        }
    }

    /// Memory shared with the real client for zero-copy calls (a dummy client only).
    pub fn alloc_from_mem_pool(&self, size: u64) -> StoreResult<u64> {
        match &self.kind {
            Kind::Real(_) => Err(StoreError::new(ErrorCode::NotSupported, "alloc_from_mem_pool is for dummy clients")),
            Kind::Dummy(d) => d.alloc_from_mem_pool(size),
        }
    }

    pub fn hostname(&self) -> String {
        both!(self, c => c.hostname())
    }

    /// 0 healthy, 1 closed, 2 master (or real client) unreachable.
    pub fn health_check(&self) -> i32 {
        both!(self, c => c.health_check())
    }

    /// Unmounts and disconnects. Idempotent.
    pub fn close(&self) -> StoreResult<()> {
        both!(self, c => c.close())
    }

    pub fn register_buffer(&self, addr: u64, len: u64) -> StoreResult<()> {
        both!(self, c => c.register_buffer(addr, len))
    }

    pub fn unregister_buffer(&self, addr: u64) -> StoreResult<()> {
        both!(self, c => c.unregister_buffer(addr))
    }

    /// Puts the concatenation of `parts`; an existing key is kept (Ok) unless `upsert`.
    pub fn put_parts(&self, key: &str, parts: &[&[u8]], config: &ReplicaConfig, upsert: bool) -> StoreResult<()> {
        both!(self, c => c.put_parts(key, parts, config, upsert))
    }

    pub fn put_batch(&self, items: &[(&str, &[u8])], config: &ReplicaConfig, upsert: bool) -> Vec<StoreResult<()>> {
        both!(self, c => c.put_batch(items, config, upsert))
    }

    /// Zero copy from memory of this process, registered or not.
    pub fn put_from(&self, key: &str, addr: u64, len: u64, config: &ReplicaConfig, upsert: bool) -> StoreResult<()> {
        both!(self, c => c.put_from(key, addr, len, config, upsert))
    }

    pub fn batch_put_from(
        &self,
        items: &[KeyBuffer<'_>],
        config: &ReplicaConfig,
        upsert: bool,
    ) -> Vec<StoreResult<()>> {
        both!(self, c => c.batch_put_from(items, config, upsert))
    }

    pub fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        both!(self, c => c.get(key))
    }

    pub fn get_batch(&self, keys: &[&str]) -> Vec<StoreResult<Vec<u8>>> {
        both!(self, c => c.get_batch(keys))
    }

    /// Reads into memory of this process, registered or not; the number of bytes read.
    pub fn get_into(&self, key: &str, addr: u64, len: u64) -> StoreResult<u64> {
        both!(self, c => c.get_into(key, addr, len))
    }

    pub fn batch_get_into(&self, items: &[KeyBuffer<'_>]) -> Vec<StoreResult<u64>> {
        both!(self, c => c.batch_get_into(items))
    }

    /// Byte ranges of `key` into registered memory at `buffer`; one outcome per range.
    pub fn get_into_ranges(&self, buffer: u64, key: &str, ranges: &[ByteRange]) -> StoreResult<Vec<StoreResult<u64>>> {
        both!(self, c => c.get_into_ranges(buffer, key, ranges))
    }

    pub fn is_exist(&self, key: &str) -> StoreResult<bool> {
        self.batch_is_exist(&[key]).pop().unwrap_or_else(|| Err(StoreError::new(ErrorCode::InternalError, "no answer")))
    }

    pub fn batch_is_exist(&self, keys: &[&str]) -> Vec<StoreResult<bool>> {
        both!(self, c => c.batch_is_exist(keys))
    }

    pub fn get_size(&self, key: &str) -> StoreResult<u64> {
        both!(self, c => c.get_size(key))
    }

    pub fn remove(&self, key: &str, force: bool) -> StoreResult<()> {
        both!(self, c => c.remove(key, force))
    }

    pub fn remove_by_regex(&self, pattern: &str, force: bool) -> StoreResult<i64> {
        both!(self, c => c.remove_by_regex(pattern, force))
    }

    pub fn remove_all(&self, force: bool) -> StoreResult<i64> {
        both!(self, c => c.remove_all(force))
    }

    // ---- multi-buffer puts and gets (`multi.rs`) ----

    /// Puts each key's parts, concatenated, straight from the caller's memory: one engine
    /// batch for every part of every key and replica. An existing key is kept (Ok) unless
    /// `upsert`. One outcome per key.
    pub fn batch_put_from_multi_buffers(
        &self,
        items: &[KeyParts<'_>],
        config: &ReplicaConfig,
        upsert: bool,
    ) -> Vec<StoreResult<()>> {
        both!(self, c => c.batch_put_from_multi_buffers(items, config, upsert))
    }

    /// Reads each key's value into its parts (which must hold exactly the value): the bytes
    /// read per key, or its error.
    pub fn batch_get_into_multi_buffers(&self, items: &[KeyParts<'_>]) -> Vec<StoreResult<u64>> {
        both!(self, c => c.batch_get_into_multi_buffers(items))
    }

    // ---- Mooncake's surface beyond put/get (surface.rs, session.rs) ----

    /// A real client on the engine `engine` (shared with its creator, which keeps running it
    /// after `close`).
    pub fn setup_with_engine(config: &StoreConfig, engine: Arc<TransferEngine>) -> StoreResult<Store> {
        Ok(Store { kind: Kind::Real(Arc::new(RealClient::setup_with_engine(config, engine)?)) })
    }

    /// `remove` of each key; one outcome per key.
    pub fn batch_remove(&self, keys: &[&str], force: bool) -> Vec<StoreResult<()>> {
        both!(self, c => c.batch_remove(keys, force))
    }

    /// The replicas of each key (with a read lease).
    pub fn batch_replica_desc(&self, keys: &[&str]) -> Vec<StoreResult<Vec<ReplicaDesc>>> {
        both!(self, c => c.batch_replica_desc(keys))
    }

    /// Reserves space for each key without writing it (a real client only).
    pub fn batch_put_session_start(
        &self,
        keys: &[&str],
        sizes: &[u64],
        config: &ReplicaConfig,
    ) -> Vec<StoreResult<()>> {
        both!(self, c => c.batch_put_session_start(keys, sizes, config))
    }

    /// Ends (`revoke`: revokes) the put sessions of `keys`.
    pub fn batch_put_session_finish(&self, keys: &[&str], revoke: bool) -> Vec<StoreResult<()>> {
        both!(self, c => c.batch_put_session_finish(keys, revoke))
    }

    /// Looks the replicas of `keys` up once and keeps them (a real client only).
    pub fn batch_get_session_start(&self, keys: &[&str]) -> Vec<StoreResult<()>> {
        both!(self, c => c.batch_get_session_start(keys))
    }

    pub fn batch_get_session_end(&self, keys: &[&str]) -> StoreResult<()> {
        both!(self, c => c.batch_get_session_end(keys))
    }

    /// Writes each key's ranged parts into the object its put session reserved (`ranges.rs`):
    /// bytes written per key, or its error. A dummy client has no sessions: `INVALID_PARAMS`.
    pub fn batch_put_from_multi_buffer_ranges(&self, items: &[KeyRanges<'_>]) -> Vec<StoreResult<u64>> {
        match &self.kind {
            Kind::Real(c) => c.batch_put_from_multi_buffer_ranges(items),
            Kind::Dummy(_) => no_ranges(items.len()),
        }
    }

    /// Reads each key's ranged parts through the replicas its get session found: bytes read
    /// per key, or its error. A dummy client has no sessions: `INVALID_PARAMS`.
    pub fn batch_get_into_multi_buffer_ranges(&self, items: &[KeyRanges<'_>]) -> Vec<StoreResult<u64>> {
        match &self.kind {
            Kind::Real(c) => c.batch_get_into_multi_buffer_ranges(items),
            Kind::Dummy(_) => no_ranges(items.len()),
        }
    }
}

/// The ranged calls on a dummy client, which has no sessions (as Mooncake's).
fn no_ranges(n: usize) -> Vec<StoreResult<u64>> {
    tracing::error!("a dummy client has no sessions: the ranged multi-buffer calls need one");
    (0..n).map(|_| Err(StoreError::invalid("a dummy client has no sessions"))).collect()
}

/// Extra segments, copy and move tasks (`segments.rs`, `tasks.rs`). Segment calls need a real
/// client: a dummy answers -1 / `INTERNAL_ERROR` with a log line, as Mooncake's does; task
/// calls are forwarded to the dummy's real client.
impl Store {
    /// Maps `size` bytes of the file at `path` from `offset` and mounts them; the segment ids.
    pub fn mount_file_segment(
        &self,
        path: &str,
        size: u64,
        offset: u64,
        protocol: &str,
        location: &str,
    ) -> StoreResult<Vec<String>> {
        self.real_only("mount_segment")?.mount_file_segment(path, size, offset, protocol, location)
    }

    /// Allocates (whole 16 MiB slabs) and mounts `size` bytes; the segment ids and the bytes.
    pub fn allocate_and_mount_segment(
        &self,
        size: u64,
        protocol: &str,
        location: &str,
    ) -> StoreResult<(Vec<String>, u64)> {
        self.real_only("allocate_and_mount_segment")?.allocate_and_mount_segment(size, protocol, location)
    }

    /// Unmounts segments of `mount_file_segment`; 0 or the first failure's code.
    pub fn unmount_segment(&self, ids: &[&str], grace_period_seconds: u64) -> i32 {
        match self.real_only("unmount_segment") {
            Ok(r) => r.unmount_extra_segments(ids, grace_period_seconds, super::segments::ExtraKind::File),
            Err(_) => -1,
        }
    }

    /// Unmounts and frees segments of `allocate_and_mount_segment`; 0 or the first failure's code.
    pub fn unmount_and_free_segment(&self, ids: &[&str], grace_period_seconds: u64) -> i32 {
        match self.real_only("unmount_and_free_segment") {
            Ok(r) => r.unmount_extra_segments(ids, grace_period_seconds, super::segments::ExtraKind::Allocated),
            Err(_) => -1,
        }
    }

    pub fn create_copy_task(&self, key: &str, targets: &[&str]) -> StoreResult<crate::proto::TaskId> {
        both!(self, c => c.create_copy_task(key, targets))
    }

    pub fn create_move_task(&self, key: &str, source: &str, target: &str) -> StoreResult<crate::proto::TaskId> {
        both!(self, c => c.create_move_task(key, source, target))
    }

    pub fn query_task(&self, task: crate::proto::TaskId) -> StoreResult<crate::proto::TaskInfo> {
        both!(self, c => c.query_task(task))
    }

    /// Drops this client's unleased replicas of `keys` on `segment_name` (`""`: the whole
    /// objects); the keys cleared.
    pub fn batch_replica_clear(&self, keys: &[&str], segment_name: &str) -> StoreResult<Vec<String>> {
        both!(self, c => c.batch_replica_clear(keys, segment_name))
    }

    fn real_only(&self, what: &str) -> StoreResult<&RealClient> {
        match &self.kind {
            Kind::Real(r) => Ok(r),
            Kind::Dummy(_) => {
                tracing::error!("{what} requires a real client");
                Err(StoreError::new(ErrorCode::InternalError, format!("{what} requires a real client")))
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!("closing the store client: {e}");
        }
    }
}
