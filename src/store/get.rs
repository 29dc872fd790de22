//! The get path: `GetReplicas` returns the visible version's replicas with a read lease, one
//! replica is read (this process's own first; another one when a copy fails), and the result
//! is trusted only when the copy ended within the lease.

use std::time::{Duration, Instant};

use super::client::{Inner, RealClient, check_key, unexpected};
use super::transfer::{self, Op};
use super::{ByteRange, ErrorCode, KeyBuffer, StoreError, StoreResult};
use crate::proto::{ObjectInfo, Replica, Request, Response};
use crate::transport::Opcode;

impl RealClient {
    /// The whole value of `key`.
    pub fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.get_batch(&[key]).pop().unwrap_or_else(|| Err(StoreError::new(ErrorCode::InternalError, "no outcome")))
    }

    /// The values of `keys`, each passing through the staging buffer unless its replica is in
    /// this process.
    pub fn get_batch(&self, keys: &[&str]) -> Vec<StoreResult<Vec<u8>>> {
        let inner = match self.inner.live().and_then(|inner| inner.staging().map(|_| inner)) {
            Ok(inner) => inner,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        let started = Instant::now();
        let infos = inner.objects(keys);
        let lease = inner.master.params().lease_ttl;
        let out = infos
            .iter()
            .map(|info| {
                let info = info.as_ref().map_err(Clone::clone)?;
                let mut value = vec![0u8; info.size as usize];
                inner.read_value(info, &mut value)?;
                within_lease(started, lease)?;
                Ok(value)
            })
            .collect();
        inner.finished(keys, &infos);
        out
    }

    /// Reads `key`'s value into memory at `addr` (`len` bytes available), registered or not
    /// (the engine moves either, as Mooncake's TCP path does); the number of bytes read.
    pub fn get_into(&self, key: &str, addr: u64, len: u64) -> StoreResult<u64> {
        self.batch_get_into(&[KeyBuffer { key, addr, len }])
            .pop()
            .unwrap_or_else(|| Err(StoreError::new(ErrorCode::InternalError, "no outcome")))
    }

    /// `get_into` for many keys: one `BatchGetReplicas` and one engine batch.
    pub fn batch_get_into(&self, items: &[KeyBuffer<'_>]) -> Vec<StoreResult<u64>> {
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let started = Instant::now();
        let keys: Vec<&str> = items.iter().map(|it| it.key).collect();
        let infos = inner.objects(&keys);
        let mut outcome: Vec<StoreResult<u64>> = Vec::with_capacity(items.len());
        let mut ops = Vec::new();
        for (n, (it, info)) in items.iter().zip(&infos).enumerate() {
            let checked = info.as_ref().map_err(Clone::clone).and_then(|info| {
                if info.size > it.len {
                    return Err(StoreError::invalid(format!(
                        "{:?} has {} bytes; the buffer holds {}",
                        it.key, info.size, it.len
                    )));
                }
                if it.addr == 0 {
                    return Err(StoreError::invalid(format!("a NULL buffer for {:?}", it.key)));
                }
                Ok(info)
            });
            match checked {
                Ok(info) => {
                    let r = inner.pick(&info.replicas);
                    ops.push(Op {
                        opcode: Opcode::Read,
                        local: it.addr,
                        segment: &r.segment_name,
                        remote: r.addr,
                        len: info.size,
                        item: n,
                    });
                    outcome.push(Ok(info.size));
                }
                Err(e) => outcome.push(Err(e)),
            }
        }
        let copied = transfer::run_with(&inner.engine, &inner.hostname, inner.staging.as_ref(), &ops, items.len());
        let lease = inner.master.params().lease_ttl;
        for op in &ops {
            if let Err(e) = &copied[op.item] {
                // The replica's owner may have died before the master noticed: try the others.
                let info = infos[op.item].as_ref().expect("ops are built from found objects");
                outcome[op.item] = inner
                    .read_other_replicas(info, op.segment, items[op.item].addr)
                    .map(|()| info.size)
                    .map_err(|_| e.clone());
            }
            if outcome[op.item].is_ok()
                && let Err(e) = within_lease(started, lease)
            {
                outcome[op.item] = Err(e);
            }
        }
        inner.finished(&keys, &infos);
        outcome
    }

    /// Reads byte ranges of `key` into registered memory at `buffer`; one outcome per range
    /// (the bytes read, or an error for a range outside the object or the buffer). The buffer
    /// must be registered: it is what bounds the ranges, and Mooncake's `get_into_ranges`
    /// refuses (`INVALID_PARAMS`) a buffer it cannot find registered too.
    pub fn get_into_ranges(&self, buffer: u64, key: &str, ranges: &[ByteRange]) -> StoreResult<Vec<StoreResult<u64>>> {
        let inner = self.inner.live()?;
        let started = Instant::now();
        let info = inner.object(key)?;
        let r = inner.pick(&info.replicas);
        let mut outcome = Vec::with_capacity(ranges.len());
        let mut ops = Vec::new();
        for (n, range) in ranges.iter().enumerate() {
            let inside = range.src.checked_add(range.len).is_some_and(|end| end <= info.size);
            let dst = buffer.checked_add(range.dst);
            match dst {
                Some(dst) if inside && range.len > 0 && inner.is_registered(dst, range.len) => {
                    ops.push(Op {
                        opcode: Opcode::Read,
                        local: dst,
                        segment: &r.segment_name,
                        remote: r.addr + range.src,
                        len: range.len,
                        item: n,
                    });
                    outcome.push(Ok(range.len));
                }
                _ => outcome.push(Err(StoreError::invalid(format!(
                    "range {range:?} is outside {key:?} ({} bytes) or the registered buffer",
                    info.size
                )))),
            }
        }
        let copied = transfer::run(&inner.engine, &inner.hostname, &ops, ranges.len());
        let late = within_lease(started, inner.master.params().lease_ttl);
        for op in &ops {
            if let Err(e) = copied[op.item].clone().and_then(|()| late.clone()) {
                outcome[op.item] = Err(e);
            }
        }
        inner.master.reads_finished([(key.to_string(), info.read_id)]);
        Ok(outcome)
    }
}

impl Inner {
    /// `GetReplicas` for every key (one request), with read leases.
    pub(super) fn objects(&self, keys: &[&str]) -> Vec<StoreResult<ObjectInfo>> {
        // Empty keys are refused here; the others go in one request.
        let asked: Vec<&str> = keys.iter().copied().filter(|k| check_key(k).is_ok()).collect();
        let mut answers = if asked.is_empty() { Vec::new() } else { self.ask_objects(&asked) }.into_iter();
        keys.iter()
            .map(|k| match check_key(k) {
                Ok(()) => answers.next().unwrap_or_else(|| Err(StoreError::new(ErrorCode::InternalError, "no answer"))),
                Err(e) => Err(e),
            })
            .collect()
    }

    fn ask_objects(&self, keys: &[&str]) -> Vec<StoreResult<ObjectInfo>> {
        let request = Request::BatchGetReplicas { keys: keys.iter().map(|k| k.to_string()).collect() };
        match self.master.call(&request) {
            Ok(Response::Objects(objects)) if objects.len() == keys.len() => objects
                .into_iter()
                .zip(keys)
                .map(|(o, k)| o.map_err(|c| StoreError::from_master(c, &format!("GetReplicas {k:?}"))))
                .collect(),
            Ok(other) => keys.iter().map(|_| Err(unexpected("BatchGetReplicas", &other))).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Tells the master (with the next request) that the reads of `infos` are over.
    pub(super) fn finished(&self, keys: &[&str], infos: &[StoreResult<ObjectInfo>]) {
        let done = keys.iter().zip(infos).filter_map(|(k, i)| i.as_ref().ok().map(|i| (k.to_string(), i.read_id)));
        self.master.reads_finished(done);
    }

    /// The replica to read: this process's own when there is one, else the first.
    pub(super) fn pick<'a>(&self, replicas: &'a [Replica]) -> &'a Replica {
        replicas.iter().find(|r| r.segment_name == self.hostname).unwrap_or(&replicas[0])
    }

    /// Reads the whole value into `value` (directly from this process's replica, else through
    /// the staging buffer, in chunks when it is larger than what is free), trying each replica
    /// in turn until one copy succeeds.
    fn read_value(&self, info: &ObjectInfo, value: &mut [u8]) -> StoreResult<()> {
        let first = self.pick(&info.replicas);
        let order = std::iter::once(first).chain(info.replicas.iter().filter(|r| !std::ptr::eq(*r, first)));
        let mut last = None;
        for r in order {
            match self.read_replica(r, value) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::new(ErrorCode::InvalidReplica, "the object has no replica")))
    }

    fn read_replica(&self, r: &Replica, value: &mut [u8]) -> StoreResult<()> {
        if self.memcpy_local && r.segment_name == self.hostname {
            return self.read_own(r.addr, value);
        }
        let size = value.len() as u64;
        let mut done = 0;
        while done < size {
            let chunk = self.staging()?.borrow(size - done)?;
            let len = chunk.len().min(size - done);
            let op = Op {
                opcode: Opcode::Read,
                local: chunk.addr(),
                segment: &r.segment_name,
                remote: r.addr + done,
                len,
                item: 0,
            };
            transfer::run(&self.engine, &self.hostname, &[op], 1).pop().unwrap_or(Ok(()))?;
            let inside = chunk.read_at(chunk.addr(), &mut value[done as usize..(done + len) as usize]);
            debug_assert!(inside, "the chunk holds `len` bytes");
            done += len;
        }
        Ok(())
    }

    /// After a failed copy from `failed_segment`: the same copy from each other replica.
    fn read_other_replicas(&self, info: &ObjectInfo, failed_segment: &str, dst: u64) -> StoreResult<()> {
        let mut last = Err(StoreError::new(ErrorCode::TransferFail, "no other replica"));
        for r in info.replicas.iter().filter(|r| r.segment_name != failed_segment) {
            let op = Op {
                opcode: Opcode::Read,
                local: dst,
                segment: &r.segment_name,
                remote: r.addr,
                len: info.size,
                item: 0,
            };
            last = transfer::run_with(&self.engine, &self.hostname, self.staging.as_ref(), &[op], 1)
                .pop()
                .unwrap_or(Ok(()));
            if last.is_ok() {
                break;
            }
        }
        last
    }
}

/// A copy that ended after the lease may have raced with the space being reused.
pub(super) fn within_lease(started: Instant, lease: Duration) -> StoreResult<()> {
    if !lease.is_zero() && started.elapsed() > lease {
        return Err(StoreError::new(
            ErrorCode::LeaseExpired,
            format!("the copy took longer than the {lease:?} read lease; the bytes may have been replaced"),
        ));
    }
    Ok(())
}
