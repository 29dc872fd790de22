//! Moving bytes between this client's memory and replicas: a memcpy when the replica is in
//! this process, one engine batch otherwise (the engine picks the same-host path or TCP).
//!
//! The local side of an [`Op`] may be any memory of this process, registered or not, as
//! Mooncake's store takes it: the engine's local, same-host and TCP routes move unregistered
//! memory themselves (through the kernel, so an unmapped address fails the copy). Only an RDMA
//! route needs registered memory; with RDMA installed, [`run_with`] moves an unregistered range
//! through the client's staging buffer in chunks.

use std::time::Duration;

use super::staging::Staging;
use super::{ErrorCode, StoreError, StoreResult};
use crate::engine::TaskState;
use crate::engine::TransferEngine;
use crate::engine::{BatchOutcome, TransferRequest};
use crate::transport::Opcode;
use crate::transport::memory::copy_unverified;

/// How long one batch of replica copies may take before its items fail with `TRANSFER_FAIL`.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// One copy between local memory and a replica.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    pub opcode: Opcode,
    /// Local address: registered, owned by this client, or any other memory of this process.
    pub local: u64,
    pub segment: &'a str,
    /// Address in the replica's owner.
    pub remote: u64,
    pub len: u64,
    /// Which caller item the copy belongs to (its outcome is the outcome of its copies).
    pub item: usize,
}

