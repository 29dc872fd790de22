//! The put path: `PutStart` reserves a range on each replica's segment, the bytes are written
//! into every replica, then `PutEnd` makes the object visible (or `PutRevoke` gives the space
//! back when a copy failed). Readers never see a put before its end.

use std::time::{Duration, Instant};

use super::client::{Inner, RealClient, check_key, unexpected};
use super::staging::Chunk;
use super::transfer::{self, Op};
use super::{ErrorCode, KeyBuffer, ReplicaConfig, StoreError, StoreResult};
use crate::proto::{PutItem, PutSlot, Replica, Request, Response};
use crate::transport::Opcode;

/// How long a put waits for another put of the same key to end (the master discards a put
/// that started longer ago than its `put_start_discard_timeout_sec`, 30 s by default).
const CONCURRENT_PUT_WAIT: Duration = Duration::from_secs(35);

/// A value to write: its parts (concatenated) and where the master put its replicas.
struct Job<'a> {
    parts: &'a [&'a [u8]],
    size: u64,
    replicas: &'a [Replica],
}

impl RealClient {
    /// Puts the concatenation of `parts` under `key`. An existing key is kept and this returns
    /// Ok (Mooncake's `put`), unless `upsert`, which replaces it once the new value is written.
    pub fn put_parts(&self, key: &str, parts: &[&[u8]], config: &ReplicaConfig, upsert: bool) -> StoreResult<()> {
        let inner = self.inner.live()?;
        check_key(key)?;
        if parts.is_empty() {
            // Mooncake's `put_parts()` with no part answers 0 and stores nothing.
            return Ok(());
        }
        inner.staging()?;
        let size = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        check_size(size)?;
        let Some(slot) = inner.put_start(key, size, config, upsert)? else { return Ok(()) };
        let written = inner.write_staged(&[Job { parts, size, replicas: &slot.replicas }]).pop();
        inner.finish(key, slot.put_id, written.unwrap_or(Ok(())))
    }

    /// Puts many values, each passing through the staging buffer; one outcome per key.
    pub fn put_batch(&self, items: &[(&str, &[u8])], config: &ReplicaConfig, upsert: bool) -> Vec<StoreResult<()>> {
        if let Err(e) = self.inner.live().and_then(Inner::staging) {
            return items.iter().map(|_| Err(e.clone())).collect();
        }
        let parts: Vec<[&[u8]; 1]> = items.iter().map(|(_, v)| [*v]).collect();
        let sizes: Vec<u64> = items.iter().map(|(_, v)| v.len() as u64).collect();
        let keys: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
        self.batch_put(&keys, &sizes, config, upsert, |inner, slots| {
            let jobs: Vec<Job<'_>> = slots
                .iter()
                .map(|&(i, slot)| Job { parts: &parts[i], size: sizes[i], replicas: &slot.replicas })
                .collect();
            inner.write_staged(&jobs)
        })
    }

    /// Zero copy: writes `len` bytes at `addr` into every replica. The memory may be
    /// registered (`register_buffer`) or not: the engine moves either (Mooncake's TCP path
    /// takes unregistered memory too). A size of 0 stores nothing and returns Ok, as
    /// Mooncake's `put_from` does.
    pub fn put_from(&self, key: &str, addr: u64, len: u64, config: &ReplicaConfig, upsert: bool) -> StoreResult<()> {
        self.batch_put_from(&[KeyBuffer { key, addr, len }], config, upsert)
            .pop()
            .unwrap_or_else(|| Err(StoreError::new(ErrorCode::InternalError, "no outcome")))
    }

