//! Copy and move tasks (Mooncake's `ClientTaskManager` and its `CopyStart`/`MoveStart`
//! family), and graceful unmounts.
//!
//! **Tasks.** `CreateCopyTask(key, targets)`: no target → `INVALID_PARAMS`; no visible
//! object → `OBJECT_NOT_FOUND`; a target name with no segment mounted → `INVALID_PARAMS`; a
//! target whose segments are all draining → `UNAVAILABLE_IN_CURRENT_STATUS`. The task goes to
//! the client owning a replica picked at random (the source). `CreateMoveTask(key, source,
//! target)`: no object → `OBJECT_NOT_FOUND`; `source == target` → `INVALID_PARAMS`; the
//! target checked as above; no replica on `source` → `INVALID_PARAMS`; it goes to the owner of
//! `source`. More than [`MAX_PENDING`] pending tasks → `TASK_PENDING_LIMIT_EXCEEDED`. A task is
//! PENDING until its client fetches it (`FetchTasks`, every second), PROCESSING until that
//! client reports it (`CompleteTask`: SUCCESS or FAILED with a message). A task pending or
//! processing for longer than [`TASK_TIMEOUT`] fails ("pending timeout", "processing
//! timeout"); the [`MAX_FINISHED`] most recent finished tasks are kept for `QueryTask`, whose
//! unknown ids are `TASK_NOT_FOUND`. All as Mooncake's defaults.
//!
//! **Replica operations.** The executing client asks `ReplicaCopyStart(key, source,
//! targets)`: the key must be visible (`OBJECT_NOT_FOUND`) with no other operation in
//! progress (`OBJECT_HAS_REPLICATION_TASK`) and a replica on `source` (`REPLICA_NOT_FOUND`);
//! a target name without a segment is `SEGMENT_NOT_FOUND`, a draining one
//! `UNAVAILABLE_IN_CURRENT_STATUS`. Space is reserved on every target that holds no replica yet
//! (none left: `NO_AVAILABLE_HANDLE`), and the object gets a read lease so that its source is
//! not freed under the copy. `ReplicaMoveStart` is the same with one target. `ReplicaOpEnd`
//! publishes the new replicas (a move also retires its source replica, freed once no reader
//! holds it); when the object was removed or replaced meanwhile, or a target segment went
//! away, the reserved space is freed and the answer is `OBJECT_NOT_FOUND`. With `revoke` the
//! space is freed. An operation not ended within `put_start_release_timeout` is revoked.
//!
//! **Graceful unmount.** `DrainSegment` marks a segment of the caller as draining: nothing new
//! is placed there, its objects stay readable; its owner unmounts it when the grace period it
//! chose has passed (Mooncake's master schedules that unmount itself; ours leaves it to the
//! owner, and a dead owner's segments go at once anyway).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::{Alloc, Deferred, MasterState};
use crate::proto::{
    ClientId, ErrorCode, Outcome, PutId, Replica, ReplicaOp, SegmentId, TaskAssignment, TaskId, TaskInfo, TaskKind,
    TaskState,
};

/// Mooncake's `DEFAULT_MAX_TOTAL_PENDING_TASKS` (and processing).
pub const MAX_PENDING: usize = 10_000;
/// Mooncake's `DEFAULT_MAX_TOTAL_FINISHED_TASKS`.
pub const MAX_FINISHED: usize = 10_000;
/// Mooncake's `DEFAULT_PENDING_TASK_TIMEOUT_SEC` and `DEFAULT_PROCESSING_TASK_TIMEOUT_SEC`.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct TaskEntry {
    info: TaskInfo,
    assignment: TaskAssignment,
    /// When the task entered its current state.
    since: Instant,
}

/// Space reserved for new replicas of `key`, not yet published.
#[derive(Debug)]
struct ReplicaOpEntry {
    key: String,
    client: ClientId,
    /// The version the replicas copy.
    version: PutId,
    allocs: Vec<Alloc>,
    /// A move: the name whose replica goes once the new one is published.
    drop_source: Option<String>,
    started: Instant,
}

