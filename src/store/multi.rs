//! Multi-buffer puts and gets (`batch_put_from_multi_buffers`,
//! `batch_get_into_multi_buffers`): each key's value is the concatenation of parts that lie
//! scattered in the caller's memory (vLLM's store connector passes one part per layer). The
//! parts move straight between the caller's buffers and the replicas, all parts of all keys
//! and replicas in one engine batch per call: part `j` of a key goes to (comes from) offset
//! `len(part 0) + … + len(part j-1)` of every replica (of the replica read). Parts need not
//! be registered: [`transfer::run_with`] stages through the local buffer only the unregistered
//! parts that an RDMA route needs registered.
//!
//! Codes, as Mooncake's client answers them: a key without parts, an empty key on a put, a
//! value of 0 bytes, a part at address 0 → `INVALID_PARAMS`; on a get, parts that hold less
//! than the object → `INVALID_PARAMS`, parts that hold more → `TRANSFER_FAIL` (Mooncake's
//! transfer refuses the size mismatch), an unknown or empty key → `OBJECT_NOT_FOUND`. Nothing
//! is written into the caller's memory for a key that fails these checks.

use std::time::Instant;

use super::client::RealClient;
use super::get::within_lease;
use super::transfer::{self, Op};
use super::{ErrorCode, ReplicaConfig, StoreError, StoreResult};
use crate::proto::{ObjectInfo, Replica};
use crate::transport::Opcode;

/// `len` bytes at `addr` in the caller's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub addr: u64,
    pub len: u64,
}

/// A key and its parts, in value order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub key: &'a str,
    pub parts: &'a [Part],
}

impl KeyParts<'_> {
    /// The value's size: the parts' lengths summed (saturating: a sum past `u64` is refused
    /// as a bad size anyway).
    pub fn total(&self) -> u64 {
        self.parts.iter().fold(0u64, |s, p| s.saturating_add(p.len))
    }

    /// The checks every key passes before anything is reserved or read.
    pub fn check(&self) -> StoreResult<()> {
        if self.parts.is_empty() {
            return Err(StoreError::invalid(format!("{:?} has no parts", self.key)));
        }
        if let Some(j) = self.parts.iter().position(|p| p.addr == 0 && p.len > 0) {
            return Err(StoreError::invalid(format!("part {j} of {:?} is at address 0", self.key)));
        }
        if self.parts.iter().any(|p| p.addr.checked_add(p.len).is_none()) {
            return Err(StoreError::invalid(format!("a part of {:?} wraps the address space", self.key)));
        }
        Ok(())
    }

    /// `(part, offset in the value)` for each non-empty part.
    fn placed(&self) -> impl Iterator<Item = (Part, u64)> + '_ {
        self.parts
            .iter()
            .scan(0u64, |at, p| {
                let here = *at;
                *at += p.len;
                Some((*p, here))
            })
            .filter(|(p, _)| p.len > 0)
    }
}

