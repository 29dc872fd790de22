//! Copy and move tasks (Mooncake's `create_copy_task`, `create_move_task`, `query_task`) and
//! their execution.
//!
//! Any client asks the master for a task; the master assigns it to the client owning the
//! source replica (`src/master/state/tasks.rs`). Every client with a segment asks the master
//! for its tasks once a second, on its heartbeat thread (Mooncake's task poll), and executes
//! them on a thread of their own: `ReplicaCopyStart`/`ReplicaMoveStart` reserves the new
//! replicas, one engine batch writes the bytes from its own replica into them (the engine
//! picks memcpy, the same-host path or TCP), and `ReplicaOpEnd` publishes them (a move also
//! drops its source replica) or, when a copy failed, frees them. The outcome is reported with
//! `CompleteTask`: SUCCESS, or FAILED with the code's name as the message. A task that found
//! no space (`NO_AVAILABLE_HANDLE`) is tried again, up to 10 times, 50 ms × attempt apart, as
//! Mooncake's executor does.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::client::{Inner, RealClient, check_key, unexpected};
use super::transfer::{self, Op};
use super::{ErrorCode, StoreError, StoreResult};
use crate::proto::{Request, Response, TaskAssignment, TaskId, TaskInfo, TaskKind};
use crate::transport::Opcode;

/// Tasks fetched per poll.
const FETCH_BATCH: u32 = 32;
/// Mooncake's `DEFAULT_MAX_RETRY_ATTEMPTS`.
const MAX_RETRIES: u32 = 10;

impl RealClient {
    /// Asks for `key` to be copied to the segments named `targets`; the task's id.
    pub fn create_copy_task(&self, key: &str, targets: &[&str]) -> StoreResult<TaskId> {
        let inner = self.inner.live()?;
        let request =
            Request::CreateCopyTask { key: key.to_string(), targets: targets.iter().map(|t| t.to_string()).collect() };
        task_id(inner.master.call(&request).map_err(|e| log_failure("CreateCopyTask", key, e))?)
    }

    /// Asks for `key`'s replica on segment `source` to be moved to segment `target`.
    pub fn create_move_task(&self, key: &str, source: &str, target: &str) -> StoreResult<TaskId> {
        let inner = self.inner.live()?;
        let request =
            Request::CreateMoveTask { key: key.to_string(), source: source.to_string(), target: target.to_string() };
        task_id(inner.master.call(&request).map_err(|e| log_failure("CreateMoveTask", key, e))?)
    }

    /// The state of task `task` (`TASK_NOT_FOUND` for an id the master does not know).
    pub fn query_task(&self, task: TaskId) -> StoreResult<TaskInfo> {
        match self.inner.live()?.master.call(&Request::QueryTask { task })? {
            Response::TaskInfo(info) => Ok(info),
            other => Err(unexpected("QueryTask", &other)),
        }
    }
}

fn log_failure(what: &str, key: &str, e: StoreError) -> StoreError {
    tracing::error!(key, "{what} failed: {e}");
    e
}

fn task_id(response: Response) -> StoreResult<TaskId> {
    match response {
        Response::Task(id) => Ok(id),
        other => Err(unexpected("CreateTask", &other)),
    }
}

/// One poll: fetches this client's pending tasks and executes them on a new thread.
pub(super) fn poll(inner: &Arc<Inner>) {
    if inner.live().is_err() || inner.segments.lock().is_empty() {
        return;
    }
    let tasks = match inner.master.call(&Request::FetchTasks { client: inner.master.client_id(), max: FETCH_BATCH }) {
        Ok(Response::Tasks(tasks)) => tasks,
        Ok(other) => {
            tracing::warn!("task poll: {}", unexpected("FetchTasks", &other));
            return;
        }
        Err(e) => {
            if e.code != ErrorCode::RpcFail {
                tracing::warn!("task poll: {e}");
            }
            return;
        }
    };
    if tasks.is_empty() {
        return;
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new().name("mooncake-store-task".into()).spawn(move || {
        for task in tasks {
            let Some(inner) = weak.upgrade() else { return };
            run_task(&inner, &task);
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start a task thread: {e}");
    }
}

fn run_task(inner: &Inner, task: &TaskAssignment) {
    let mut attempt = 0;
    let outcome = loop {
        match execute(inner, task) {
            Err(e) if e.code == ErrorCode::NoAvailableHandle && attempt < MAX_RETRIES && inner.live().is_ok() => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
            }
            other => break other,
        }
    };
    let (success, message) = match &outcome {
        Ok(()) => (true, "Task completed successfully".to_string()),
        Err(e) => {
            tracing::error!(key = task.key, "task {:032x} failed: {e}", task.id);
            (false, format!("{} (max retries reached: {MAX_RETRIES})", e.code.name()))
        }
    };
    let request = Request::CompleteTask { client: inner.master.client_id(), task: task.id, success, message };
    if let Err(e) = inner.master.call(&request) {
        tracing::warn!("reporting task {:032x}: {e}", task.id);
    }
}

/// Reserves the new replicas, writes them from this client's replica, publishes them.
fn execute(inner: &Inner, task: &TaskAssignment) -> StoreResult<()> {
    check_key(&task.key)?;
    let client = inner.master.client_id();
    let request = match task.kind {
        TaskKind::ReplicaCopy => Request::ReplicaCopyStart {
            client,
            key: task.key.clone(),
            source: task.source.clone(),
            targets: task.targets.clone(),
        },
        TaskKind::ReplicaMove => {
            let Some(target) = task.targets.first() else { return Err(StoreError::invalid("a move without target")) };
            Request::ReplicaMoveStart {
                client,
                key: task.key.clone(),
                source: task.source.clone(),
                target: target.clone(),
            }
        }
    };
    let op = match inner.master.call(&request)? {
        Response::ReplicaOp(op) => op,
        other => return Err(unexpected("ReplicaStart", &other)),
    };
    let copied = if op.source.segment_name != inner.hostname {
        Err(StoreError::new(ErrorCode::InvalidReplica, format!("the source replica is on {}", op.source.segment_name)))
    } else {
        let ops: Vec<Op<'_>> = op
            .targets
            .iter()
            .map(|r| Op {
                opcode: Opcode::Write,
                local: op.source.addr,
                segment: &r.segment_name,
                remote: r.addr,
                len: op.size,
                item: 0,
            })
            .collect();
        transfer::run(&inner.engine, &inner.hostname, &ops, 1).pop().unwrap_or(Ok(()))
    };
    let end = Request::ReplicaOpEnd { client, key: task.key.clone(), op: op.op, revoke: copied.is_err() };
    let ended = inner.master.call(&end);
    copied?;
    match ended? {
        Response::Done => Ok(()),
        other => Err(unexpected("ReplicaOpEnd", &other)),
    }
}