/// Every task, its queues, and the replica operations in progress.
#[derive(Debug, Default)]
pub struct TaskTable {
    tasks: HashMap<TaskId, TaskEntry>,
    pending: HashMap<ClientId, VecDeque<TaskId>>,
    finished: VecDeque<TaskId>,
    ops: HashMap<u64, ReplicaOpEntry>,
    next_op: u64,
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl TaskTable {
    /// Whether a replica operation on `key` is in progress (`ReplicaClear` leaves such a key).
    pub(super) fn has_op(&self, key: &str) -> bool {
        self.ops.values().any(|o| o.key == key)
    }

    fn unfinished(&self) -> usize {
        self.tasks.values().filter(|t| matches!(t.info.state, TaskState::Pending | TaskState::Processing)).count()
    }

    fn finish(&mut self, id: TaskId, state: TaskState, message: &str, now: Instant) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.info.state = state;
            t.info.message = message.to_string();
            t.info.updated_ms = epoch_ms();
            t.since = now;
            self.finished.push_back(id);
        }
        while self.finished.len() > MAX_FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.tasks.remove(&old);
            }
        }
    }
}

impl MasterState {
    /// Whether some segment is called `name`, and whether one of them takes new replicas.
    fn name_state(&self, name: &str) -> (bool, bool) {
        let mut exists = false;
        let mut allocatable = false;
        for (_, s) in self.segments.iter().filter(|(_, s)| s.name == name) {
            exists = true;
            allocatable |= !s.draining;
        }
        (exists, allocatable)
    }

    /// The segment names holding a replica of `key`'s visible version.
    fn replica_names(&self, key: &str) -> Option<Vec<String>> {
        let obj = self.keys.get(key)?.visible.as_ref()?;
        Some(obj.allocs.iter().filter_map(|a| self.segments.locate(a)).map(|(n, _)| n.to_string()).collect())
    }

    fn owner_of_name(&self, name: &str) -> Option<ClientId> {
        self.segments.iter().find(|(_, s)| s.name == name).map(|(_, s)| s.client)
    }

    fn check_target(&self, key: &str, target: &str) -> Outcome<()> {
        match self.name_state(target) {
            (false, _) => {
                tracing::warn!(key, target, "task target segment is not mounted");
                Err(ErrorCode::InvalidParams)
            }
            (true, false) => {
                tracing::warn!(key, target, "task target segment is not allocatable");
                Err(ErrorCode::UnavailableInCurrentStatus)
            }
            _ => Ok(()),
        }
    }

    fn submit_task(&mut self, client: ClientId, assignment: TaskAssignment, now: Instant) -> Outcome<TaskId> {
        if self.tasks.unfinished() >= MAX_PENDING {
            tracing::warn!("cannot submit a task: {MAX_PENDING} tasks are pending already");
            return Err(ErrorCode::TaskPendingLimitExceeded);
        }
        let mut id: TaskId = self.rng.random();
        while id == 0 || self.tasks.tasks.contains_key(&id) {
            id = self.rng.random();
        }
        let ms = epoch_ms();
        let info = TaskInfo {
            id,
            kind: assignment.kind,
            state: TaskState::Pending,
            created_ms: ms,
            updated_ms: ms,
            assigned_client: client,
            message: String::new(),
        };
        let assignment = TaskAssignment { id, ..assignment };
        self.tasks.tasks.insert(id, TaskEntry { info, assignment, since: now });
        self.tasks.pending.entry(client).or_default().push_back(id);
        Ok(id)
    }

    /// `CreateCopyTask` (see the module documentation).
    pub fn create_copy_task(&mut self, key: &str, targets: &[String], now: Instant) -> Outcome<TaskId> {
        if targets.is_empty() {
            tracing::warn!(key, "copy task without targets");
            return Err(ErrorCode::InvalidParams);
        }
        let Some(names) = self.replica_names(key) else { return Err(ErrorCode::ObjectNotFound) };
        for t in targets {
            self.check_target(key, t)?;
        }
        if names.is_empty() {
            tracing::warn!(key, "copy task: the object has no replica left");
            return Err(ErrorCode::InternalError);
        }
        let source = names[self.rng.random_range(0..names.len())].clone();
        let Some(client) = self.owner_of_name(&source) else { return Err(ErrorCode::InternalError) };
        let assignment = TaskAssignment {
            id: 0,
            kind: TaskKind::ReplicaCopy,
            key: key.to_string(),
            source,
            targets: targets.to_vec(),
        };
        self.submit_task(client, assignment, now)
    }

