//! Batches and the status of their tasks.
//!
//! A batch has a fixed capacity; submissions append tasks until it is full. Each task counts
//! its outstanding slices with atomics, so transports report completions and callers poll
//! status without taking a lock. A batch with a pending notification sends it once every task
//! submitted to it has ended, if all of them completed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::TransferRequest;
use super::id_map::IdMap;
use crate::transport::{CompletionSink, Slice};

/// The state of one task. (The C ABI gives each Mooncake's `STATUS_*` number.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// In flight: some of its slices have not ended.
    Waiting,
    /// Every slice ended and none failed.
    Completed,
    /// Every slice ended and at least one failed.
    Failed,
}

#[derive(Default)]
struct Task {
    /// Slices not yet ended; the task has ended when this reaches 0.
    outstanding: AtomicU64,
    transferred: AtomicU64,
    failed: AtomicBool,
    ended: AtomicBool,
}

/// The status of one task, as `getTransferStatus` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskStatus {
    pub status: TaskState,
    pub transferred_bytes: u64,
}

/// A notification to send when a batch has completed.
#[derive(Debug, Clone)]
pub struct PendingNotify {
    /// The segment of the batch's first entry.
    pub segment: i32,
    /// The segment's handshake address, resolved at submission (so that completions queue
    /// their notifications at once and in order); `None`: resolved at completion.
    pub address: Option<(String, u16)>,
    pub name: String,
    pub msg: String,
}

/// Called when a batch's pending notification is due.
pub trait NotifySender: Send + Sync {
    fn send_batch_notify(&self, notify: PendingNotify);
}

/// One batch.
pub struct Batch {
    pub id: u64,
    tasks: Box<[Task]>,
    /// Serialises submissions to this batch.
    reserving: Mutex<()>,
    /// Tasks reserved by submissions so far (published after their counters are set).
    submitted: AtomicUsize,
    /// Tasks submitted but not ended. Raised only under the `notify` lock, and checked under
    /// it before a notification is taken, so a concurrent submission cannot be notified early.
    in_flight: AtomicUsize,
    any_failed: AtomicBool,
    notify: Mutex<Option<PendingNotify>>,
    notify_sender: Arc<dyn NotifySender>,
    /// Waiters of [`Batch::wait_idle`] park here until the last task in flight ends.
    idle_lock: Mutex<()>,
    idle: Condvar,
}

/// How a waited-for batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every task submitted so far completed.
    Completed,
    /// Every task ended, and at least one failed.
    Failed,
    /// Tasks were still in flight when the wait gave up.
    TimedOut,
}

/// Spinning this long before parking keeps small transfers free of wake-up latency (a loopback
/// round trip or a local copy ends within it, and the waiter never sleeps) without burning a
/// core on large ones: past it the waiter parks on `idle` until the last completion wakes it
/// (`tests/sync_wait_cpu.rs` checks that a 500 ms wait uses well under half a core).
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// Why a submission was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ReserveError {
    Full { capacity: usize, submitted: usize, asked: usize },
}