impl RealClient {
    /// Puts each key's parts (concatenated) from the caller's memory: one `BatchPutStart`, one
    /// engine batch that writes every part into every replica, one `BatchPutFinish` (failed
    /// keys are revoked). An existing key is kept (Ok) unless `upsert`. One outcome per key.
    pub fn batch_put_from_multi_buffers(
        &self,
        items: &[KeyParts<'_>],
        config: &ReplicaConfig,
        upsert: bool,
    ) -> Vec<StoreResult<()>> {
        let refused: Vec<Option<StoreError>> = items.iter().map(|it| it.check().err()).collect();
        let keys: Vec<&str> = items.iter().map(|it| it.key).collect();
        let sizes: Vec<u64> = items.iter().map(KeyParts::total).collect();
        let mut outcome = self.batch_put_filtered(&keys, &sizes, &refused, config, upsert, |inner, slots| {
            let ops: Vec<Op<'_>> = slots
                .iter()
                .enumerate()
                .flat_map(|(n, &(i, slot))| {
                    items[i].placed().flat_map(move |(part, at)| {
                        slot.replicas.iter().map(move |r| Op {
                            opcode: Opcode::Write,
                            local: part.addr,
                            segment: &r.segment_name,
                            remote: r.addr + at,
                            len: part.len,
                            item: n,
                        })
                    })
                })
                .collect();
            transfer::run_with(&inner.engine, &inner.hostname, inner.staging.as_ref(), &ops, slots.len())
        });
        for (o, r) in outcome.iter_mut().zip(refused) {
            if let Some(e) = r {
                *o = Err(e);
            }
        }
        outcome
    }

    /// Reads each key's value into its parts: one `BatchGetReplicas` (read leases), one
    /// engine batch for all parts of all keys from one replica each (this process's own
    /// first); a key whose copy failed is read again from its other replicas. The bytes read
    /// per key (the object's size), or its error.
    pub fn batch_get_into_multi_buffers(&self, items: &[KeyParts<'_>]) -> Vec<StoreResult<u64>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let started = Instant::now();
        let keys: Vec<&str> = items.iter().map(|it| it.key).collect();
        let infos = inner.objects(&keys);
        let mut outcome: Vec<StoreResult<u64>> = items
            .iter()
            .zip(&infos)
            .map(|(it, info)| {
                let info = info.as_ref().map_err(|e| {
                    if e.code == ErrorCode::InvalidParams && it.key.is_empty() {
                        // Mooncake looks the empty key up like any other: not found.
                        StoreError::new(ErrorCode::ObjectNotFound, "the key is empty")
                    } else {
                        e.clone()
                    }
                })?;
                it.check()?;
                fits(it, info)?;
                Ok(info.size)
            })
            .collect();
        // Round r reads every key still wanting bytes from its r-th replica choice.
        let mut tried: Vec<Vec<&str>> = items.iter().map(|_| Vec::new()).collect();
        let mut pending: Vec<usize> = (0..items.len()).filter(|&n| outcome[n].is_ok()).collect();
        let mut first_error: Vec<Option<StoreError>> = items.iter().map(|_| None).collect();
        // Keys whose every replica failed: they keep their first error.
        let mut exhausted = Vec::new();
        while !pending.is_empty() {
            let mut ops = Vec::new();
            let mut round = Vec::new();
            for &n in &pending {
                let info = infos[n].as_ref().expect("pending keys were found");
                let Some(r) = next_replica(inner.pick(&info.replicas), &info.replicas, &tried[n]) else {
                    exhausted.push(n);
                    continue;
                };
                tried[n].push(&r.segment_name);
                round.push(n);
                ops.extend(items[n].placed().map(|(part, at)| Op {
                    opcode: Opcode::Read,
                    local: part.addr,
                    segment: &r.segment_name,
                    remote: r.addr + at,
                    len: part.len,
                    item: n,
                }));
            }
            if round.is_empty() {
                break;
            }
            let copied = transfer::run_with(&inner.engine, &inner.hostname, inner.staging.as_ref(), &ops, items.len());
            pending.clear();
            for n in round {
                if let Err(e) = &copied[n] {
                    // The replica's owner may have died before the master noticed: try the next.
                    first_error[n].get_or_insert_with(|| e.clone());
                    pending.push(n);
                }
            }
        }
        let lease = inner.master.params().lease_ttl;
        for (n, o) in outcome.iter_mut().enumerate() {
            if o.is_err() {
                continue;
            }
            if exhausted.contains(&n) {
                let e = first_error[n].take();
                *o = Err(e.unwrap_or_else(|| StoreError::new(ErrorCode::TransferFail, "no replica could be read")));
            } else if let Err(e) = within_lease(started, lease) {
                *o = Err(e);
            }
        }
        inner.finished(&keys, &infos);
        outcome
    }
}

/// Parts that hold less than the object are refused as Mooncake does (`INVALID_PARAMS`), and
/// so are parts that hold more (Mooncake's transfer fails them: `TRANSFER_FAIL`), before
/// anything is copied.
fn fits(it: &KeyParts<'_>, info: &ObjectInfo) -> StoreResult<()> {
    let room = it.total();
    if room < info.size {
        return Err(StoreError::invalid(format!("{:?} has {} bytes; its parts hold {room}", it.key, info.size)));
    }
    if room > info.size {
        return Err(StoreError::new(
            ErrorCode::TransferFail,
            format!("{:?} has {} bytes; its parts hold {room}, more than the object", it.key, info.size),
        ));
    }
    Ok(())
}

/// The preferred replica first, then the others in the master's order, skipping `tried`.
fn next_replica<'a>(preferred: &'a Replica, all: &'a [Replica], tried: &[&str]) -> Option<&'a Replica> {
    std::iter::once(preferred).chain(all.iter()).find(|r| !tried.contains(&r.segment_name.as_str()))
}