    /// `CreateMoveTask` (see the module documentation).
    pub fn create_move_task(&mut self, key: &str, source: &str, target: &str, now: Instant) -> Outcome<TaskId> {
        let Some(names) = self.replica_names(key) else { return Err(ErrorCode::ObjectNotFound) };
        if source == target {
            tracing::warn!(key, source, "move task: source and target are the same segment");
            return Err(ErrorCode::InvalidParams);
        }
        self.check_target(key, target)?;
        if !names.iter().any(|n| n == source) {
            tracing::warn!(key, source, "move task: no replica on the source segment");
            return Err(ErrorCode::InvalidParams);
        }
        let Some(client) = self.owner_of_name(source) else { return Err(ErrorCode::InternalError) };
        let assignment = TaskAssignment {
            id: 0,
            kind: TaskKind::ReplicaMove,
            key: key.to_string(),
            source: source.to_string(),
            targets: vec![target.to_string()],
        };
        self.submit_task(client, assignment, now)
    }

    pub fn query_task(&self, task: TaskId) -> Outcome<TaskInfo> {
        self.tasks.tasks.get(&task).map(|t| t.info.clone()).ok_or_else(|| {
            tracing::debug!(task = format_args!("{task:032x}"), "query of an unknown task");
            ErrorCode::TaskNotFound
        })
    }

    /// Up to `max` of `client`'s pending tasks, now processing.
    pub fn fetch_tasks(&mut self, client: ClientId, max: u32, now: Instant) -> Vec<TaskAssignment> {
        let mut out = Vec::new();
        let Some(queue) = self.tasks.pending.get_mut(&client) else { return out };
        while out.len() < max as usize {
            let Some(id) = queue.pop_front() else { break };
            let Some(t) = self.tasks.tasks.get_mut(&id) else { continue };
            if t.info.state != TaskState::Pending {
                continue;
            }
            t.info.state = TaskState::Processing;
            t.info.updated_ms = epoch_ms();
            t.since = now;
            out.push(t.assignment.clone());
        }
        out
    }

    /// `client` reports task `task` ended.
    pub fn complete_task(
        &mut self,
        client: ClientId,
        task: TaskId,
        success: bool,
        message: &str,
        now: Instant,
    ) -> Outcome<()> {
        let Some(t) = self.tasks.tasks.get(&task) else { return Err(ErrorCode::TaskNotFound) };
        if t.info.assigned_client != client {
            return Err(ErrorCode::IllegalClient);
        }
        if matches!(t.info.state, TaskState::Success | TaskState::Failed) {
            return Ok(());
        }
        let state = if success { TaskState::Success } else { TaskState::Failed };
        self.tasks.finish(task, state, message, now);
        Ok(())
    }

    /// `ReplicaCopyStart` / `ReplicaMoveStart` (see the module documentation).
    pub fn replica_op_start(
        &mut self,
        client: ClientId,
        key: &str,
        source: &str,
        targets: &[String],
        moving: bool,
        now: Instant,
    ) -> Outcome<ReplicaOp> {
        for t in targets {
            match self.name_state(t) {
                (false, _) => return Err(ErrorCode::SegmentNotFound),
                (true, false) => return Err(ErrorCode::UnavailableInCurrentStatus),
                _ => {}
            }
        }
        let Some(names) = self.replica_names(key) else { return Err(ErrorCode::ObjectNotFound) };
        if self.tasks.ops.values().any(|o| o.key == key) {
            return Err(ErrorCode::ObjectHasReplicationTask);
        }
        let lease = self.policy.lease_ttl;
        let Some(obj) = self.keys.get(key).and_then(|e| e.visible.as_ref()) else {
            return Err(ErrorCode::ObjectNotFound);
        };
        let (size, version) = (obj.size, obj.version);
        let Some(source_replica) = obj
            .allocs
            .iter()
            .filter_map(|a| self.segments.locate(a))
            .find(|(n, _)| *n == source)
            .map(|(n, addr)| Replica { segment_name: n.to_string(), addr })
        else {
            return Err(ErrorCode::ReplicaNotFound);
        };
        let mut allocs: Vec<Alloc> = Vec::new();
        let mut out = Vec::new();
        for t in targets {
            if names.iter().any(|n| n == t) || out.iter().any(|r: &Replica| &r.segment_name == t) {
                continue;
            }
            match self.segments.allocate_on_name(t, size) {
                Some(a) => {
                    if let Some((n, addr)) = self.segments.locate(&a) {
                        out.push(Replica { segment_name: n.to_string(), addr });
                    }
                    allocs.push(a);
                }
                None => {
                    for a in &allocs {
                        self.segments.free(a);
                    }
                    return Err(ErrorCode::NoAvailableHandle);
                }
            }
        }
        if let Some(obj) = self.keys.get_mut(key).and_then(|e| e.visible.as_mut()) {
            obj.lease_until = obj.lease_until.max(now + lease);
            obj.readers = obj.readers.saturating_add(1);
        }
        let op = self.tasks.next_op + 1;
        self.tasks.next_op = op;
        let drop_source = moving.then(|| source.to_string());
        self.tasks
            .ops
            .insert(op, ReplicaOpEntry { key: key.to_string(), client, version, allocs, drop_source, started: now });
        Ok(ReplicaOp { op, size, source: source_replica, targets: out })
    }

