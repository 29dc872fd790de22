//! Put and get sessions (Mooncake's `batch_put_session_*` and `batch_get_session_*`): a put
//! session reserves an object's space with the master and keeps the reservation here until
//! the caller ends it (the object becomes visible) or revokes it; a get session asks the master
//! for the replicas once (with a read lease) and keeps the answer here until the caller ends
//! it. The ranged multi-buffer calls read and write through what a session holds
//! ([`Sessions::put`], [`Sessions::get`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::client::{RealClient, check_key};
use super::{ErrorCode, ReplicaConfig, StoreError, StoreResult};
use crate::proto::{ObjectInfo, PutId, PutItem, PutSlot, Request, Response};

/// One reservation of a put session.
#[derive(Debug, Clone)]
pub struct PutSession {
    pub put_id: PutId,
    pub slot: PutSlot,
    /// The object's size, as given to `batch_put_session_start`.
    pub size: u64,
}

/// The replicas a get session found, and until when its read lease lasts.
#[derive(Debug, Clone)]
pub struct GetSession {
    pub info: ObjectInfo,
    pub lease_until: Instant,
}

/// The sessions of one client, by key.
#[derive(Debug, Default)]
pub struct Sessions {
    puts: Mutex<HashMap<String, PutSession>>,
    gets: Mutex<HashMap<String, GetSession>>,
}

impl Sessions {
    /// The put session of `key`, if one is open.
    pub fn put(&self, key: &str) -> Option<PutSession> {
        self.puts.lock().get(key).cloned()
    }

    /// The get session of `key`, unless there is none or its lease ran out (which ends it:
    /// `LEASE_EXPIRED`, as Mooncake's).
    pub fn get(&self, key: &str) -> StoreResult<GetSession> {
        let mut gets = self.gets.lock();
        match gets.get(key) {
            None => Err(StoreError::invalid(format!("no get session for {key:?}"))),
            Some(s) if s.lease_until <= Instant::now() => {
                gets.remove(key);
                Err(StoreError::new(ErrorCode::LeaseExpired, format!("the get session of {key:?} expired")))
            }
            Some(s) => Ok(s.clone()),
        }
    }
}

fn invalid_all<T>(n: usize, message: &str) -> Vec<StoreResult<T>> {
    tracing::error!("{message}");
    (0..n).map(|_| Err(StoreError::invalid(message))).collect()
}

impl RealClient {
    /// Reserves space for each key (`sizes[i]` bytes) without writing it: one request. A key
    /// with a session already open, or mismatched lengths, is `INVALID_PARAMS`; the master's
    /// refusals (`OBJECT_ALREADY_EXISTS`, ...) come back per key.
    pub fn batch_put_session_start(
        &self,
        keys: &[&str],
        sizes: &[u64],
        config: &ReplicaConfig,
    ) -> Vec<StoreResult<()>> {
        if keys.len() != sizes.len() {
            return invalid_all(keys.len(), "batch_put_session_start: keys and sizes differ in length");
        }
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out: Vec<StoreResult<()>> = keys.iter().map(|_| Ok(())).collect();
        let mut wanted = Vec::new();
        {
            let puts = inner.sessions.puts.lock();
            for (i, key) in keys.iter().enumerate() {
                if puts.contains_key(*key) {
                    out[i] = Err(StoreError::invalid(format!("a put session of {key:?} is already open")));
                } else if sizes[i] == 0 {
                    out[i] = Err(StoreError::invalid(format!("a put session of {key:?} needs a size above 0")));
                } else if let Err(e) = check_key(key) {
                    out[i] = Err(e);
                } else {
                    wanted.push(i);
                }
            }
        }
        if wanted.is_empty() {
            return out;
        }
        let request = Request::BatchPutStart {
            client: inner.master.client_id(),
            items: wanted.iter().map(|&i| PutItem { key: keys[i].to_string(), size: sizes[i] }).collect(),
            config: config.clone(),
            upsert: false,
        };
        let starts = match inner.master.call(&request) {
            Ok(Response::PutBatch(starts)) if starts.len() == wanted.len() => starts,
            Ok(other) => {
                let e = super::client::unexpected("BatchPutStart", &other);
                wanted.iter().for_each(|&i| out[i] = Err(e.clone()));
                return out;
            }
            Err(e) => {
                wanted.iter().for_each(|&i| out[i] = Err(e.clone()));
                return out;
            }
        };
        let mut puts = inner.sessions.puts.lock();
        for (&i, start) in wanted.iter().zip(starts) {
            match start {
                Ok(slot) => {
                    puts.insert(keys[i].to_string(), PutSession { put_id: slot.put_id, slot, size: sizes[i] });
                }
                Err(code) => out[i] = Err(StoreError::from_master(code, &format!("PutStart {:?}", keys[i]))),
            }
        }
        out
    }

    /// Makes each session's object visible (`revoke`: frees its space instead). A key without
    /// a session is `INVALID_PARAMS`; a session whose end the master refused stays open, so
    /// that the caller may revoke it.
    pub fn batch_put_session_finish(&self, keys: &[&str], revoke: bool) -> Vec<StoreResult<()>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out: Vec<StoreResult<()>> = keys.iter().map(|_| Ok(())).collect();
        let mut wanted = Vec::new();
        {
            let puts = inner.sessions.puts.lock();
            for (i, key) in keys.iter().enumerate() {
                match puts.get(*key) {
                    Some(s) => wanted.push((i, s.put_id)),
                    None => out[i] = Err(StoreError::invalid(format!("no put session for {key:?}"))),
                }
            }
        }
        let finished = inner.finish_batch(wanted.iter().map(|&(i, id)| (keys[i].to_string(), id)).collect(), revoke);
        let mut puts = inner.sessions.puts.lock();
        for (&(i, id), r) in wanted.iter().zip(finished) {
            // A revoke the master no longer knows of (the put timed out) still ends the session.
            let gone = r.is_ok() || (revoke && r.as_ref().is_err_and(|e| e.code == ErrorCode::ObjectNotFound));
            if gone && puts.get(keys[i]).is_some_and(|s| s.put_id == id) {
                puts.remove(keys[i]);
            }
            out[i] = if gone { Ok(()) } else { r };
        }
        out
    }

    /// Asks for the replicas of every key once (one request, read leases) and keeps them.
    pub fn batch_get_session_start(&self, keys: &[&str]) -> Vec<StoreResult<()>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        if keys.is_empty() {
            return Vec::new();
        }
        let asked = Instant::now();
        let infos = inner.objects(keys);
        let mut gets = inner.sessions.gets.lock();
        keys.iter()
            .zip(infos)
            .map(|(key, info)| match info {
                Ok(info) => {
                    let lease_until = asked + Duration::from_millis(info.lease_ttl_ms);
                    gets.insert(key.to_string(), GetSession { info, lease_until });
                    Ok(())
                }
                Err(e) => {
                    gets.remove(*key);
                    Err(e)
                }
            })
            .collect()
    }

    /// Drops the get sessions of `keys` and tells the master their reads are done (so that
    /// no removal or unmount, this client's `close` included, waits out their read leases).
    pub fn batch_get_session_end(&self, keys: &[&str]) -> StoreResult<()> {
        let inner = self.inner.live()?;
        let ended: Vec<(String, GetSession)> = {
            let mut gets = inner.sessions.gets.lock();
            keys.iter().filter_map(|key| gets.remove(*key).map(|s| (key.to_string(), s))).collect()
        };
        inner.master.reads_finished(ended.into_iter().map(|(key, s)| (key, s.info.read_id)));
        Ok(())
    }
}