impl Batch {
    fn new(id: u64, capacity: usize, notify_sender: Arc<dyn NotifySender>) -> Option<Batch> {
        let mut tasks = Vec::new();
        tasks.try_reserve_exact(capacity).ok()?;
        tasks.resize_with(capacity, Task::default);
        Some(Batch {
            id,
            tasks: tasks.into_boxed_slice(),
            reserving: Mutex::new(()),
            submitted: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            any_failed: AtomicBool::new(false),
            notify: Mutex::new(None),
            notify_sender,
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.tasks.len()
    }

    /// Reserves `count` task slots and sets each one's slice count (`slices[i]`, 0 for a request
    /// that completes at once). Returns the index of the first task. Counting happens before any
    /// slice runs, so a fast completion cannot end the batch early.
    pub fn reserve(&self, slices: &[u64], notify: Option<PendingNotify>) -> Result<usize, ReserveError> {
        let reserving = self.reserving.lock();
        let start = self.submitted.load(Ordering::Acquire);
        if slices.len() > self.capacity() - start {
            return Err(ReserveError::Full { capacity: self.capacity(), submitted: start, asked: slices.len() });
        }
        let live = slices.iter().filter(|&&n| n > 0).count();
        {
            let mut pending = self.notify.lock();
            self.in_flight.fetch_add(live, Ordering::AcqRel);
            if notify.is_some() {
                *pending = notify;
            }
        }
        for (i, &n) in slices.iter().enumerate() {
            let task = &self.tasks[start + i];
            task.outstanding.store(n, Ordering::Release);
            task.ended.store(n == 0, Ordering::Release);
        }
        self.submitted.store(start + slices.len(), Ordering::Release);
        // Not under `reserving`: a notification whose address is still unknown looks it up
        // (metadata I/O), and no lock is held across I/O.
        drop(reserving);
        if live == 0 {
            self.maybe_notify();
        }
        Ok(start)
    }

    /// Status of task `index`, or `None` when no such task was submitted.
    pub fn status(&self, index: usize) -> Option<TaskStatus> {
        if index >= self.submitted.load(Ordering::Acquire) {
            return None;
        }
        let t = &self.tasks[index];
        let status = if !t.ended.load(Ordering::Acquire) {
            TaskState::Waiting
        } else if t.failed.load(Ordering::Acquire) {
            TaskState::Failed
        } else {
            TaskState::Completed
        };
        Some(TaskStatus { status, transferred_bytes: t.transferred.load(Ordering::Acquire) })
    }

    /// True while any submitted task has not ended.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// True when the batch may be freed: nothing in flight, or every submitted task has ended
    /// and no submission is under way. The second case matters because the last completion
    /// marks its task ended a moment before it lowers `in_flight` (a worker preempted in
    /// between makes the moment long), and a caller that polled every task to its end must be
    /// able to free the batch then, as with Mooncake. Slices hold their batch by `Arc`, so
    /// that completion finishes safely after the free.
    pub fn settled(&self) -> bool {
        if !self.busy() {
            return true;
        }
        let Some(_no_submission) = self.reserving.try_lock() else { return false };
        let submitted = self.submitted.load(Ordering::Acquire);
        self.tasks[..submitted].iter().all(|t| t.ended.load(Ordering::Acquire))
    }

    /// Waits until no task is in flight (spinning briefly, then parked), at most `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> BatchOutcome {
        let start = Instant::now();
        while self.busy() && start.elapsed() < SPIN_BEFORE_PARK.min(timeout) {
            std::hint::spin_loop();
        }
        if self.busy() {
            let deadline = start + timeout;
            let mut guard = self.idle_lock.lock();
            while self.busy() {
                if self.idle.wait_until(&mut guard, deadline).timed_out() {
                    break;
                }
            }
        }
        match (self.busy(), self.any_failed.load(Ordering::Acquire)) {
            (true, _) => BatchOutcome::TimedOut,
            (false, true) => BatchOutcome::Failed,
            (false, false) => BatchOutcome::Completed,
        }
    }

    fn wake_waiters(&self) {
        // Taking the lock orders this after a waiter's busy() check: no wake-up is lost.
        drop(self.idle_lock.lock());
        self.idle.notify_all();
    }

    fn maybe_notify(&self) {
        let notify = {
            let mut pending = self.notify.lock();
            if self.in_flight.load(Ordering::Acquire) != 0 {
                return;
            }
            pending.take()
        };
        let Some(notify) = notify else { return };
        if self.any_failed.load(Ordering::Acquire) {
            tracing::warn!(batch = self.id, "batch had failed tasks; its notification is not sent");
            return;
        }
        self.notify_sender.send_batch_notify(notify);
    }
}

impl CompletionSink for Batch {
    fn slice_finished(&self, task: usize, bytes: u64, ok: bool) {
        let t = &self.tasks[task];
        t.transferred.fetch_add(bytes, Ordering::AcqRel);
        if !ok {
            t.failed.store(true, Ordering::Release);
            self.any_failed.store(true, Ordering::Release);
        }
        if t.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            t.ended.store(true, Ordering::Release);
            if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.wake_waiters();
                self.maybe_notify();
            }
        }
    }
}

/// Cuts task `task`'s request into slices of at most `slice_size` bytes, in order, appended to
/// `out` (nothing for an empty request). `TransferEngine::submit` sizes `out` for all of a
/// route's slices first, so this allocates nothing; public for the benchmarks. A `slice_size`
/// of 0 is taken as 1, so the loop always ends.
pub fn cut_task(
    req: &TransferRequest,
    slice_size: u64,
    sink: &Arc<dyn CompletionSink>,
    task: usize,
    out: &mut Vec<Slice>,
) {
    let slice_size = slice_size.max(1);
    let mut offset = 0u64;
    while offset < req.length {
        let len = (req.length - offset).min(slice_size);
        out.push(Slice {
            opcode: req.opcode,
            local: (req.source + offset) as usize,
            verified: true,
            remote: req.target_offset + offset,
            len,
            sink: sink.clone(),
            task,
        });
        offset += len;
    }
}