    /// Zero copy for many keys: one `BatchPutStart`, one engine batch, one `BatchPutFinish`.
    pub fn batch_put_from(
        &self,
        items: &[KeyBuffer<'_>],
        config: &ReplicaConfig,
        upsert: bool,
    ) -> Vec<StoreResult<()>> {
        if self.inner.live().is_err() {
            return items.iter().map(|_| Err(StoreError::invalid("the store client is closed"))).collect();
        }
        // Empty values are skipped (Ok, nothing stored, as Mooncake); a NULL buffer with a
        // size is refused before anything is reserved.
        let skipped: Vec<Option<StoreResult<()>>> = items
            .iter()
            .map(|it| match (it.addr, it.len) {
                (_, 0) => Some(Ok(())),
                (0, len) => Some(Err(StoreError::invalid(format!("a NULL buffer of {len} bytes")))),
                _ => None,
            })
            .collect();
        let refused: Vec<Option<StoreError>> =
            skipped.iter().map(|s| s.as_ref().map(|_| StoreError::invalid("skipped"))).collect();
        let keys: Vec<&str> = items.iter().map(|it| it.key).collect();
        let sizes: Vec<u64> = items.iter().map(|it| it.len).collect();
        let mut outcome = self.batch_put_filtered(&keys, &sizes, &refused, config, upsert, |inner, slots| {
            let ops: Vec<Op<'_>> = slots
                .iter()
                .enumerate()
                .flat_map(|(n, &(i, slot))| {
                    slot.replicas.iter().map(move |r| Op {
                        opcode: Opcode::Write,
                        local: items[i].addr,
                        segment: &r.segment_name,
                        remote: r.addr,
                        len: items[i].len,
                        item: n,
                    })
                })
                .collect();
            transfer::run_with(&inner.engine, &inner.hostname, inner.staging.as_ref(), &ops, slots.len())
        });
        for (o, s) in outcome.iter_mut().zip(skipped) {
            if let Some(s) = s {
                *o = s;
            }
        }
        outcome
    }

    fn batch_put(
        &self,
        keys: &[&str],
        sizes: &[u64],
        config: &ReplicaConfig,
        upsert: bool,
        write: impl Fn(&Inner, &[(usize, &PutSlot)]) -> Vec<StoreResult<()>>,
    ) -> Vec<StoreResult<()>> {
        let none: Vec<Option<StoreError>> = keys.iter().map(|_| None).collect();
        self.batch_put_filtered(keys, sizes, &none, config, upsert, write)
    }

    /// The batch put skeleton: items with `refused[i]` set are skipped (their outcome is
    /// filled in by the caller); the rest are started in one request, written by `write`
    /// (given `(item index, slot)` pairs, returning one outcome per pair), and finished in one
    /// request. Items whose key another put was still writing wait for it and are retried one
    /// by one through the same `write`.
    pub(super) fn batch_put_filtered(
        &self,
        keys: &[&str],
        sizes: &[u64],
        refused: &[Option<StoreError>],
        config: &ReplicaConfig,
        upsert: bool,
        write: impl Fn(&Inner, &[(usize, &PutSlot)]) -> Vec<StoreResult<()>>,
    ) -> Vec<StoreResult<()>> {
        let mut outcome: Vec<StoreResult<()>> = keys.iter().map(|_| Ok(())).collect();
        let inner = match self.inner.live() {
            Ok(inner) => inner,
            Err(e) => return outcome.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut wanted = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if refused[i].is_some() {
                continue;
            }
            match check_key(key).and_then(|()| check_size(sizes[i])) {
                Ok(()) => wanted.push(i),
                Err(e) => outcome[i] = Err(e),
            }
        }
        if wanted.is_empty() {
            return outcome;
        }
        let request = Request::BatchPutStart {
            client: inner.master.client_id(),
            items: wanted.iter().map(|&i| PutItem { key: keys[i].to_string(), size: sizes[i] }).collect(),
            config: config.clone(),
            upsert,
        };
        let starts = match inner.master.call(&request) {
            Ok(Response::PutBatch(starts)) if starts.len() == wanted.len() => starts,
            Ok(other) => {
                let e = unexpected("BatchPutStart", &other);
                wanted.iter().for_each(|&i| outcome[i] = Err(e.clone()));
                return outcome;
            }
            Err(e) => {
                wanted.iter().for_each(|&i| outcome[i] = Err(e.clone()));
                return outcome;
            }
        };
        let mut slots = Vec::new();
        let mut later = Vec::new();
        for (&i, start) in wanted.iter().zip(&starts) {
            match start {
                Ok(slot) => slots.push((i, slot)),
                Err(ErrorCode::ObjectAlreadyExists) if !upsert => {}
                Err(ErrorCode::ReplicaIsNotReady) => later.push(i),
                Err(code) => outcome[i] = Err(StoreError::from_master(*code, &format!("PutStart {:?}", keys[i]))),
            }
        }
        if !slots.is_empty() {
            let written = write(inner, &slots);
            let puts: Vec<(String, u64)> = slots.iter().map(|&(i, s)| (keys[i].to_string(), s.put_id)).collect();
            let (ok, failed): (Vec<_>, Vec<_>) = (0..slots.len()).partition(|&n| written[n].is_ok());
            let ended = inner.finish_batch(ok.iter().map(|&n| puts[n].clone()).collect(), false);
            for (&n, end) in ok.iter().zip(ended) {
                outcome[slots[n].0] = end;
            }
            if !failed.is_empty() {
                let _ = inner.finish_batch(failed.iter().map(|&n| puts[n].clone()).collect(), true);
                for n in failed {
                    outcome[slots[n].0] = written[n].clone();
                }
            }
        }
        // Keys another put was writing: wait for it, one by one (rare).
        for i in later {
            outcome[i] = match inner.put_start(keys[i], sizes[i], config, upsert) {
                Ok(None) => Ok(()),
                Ok(Some(slot)) => {
                    let written = write(inner, &[(i, &slot)]).pop().unwrap_or(Ok(()));
                    inner.finish(keys[i], slot.put_id, written)
                }
                Err(e) => Err(e),
            };
        }
        outcome
    }
}

impl Inner {
    /// `PutStart`, waiting while another put of the key is in progress. `None`: the key exists
    /// and this is not an upsert (Mooncake returns success and keeps the first value).
    fn put_start(&self, key: &str, size: u64, config: &ReplicaConfig, upsert: bool) -> StoreResult<Option<PutSlot>> {
        let deadline = Instant::now() + CONCURRENT_PUT_WAIT;
        let mut pause = Duration::from_micros(200);
        loop {
            let request = Request::PutStart {
                client: self.master.client_id(),
                key: key.into(),
                size,
                config: config.clone(),
                upsert,
            };
            match self.master.call(&request) {
                Ok(Response::Put(slot)) => return Ok(Some(slot)),
                Ok(other) => return Err(unexpected("PutStart", &other)),
                Err(e) if e.code == ErrorCode::ObjectAlreadyExists && !upsert => return Ok(None),
                Err(e) if e.code == ErrorCode::ReplicaIsNotReady && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends (written Ok) or revokes (written Err, which is returned) one put.
    fn finish(&self, key: &str, put_id: u64, written: StoreResult<()>) -> StoreResult<()> {
        let client = self.master.client_id();
        match written {
            Ok(()) => match self.master.call(&Request::PutEnd { client, key: key.into(), put_id })? {
                Response::Done => Ok(()),
                other => Err(unexpected("PutEnd", &other)),
            },
            Err(e) => {
                if let Err(revoke) = self.master.call(&Request::PutRevoke { client, key: key.into(), put_id }) {
                    tracing::warn!("revoking the failed put of {key:?}: {revoke}");
                }
                Err(e)
            }
        }
    }

    pub(super) fn finish_batch(&self, puts: Vec<(String, u64)>, revoke: bool) -> Vec<StoreResult<()>> {
        if puts.is_empty() {
            return Vec::new();
        }
        let n = puts.len();
        let request = Request::BatchPutFinish { client: self.master.client_id(), puts, revoke };
        match self.master.call(&request) {
            Ok(Response::Codes(codes)) if codes.len() == n => {
                codes.into_iter().map(|c| c.map_err(|c| StoreError::from_master(c, "PutEnd"))).collect()
            }
            Ok(other) => (0..n).map(|_| Err(unexpected("BatchPutFinish", &other))).collect(),
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    /// Writes values that are not in registered memory: replicas in this process get a memcpy
    /// straight from the value; the others get the value through the staging buffer, all
    /// values in one engine batch when they fit, else one value at a time in chunks.
    fn write_staged(&self, jobs: &[Job<'_>]) -> Vec<StoreResult<()>> {
        let mut outcome: Vec<StoreResult<()>> = jobs.iter().map(|_| Ok(())).collect();
        let is_local = |r: &Replica| self.memcpy_local && r.segment_name == self.hostname;
        let mut staged = Vec::new();
        for (n, job) in jobs.iter().enumerate() {
            for r in job.replicas.iter().filter(|r| is_local(r)) {
                // The master reserved `size` bytes at `r.addr` for this put.
                let mut at = r.addr;
                for part in job.parts {
                    if let Err(e) = self.write_own(at, part) {
                        outcome[n] = Err(e);
                        break;
                    }
                    at += part.len() as u64;
                }
            }
            if job.replicas.iter().any(|r| !is_local(r)) {
                staged.push(n);
            }
        }
        if staged.is_empty() {
            return outcome;
        }
        let staging = match self.staging() {
            Ok(s) => s,
            Err(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
        };
        let total: u64 = staged.iter().map(|&n| jobs[n].size).sum();
        let together = staging.borrow(total).ok().filter(|c| c.len() >= total);
        if let Some(chunk) = together {
            let mut ops = Vec::new();
            let mut at = chunk.addr();
            for &n in &staged {
                gather(jobs[n].parts, 0, &chunk, at, jobs[n].size);
                for r in jobs[n].replicas.iter().filter(|r| !is_local(r)) {
                    ops.push(Op {
                        opcode: Opcode::Write,
                        local: at,
                        segment: &r.segment_name,
                        remote: r.addr,
                        len: jobs[n].size,
                        item: n,
                    });
                }
                at += jobs[n].size;
            }
            return transfer::run(&self.engine, &self.hostname, &ops, jobs.len());
        }
        for n in staged {
            outcome[n] = self.write_chunked(&jobs[n], &is_local);
        }
        outcome
    }

    /// One value larger than what the staging buffer has free, in chunks.
    fn write_chunked(&self, job: &Job<'_>, is_local: &dyn Fn(&Replica) -> bool) -> StoreResult<()> {
        let mut done = 0;
        while done < job.size {
            let chunk = self.staging()?.borrow(job.size - done)?;
            let len = chunk.len().min(job.size - done);
            gather(job.parts, done, &chunk, chunk.addr(), len);
            let ops: Vec<Op<'_>> = job
                .replicas
                .iter()
                .filter(|r| !is_local(r))
                .map(|r| Op {
                    opcode: Opcode::Write,
                    local: chunk.addr(),
                    segment: &r.segment_name,
                    remote: r.addr + done,
                    len,
                    item: 0,
                })
                .collect();
            transfer::run(&self.engine, &self.hostname, &ops, 1).pop().unwrap_or(Ok(()))?;
            done += len;
        }
        Ok(())
    }
}

/// Copies bytes `from..from + len` of the concatenated `parts` to `dst` in `chunk`.
fn gather(parts: &[&[u8]], from: u64, chunk: &Chunk<'_>, dst: u64, len: u64) {
    let (mut skip, mut left, mut at) = (from as usize, len as usize, dst);
    for part in parts {
        if left == 0 {
            break;
        }
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        let piece = &part[skip..(skip + left).min(part.len())];
        let inside = chunk.write_at(at, piece);
        debug_assert!(inside, "callers gather into their own chunk");
        at += piece.len() as u64;
        left -= piece.len();
        skip = 0;
    }
}

pub(super) fn check_size(size: u64) -> StoreResult<()> {
    if size == 0 {
        return Err(StoreError::invalid("the value is empty"));
    }
    Ok(())
}
