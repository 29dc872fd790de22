//! Ranged multi-buffer calls (`batch_put_from_multi_buffer_ranges`,
//! `batch_get_into_multi_buffer_ranges`): each part of a key is `len` bytes of the caller's
//! memory and the offset in the object where they belong. They work only on objects of an open
//! session ([`super::session`]): a put writes into the space a put session reserved (every
//! replica), a get reads from the replicas a get session looked up, without asking the master.
//! All parts of all keys move in one engine batch per call.
//!
//! Codes, as Mooncake's client answers them: a key without a session, parts whose three lists
//! disagree (checked by the callers), a range past the object's end, a part at address 0 →
//! `INVALID_PARAMS`; a put of a key with no parts → `INVALID_REPLICA` (nothing to write to any
//! replica); a get whose session's lease ran out → `LEASE_EXPIRED` (the session ends). Success
//! is the bytes of the key's parts, summed.

use std::time::Instant;

use super::client::RealClient;
use super::transfer::{self, Op};
use super::{ErrorCode, StoreError, StoreResult};
use crate::transport::Opcode;

/// `len` bytes at `addr` in the caller's memory, for bytes `offset..offset + len` of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePart {
    pub addr: u64,
    pub len: u64,
    pub offset: u64,
}

/// A key and its ranged parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRanges<'a> {
    pub key: &'a str,
    pub parts: &'a [RangePart],
}

impl KeyRanges<'_> {
    fn bytes(&self) -> u64 {
        self.parts.iter().fold(0u64, |s, p| s.saturating_add(p.len))
    }

    /// Every part lies inside an object of `size` bytes and has an address.
    fn check(&self, size: u64) -> StoreResult<()> {
        for (j, p) in self.parts.iter().enumerate() {
            if p.len > size || p.offset > size - p.len {
                return Err(StoreError::invalid(format!(
                    "part {j} of {:?} ({} bytes at offset {}) runs past the object's {size} bytes",
                    self.key, p.len, p.offset
                )));
            }
            if p.len > 0 && (p.addr == 0 || p.addr.checked_add(p.len).is_none()) {
                return Err(StoreError::invalid(format!("part {j} of {:?} is at a bad address", self.key)));
            }
        }
        Ok(())
    }
}

impl RealClient {
    /// Writes each key's parts into every replica of its put session (one engine batch). The
    /// object stays invisible until the session ends. Bytes written per key, or its error.
    pub fn batch_put_from_multi_buffer_ranges(&self, items: &[KeyRanges<'_>]) -> Vec<StoreResult<u64>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut outcome: Vec<StoreResult<u64>> = Vec::with_capacity(items.len());
        let mut sessions = Vec::with_capacity(items.len());
        for it in items {
            let checked = match inner.sessions.put(it.key) {
                None => Err(StoreError::invalid(format!("no put session for {:?}", it.key))),
                Some(s) => it.check(s.size).and_then(|()| {
                    if it.parts.is_empty() {
                        Err(StoreError::new(ErrorCode::InvalidReplica, format!("{:?}: no parts to write", it.key)))
                    } else {
                        Ok(s)
                    }
                }),
            };
            outcome.push(checked.as_ref().map(|_| it.bytes()).map_err(Clone::clone));
            sessions.push(checked.ok());
        }
        let ops: Vec<Op<'_>> = items
            .iter()
            .zip(&sessions)
            .enumerate()
            .filter_map(|(n, (it, s))| s.as_ref().map(|s| (n, it, s)))
            .flat_map(|(n, it, s)| {
                it.parts.iter().filter(|p| p.len > 0).flat_map(move |p| {
                    s.slot.replicas.iter().map(move |r| Op {
                        opcode: Opcode::Write,
                        local: p.addr,
                        segment: &r.segment_name,
                        remote: r.addr + p.offset,
                        len: p.len,
                        item: n,
                    })
                })
            })
            .collect();
        let copied = transfer::run_with(&inner.engine, &inner.hostname, inner.staging.as_ref(), &ops, items.len());
        for (o, c) in outcome.iter_mut().zip(copied) {
            if o.is_ok()
                && let Err(e) = c
            {
                *o = Err(e);
            }
        }
        outcome
    }

    /// Reads each key's ranges from the replica its get session found (this process's own
    /// first; one engine batch). Bytes read per key, or its error; a session whose lease ran
    /// out before the copy ended answers `LEASE_EXPIRED` and ends.
    pub fn batch_get_into_multi_buffer_ranges(&self, items: &[KeyRanges<'_>]) -> Vec<StoreResult<u64>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut outcome: Vec<StoreResult<u64>> = Vec::with_capacity(items.len());
        let mut sessions = Vec::with_capacity(items.len());
        for it in items {
            let checked = inner.sessions.get(it.key).and_then(|s| it.check(s.info.size).map(|()| s));
            outcome.push(checked.as_ref().map(|_| it.bytes()).map_err(Clone::clone));
            sessions.push(checked.ok());
        }
        let replicas: Vec<Option<&crate::proto::Replica>> =
            sessions.iter().map(|s| s.as_ref().map(|s| inner.pick(&s.info.replicas))).collect();
        let ops: Vec<Op<'_>> = items
            .iter()
            .zip(&replicas)
            .enumerate()
            .filter_map(|(n, (it, r))| r.map(|r| (n, it, r)))
            .flat_map(|(n, it, r)| {
                it.parts.iter().filter(|p| p.len > 0).map(move |p| Op {
                    opcode: Opcode::Read,
                    local: p.addr,
                    segment: &r.segment_name,
                    remote: r.addr + p.offset,
                    len: p.len,
                    item: n,
                })
            })
            .collect();
        let copied = transfer::run_with(&inner.engine, &inner.hostname, inner.staging.as_ref(), &ops, items.len());
        let now = Instant::now();
        for ((o, c), (it, s)) in outcome.iter_mut().zip(copied).zip(items.iter().zip(&sessions)) {
            let Some(s) = s else { continue };
            if let Err(e) = c {
                *o = Err(e);
            } else if now >= s.lease_until {
                // Ends the session (its lease is over), as Mooncake's.
                let _ = inner.sessions.get(it.key);
                *o = Err(StoreError::new(ErrorCode::LeaseExpired, format!("the get session of {:?} expired", it.key)));
            }
        }
        outcome
    }
}