/// Every live batch of one engine, by id.
pub struct BatchTable {
    batches: RwLock<IdMap<u64, Arc<Batch>>>,
    /// Batches released while busy: freed by the next `allocate` that finds them idle.
    released: Mutex<Vec<u64>>,
    next_id: AtomicU64,
    notify_sender: Arc<dyn NotifySender>,
}

impl BatchTable {
    pub fn new(notify_sender: Arc<dyn NotifySender>) -> BatchTable {
        BatchTable {
            batches: RwLock::new(IdMap::default()),
            released: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            notify_sender,
        }
    }

    /// Allocates a batch of `capacity` tasks; `None` when that much memory is not available.
    pub fn allocate(&self, capacity: usize) -> Option<u64> {
        self.sweep_released();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let batch = Batch::new(id, capacity, self.notify_sender.clone())?;
        self.batches.write().insert(id, Arc::new(batch));
        Some(id)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Batch>> {
        self.batches.read().get(&id).cloned()
    }

    /// Runs `f` on batch `id` under the table's read lock, without cloning its `Arc`: the
    /// status poll's path.
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&Batch) -> R) -> Option<R> {
        self.batches.read().get(&id).map(|b| f(b))
    }

    /// Frees a batch; `Err(true)` while tasks are in flight, `Err(false)` for an unknown id.
    pub fn free(&self, id: u64) -> Result<(), bool> {
        let mut map = self.batches.write();
        match map.get(&id) {
            None => Err(false),
            Some(b) if !b.settled() => Err(true),
            Some(_) => {
                map.remove(&id);
                Ok(())
            }
        }
    }

    /// Frees a batch now when it is idle, else as soon as an `allocate` finds it idle: for
    /// callers that gave up waiting (a sync transfer past its timeout) and never poll again.
    /// Returns false for an unknown id.
    pub fn release(&self, id: u64) -> bool {
        match self.free(id) {
            Ok(()) => true,
            Err(true) => {
                self.released.lock().push(id);
                true
            }
            Err(false) => false,
        }
    }

    fn sweep_released(&self) {
        let mut released = self.released.lock();
        if released.is_empty() {
            return;
        }
        released.retain(|&id| self.free(id) == Err(true));
    }

    /// Waits until no batch has a task in flight, at most `bound`; true when all are idle.
    pub fn wait_all_idle(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let batches: Vec<Arc<Batch>> = self.batches.read().values().cloned().collect();
        batches
            .iter()
            .all(|b| b.wait_idle(deadline.saturating_duration_since(Instant::now())) != BatchOutcome::TimedOut)
    }

    pub fn len(&self) -> usize {
        self.batches.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Mutex<Vec<PendingNotify>>);
    impl NotifySender for Recorder {
        fn send_batch_notify(&self, n: PendingNotify) {
            self.0.lock().push(n);
        }
    }

    fn batch(capacity: usize) -> (Arc<Batch>, Arc<Recorder>) {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        (Arc::new(Batch::new(1, capacity, rec.clone()).unwrap()), rec)
    }

    fn notify() -> Option<PendingNotify> {
        Some(PendingNotify { segment: 1, address: None, name: "n".into(), msg: "m".into() })
    }

    #[test]
    fn a_task_is_cut_into_ordered_slices_that_cover_it() {
        let (b, _) = batch(1);
        let sink: Arc<dyn CompletionSink> = b;
        let req = TransferRequest {
            opcode: crate::transport::Opcode::Write,
            source: 0x1000,
            target_id: 1,
            target_offset: 0x9000,
            length: 2500,
        };
        let mut out = Vec::new();
        cut_task(&req, 1000, &sink, 7, &mut out);
        let cut: Vec<_> = out.iter().map(|s| (s.local, s.remote, s.len, s.task)).collect();
        assert_eq!(
            cut,
            vec![
                (0x1000, 0x9000, 1000, 7),
                (0x1000 + 1000, 0x9000 + 1000, 1000, 7),
                (0x1000 + 2000, 0x9000 + 2000, 500, 7)
            ]
        );
        out.clear();
        cut_task(&TransferRequest { length: 0, ..req }, 1000, &sink, 0, &mut out);
        assert!(out.is_empty());
        cut_task(&TransferRequest { length: 3, ..req }, 0, &sink, 0, &mut out);
        assert_eq!(out.len(), 3, "a slice size of 0 is taken as 1");
    }

    #[test]
    fn capacity_counts_over_all_submits() {
        let (b, _) = batch(3);
        assert_eq!(b.reserve(&[1, 1], None), Ok(0));
        assert!(b.reserve(&[1, 1], None).is_err());
        assert_eq!(b.reserve(&[1], None), Ok(2));
    }

    #[test]
    fn task_ends_after_its_last_slice_and_counts_bytes() {
        let (b, _) = batch(1);
        b.reserve(&[2], None).unwrap();
        b.slice_finished(0, 10, true);
        assert_eq!(b.status(0).unwrap().status, TaskState::Waiting);
        assert!(b.busy());
        b.slice_finished(0, 5, true);
        assert_eq!(b.status(0).unwrap(), TaskStatus { status: TaskState::Completed, transferred_bytes: 15 });
        assert!(!b.busy());
        assert!(b.status(1).is_none());
    }

    #[test]
    fn failure_waits_for_the_other_slices() {
        let (b, _) = batch(1);
        b.reserve(&[2], None).unwrap();
        b.slice_finished(0, 0, false);
        assert_eq!(b.status(0).unwrap().status, TaskState::Waiting);
        b.slice_finished(0, 7, true);
        assert_eq!(b.status(0).unwrap(), TaskStatus { status: TaskState::Failed, transferred_bytes: 7 });
    }

    #[test]
    fn notify_is_sent_once_when_all_complete() {
        let (b, rec) = batch(2);
        b.reserve(&[1, 1], notify()).unwrap();
        b.slice_finished(0, 1, true);
        assert!(rec.0.lock().is_empty());
        b.slice_finished(1, 1, true);
        assert_eq!(rec.0.lock().len(), 1);
    }

    #[test]
    fn notify_is_dropped_when_a_task_failed() {
        let (b, rec) = batch(1);
        b.reserve(&[1], notify()).unwrap();
        b.slice_finished(0, 0, false);
        assert!(rec.0.lock().is_empty());
    }

    #[test]
    fn zero_length_tasks_complete_at_once() {
        let (b, rec) = batch(1);
        b.reserve(&[0], notify()).unwrap();
        assert_eq!(b.status(0).unwrap().status, TaskState::Completed);
        assert_eq!(rec.0.lock().len(), 1);
    }

    #[test]
    fn wait_idle_reports_how_the_batch_ended() {
        let (b, _) = batch(3);
        b.reserve(&[1], None).unwrap();
        assert_eq!(b.wait_idle(Duration::from_millis(20)), BatchOutcome::TimedOut);
        let b2 = b.clone();
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            b2.slice_finished(0, 1, true);
        });
        assert_eq!(b.wait_idle(Duration::from_secs(10)), BatchOutcome::Completed);
        finisher.join().unwrap();
        b.reserve(&[1], None).unwrap();
        b.slice_finished(1, 0, false);
        assert_eq!(b.wait_idle(Duration::from_secs(10)), BatchOutcome::Failed);
    }

    #[test]
    fn a_released_busy_batch_is_freed_once_idle() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let t = BatchTable::new(rec);
        let id = t.allocate(1).unwrap();
        t.get(id).unwrap().reserve(&[1], None).unwrap();
        assert!(t.release(id));
        t.allocate(1).unwrap();
        assert!(t.get(id).is_some(), "still busy: kept");
        t.get(id).unwrap().slice_finished(0, 1, true);
        t.allocate(1).unwrap();
        assert!(t.get(id).is_none(), "idle: freed by the next allocate");
        assert!(!t.release(424242));
    }

    #[test]
    fn free_refuses_busy_batches() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let t = BatchTable::new(rec);
        let id = t.allocate(1).unwrap();
        t.get(id).unwrap().reserve(&[1], None).unwrap();
        assert_eq!(t.free(id), Err(true));
        t.get(id).unwrap().slice_finished(0, 1, true);
        assert_eq!(t.free(id), Ok(()));
        assert_eq!(t.free(id), Err(false));
    }

    /// Found by CI: a poller saw every task ended and free said "tasks in flight", because
    /// the last completion had marked its task ended but not yet lowered `in_flight`.
    #[test]
    fn free_accepts_a_batch_whose_tasks_all_ended_before_the_count_drops() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let t = BatchTable::new(rec);
        let id = t.allocate(2).unwrap();
        let b = t.get(id).unwrap();
        b.reserve(&[1, 1], None).unwrap();
        // the moment inside slice_finished: task 0 done, task 1 marked ended, count not lowered
        b.slice_finished(0, 1, true);
        b.tasks[1].ended.store(true, Ordering::Release);
        assert!(b.busy());
        assert_eq!(b.status(1).unwrap().status, TaskState::Completed);
        assert_eq!(t.free(id), Ok(()));
        // a task that has not ended still makes it busy
        let id = t.allocate(2).unwrap();
        let b = t.get(id).unwrap();
        b.reserve(&[1, 1], None).unwrap();
        b.slice_finished(0, 1, true);
        assert_eq!(t.free(id), Err(true));
    }
}
