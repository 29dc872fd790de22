//! Moving bytes between this client's memory and replicas: a memcpy when the replica is in
//! this process, one engine batch otherwise (the engine picks the same-host path or TCP).

use std::time::Duration;

use super::{ErrorCode, StoreError, StoreResult};
use crate::engine::TaskState;
use crate::engine::TransferEngine;
use crate::engine::{BatchOutcome, TransferRequest};
use crate::transport::Opcode;

/// How long one batch of replica copies may take before its items fail with `TRANSFER_FAIL`.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// One copy between local memory and a replica.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    pub opcode: Opcode,
    /// Local (registered, or owned by this client) address.
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
/// memcpy (`TransferEngine::copy_local`, both ranges checked against registered memory), the
/// others as one engine batch.
pub fn run(engine: &TransferEngine, own_segment: &str, ops: &[Op<'_>], items: usize) -> Vec<StoreResult<()>> {
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