    /// `ReplicaOpEnd` (see the module documentation).
    pub fn replica_op_end(&mut self, client: ClientId, key: &str, op: u64, revoke: bool, now: Instant) -> Outcome<()> {
        match self.tasks.ops.get(&op) {
            Some(o) if o.key == key && o.client == client => {}
            Some(o) if o.key == key => return Err(ErrorCode::IllegalClient),
            _ => return Err(ErrorCode::ObjectNotFound),
        }
        let Some(entry) = self.tasks.ops.remove(&op) else { return Err(ErrorCode::ObjectNotFound) };
        self.reads_done(&[(key.to_string(), entry.version)]);
        let segments_alive = entry.allocs.iter().all(|a| self.segments.get(a.segment).is_some());
        let current = self.keys.get(key).and_then(|e| e.visible.as_ref()).is_some_and(|o| o.version == entry.version);
        if revoke || !segments_alive || !current {
            for a in &entry.allocs {
                self.segments.free(a);
            }
            return if revoke { Ok(()) } else { Err(ErrorCode::ObjectNotFound) };
        }
        let mut dropped = Vec::new();
        if let Some(source) = &entry.drop_source {
            let Some(obj) = self.keys.get(key).and_then(|e| e.visible.as_ref()) else {
                return Err(ErrorCode::ObjectNotFound);
            };
            dropped = obj
                .allocs
                .iter()
                .copied()
                .filter(|a| self.segments.locate(a).is_some_and(|(n, _)| n == source))
                .collect();
        }
        let Some(obj) = self.keys.get_mut(key).and_then(|e| e.visible.as_mut()) else {
            return Err(ErrorCode::ObjectNotFound);
        };
        obj.allocs.extend(entry.allocs.iter().copied());
        obj.allocs.retain(|a| !dropped.contains(a));
        let (leased, until) = (obj.leased(now), obj.lease_until);
        for a in dropped {
            if leased {
                // A reader may still be copying from it: freed when its lease ends.
                self.deferred.push(Deferred { alloc: a, until, read_lease: true, version: 0 });
            } else {
                self.segments.free(&a);
            }
        }
        Ok(())
    }

    /// `DrainSegment`: `client`'s segment takes nothing new.
    pub fn drain_segment(&mut self, client: ClientId, segment: SegmentId) -> Outcome<()> {
        match self.segments.get_mut(segment) {
            Some(s) if s.client == client => {
                s.draining = true;
                Ok(())
            }
            Some(_) => Err(ErrorCode::InvalidParams),
            None => Err(ErrorCode::SegmentNotFound),
        }
    }

    /// Fails tasks that waited or ran too long and revokes abandoned replica operations.
    pub(super) fn tick_tasks(&mut self, now: Instant) {
        let expired: Vec<(TaskId, &'static str)> = self
            .tasks
            .tasks
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.since) > TASK_TIMEOUT)
            .filter_map(|(&id, t)| match t.info.state {
                TaskState::Pending => Some((id, "pending timeout")),
                TaskState::Processing => Some((id, "processing timeout")),
                _ => None,
            })
            .collect();
        for (id, why) in expired {
            tracing::warn!(task = format_args!("{id:032x}"), "task failed: {why}");
            self.tasks.finish(id, TaskState::Failed, why, now);
        }
        let release = self.policy.put_release_timeout;
        let stale: Vec<u64> =
            self.tasks.ops.iter().filter(|(_, o)| now >= o.started + release).map(|(&id, _)| id).collect();
        for id in stale {
            if let Some(o) = self.tasks.ops.remove(&id) {
                tracing::warn!(key = o.key, "revoking a replica operation that was never ended");
                for a in &o.allocs {
                    self.segments.free(a);
                }
            }
        }
    }
}