/// Runs `ops` and returns each item's outcome, `items` long: an item fails when any of its
/// copies failed. Copies to this process's own segment are done at once by the engine's local
/// copy (`TransferEngine::copy_local`), the others as one engine batch. Unregistered local
/// memory works on every route but RDMA (see [`run_with`], which handles that one too).
pub fn run(engine: &TransferEngine, own_segment: &str, ops: &[Op<'_>], items: usize) -> Vec<StoreResult<()>> {
    run_with(engine, own_segment, None, ops, items)
}

/// [`run`], with the client's staging buffer for the copies an RDMA route cannot make
/// directly (RDMA installed, a remote replica, a local range not registered with the engine):
/// those go through `staging` in chunks. Without a staging buffer (`local_buffer_size` 0) they
/// fail alone with `INVALID_PARAMS`, as Mooncake's RDMA path refuses unregistered memory.
pub fn run_with(
    engine: &TransferEngine,
    own_segment: &str,
    staging: Option<&Staging>,
    ops: &[Op<'_>],
    items: usize,
) -> Vec<StoreResult<()>> {
    let rdma = engine.transports().contains(&"rdma");
    let needs_staging = |op: &Op<'_>| rdma && op.segment != own_segment && !engine.is_registered(op.local, op.len);
    run_split(engine, own_segment, staging, ops, items, needs_staging)
}

/// [`run_with`] with the choice of staged copies made by `needs_staging`.
fn run_split(
    engine: &TransferEngine,
    own_segment: &str,
    staging: Option<&Staging>,
    ops: &[Op<'_>],
    items: usize,
    needs_staging: impl Fn(&Op<'_>) -> bool,
) -> Vec<StoreResult<()>> {
    let (staged, direct): (Vec<Op<'_>>, Vec<Op<'_>>) = ops.iter().copied().partition(|op| needs_staging(op));
    let mut outcome = run_direct(engine, own_segment, &direct, items);
    for op in &staged {
        let done = match staging {
            Some(staging) => through_staging(engine, own_segment, staging, op),
            None => Err(StoreError::invalid(format!(
                "{} bytes at {:#x} are not registered, which rdma needs, and this client has no local buffer \
                 to copy them through",
                op.len, op.local
            ))),
        };
        if let Err(e) = done
            && outcome[op.item].is_ok()
        {
            outcome[op.item] = Err(e);
        }
    }
    outcome
}

/// One copy through the staging buffer, a chunk at a time: the caller's bytes are copied into
/// the chunk before a write and out of it after a read (through the kernel, so an unmapped
/// caller address fails the copy).
fn through_staging(engine: &TransferEngine, own_segment: &str, staging: &Staging, op: &Op<'_>) -> StoreResult<()> {
    let mut done = 0;
    while done < op.len {
        let chunk = staging.borrow(op.len - done)?;
        let len = chunk.len().min(op.len - done);
        let caller = op.local + done;
        let unmapped = || StoreError::invalid(format!("{len} bytes at {caller:#x} are not mapped"));
        // SAFETY: the chunk is ours for its lifetime; the caller's range is checked by the kernel.
        if op.opcode == Opcode::Write && !unsafe { copy_unverified(caller as usize, chunk.addr() as usize, len) } {
            return Err(unmapped());
        }
        let part = Op { local: chunk.addr(), remote: op.remote + done, len, item: 0, ..*op };
        run_direct(engine, own_segment, &[part], 1).pop().unwrap_or(Ok(()))?;
        // SAFETY: as above.
        if op.opcode == Opcode::Read && !unsafe { copy_unverified(chunk.addr() as usize, caller as usize, len) } {
            return Err(unmapped());
        }
        done += len;
    }
    Ok(())
}

fn run_direct(engine: &TransferEngine, own_segment: &str, ops: &[Op<'_>], items: usize) -> Vec<StoreResult<()>> {
    let mut outcome: Vec<StoreResult<()>> = (0..items).map(|_| Ok(())).collect();
    let mut requests = Vec::with_capacity(ops.len());
    let mut owners = Vec::with_capacity(ops.len());
    for op in ops {
        if op.segment == own_segment {
            if let Err(e) = engine.copy_local(op.opcode, op.local, op.remote, op.len) {
                fail(&mut outcome, op.item, format!("local copy: {}", e.message));
            }
            continue;
        }
        match engine.open_segment(op.segment, false) {
            Ok(target_id) => {
                requests.push(TransferRequest {
                    opcode: op.opcode,
                    source: op.local,
                    target_id,
                    target_offset: op.remote,
                    length: op.len,
                });
                owners.push(op.item);
            }
            Err(e) => fail(&mut outcome, op.item, format!("cannot open segment {:?}: {}", op.segment, e.message)),
        }
    }
    if requests.is_empty() {
        return outcome;
    }
    if let Err(e) = submit_and_wait(engine, &requests, &owners, &mut outcome) {
        for item in owners {
            fail(&mut outcome, item, e.message.clone());
        }
    }
    outcome
}

fn submit_and_wait(
    engine: &TransferEngine,
    requests: &[TransferRequest],
    owners: &[usize],
    outcome: &mut [StoreResult<()>],
) -> StoreResult<()> {
    let batch = engine.allocate_batch(requests.len())?;
    let waited = engine.submit(batch, requests, None).and_then(|()| engine.wait_batch(batch, TRANSFER_TIMEOUT));
    let result = match waited {
        Ok(BatchOutcome::Completed) => Ok(()),
        Ok(BatchOutcome::Failed) => {
            for (task, &item) in owners.iter().enumerate() {
                let done = engine.task_status(batch, task).map(|s| s.status == TaskState::Completed).unwrap_or(false);
                if !done {
                    fail(outcome, item, format!("copy of {} bytes failed", requests[task].length));
                }
            }
            Ok(())
        }
        Ok(BatchOutcome::TimedOut) => {
            Err(StoreError::new(ErrorCode::TransferFail, format!("copies did not finish within {TRANSFER_TIMEOUT:?}")))
        }
        Err(e) => Err(e.into()),
    };
    // The batch is freed once idle, even when the wait gave up.
    let _ = engine.release_batch(batch);
    result
}

fn fail(outcome: &mut [StoreResult<()>], item: usize, message: String) {
    if outcome[item].is_ok() {
        outcome[item] = Err(StoreError::new(ErrorCode::TransferFail, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineOptions;

    /// The staged path (what an RDMA route takes for unregistered memory), forced over TCP:
    /// values larger than the staging buffer move in chunks both ways, guards stay intact,
    /// and without a staging buffer the staged copies fail alone.
    #[test]
    fn staged_copies_move_every_byte_in_chunks_and_fail_alone_without_a_buffer() {
        let target = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
        let init = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
        const LEN: usize = (3 << 20) + 123;
        const GUARD: usize = 4096;
        let mut region = vec![0xEEu8; LEN + 2 * GUARD];
        let base = region.as_mut_ptr() as u64 + GUARD as u64;
        target.register_memory(base, LEN as u64, "cpu:0", true).unwrap();
        let staging = Staging::new(1 << 20).unwrap();
        init.register_memory(staging.addr(), staging.len(), "*", false).unwrap();
        let src: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4093) as u8).collect();
        let name = target.server_name().to_string();
        let write = Op {
            opcode: Opcode::Write,
            local: src.as_ptr() as u64,
            segment: &name,
            remote: base,
            len: LEN as u64,
            item: 0,
        };
        let out = run_split(&init, init.server_name(), Some(&staging), &[write], 1, |_| true);
        assert!(out[0].is_ok(), "{:?}", out[0]);
        assert!(region[GUARD..GUARD + LEN] == src[..]);
        assert!(region[..GUARD].iter().chain(&region[GUARD + LEN..]).all(|&b| b == 0xEE));
        let mut back = vec![0x5Au8; LEN + 2 * GUARD];
        let read = Op { opcode: Opcode::Read, local: back.as_mut_ptr() as u64 + GUARD as u64, ..write };
        let out = run_split(&init, init.server_name(), Some(&staging), &[read], 1, |_| true);
        assert!(out[0].is_ok(), "{:?}", out[0]);
        assert!(back[GUARD..GUARD + LEN] == src[..]);
        assert!(back[..GUARD].iter().chain(&back[GUARD + LEN..]).all(|&b| b == 0x5A));
        // No staging buffer: the staged item fails, the direct one beside it completes.
        let direct = Op { item: 1, len: 4096, ..write };
        let out = run_split(&init, init.server_name(), None, &[write, direct], 2, |op| op.item == 0);
        assert_eq!(out[0].as_ref().unwrap_err().code, ErrorCode::InvalidParams);
        assert!(out[1].is_ok(), "{:?}", out[1]);
        init.unregister_memory(staging.addr()).unwrap();
        target.unregister_memory(base).unwrap();
    }
}
