//! The same-host transport: the target is another process on this kernel, so the initiator
//! copies straight between the two address spaces with `process_vm_writev`/`readv` (one copy,
//! no socket, no thread on the target).
//!
//! - [`export`]: the target side. Offering the path is the target's opt-in: it publishes a
//!   control block (a memfd) with its remotely accessible regions, and unregistering revokes a
//!   region from every peer before the call returns.
//! - [`peer`]: the initiator side. It attaches when the target's descriptor offers the path, the
//!   boot ids match and the kernel permits cross-memory access (same user, no Yama veto, same
//!   pid namespace view, proven by reading the control block back through the target's address
//!   space); otherwise the engine uses TCP. Every range is checked against the target's current
//!   table inside a busy slot, so a revocation waits for it.
//! - [`control`]: the shared layout and its lock-free protocol.
//!
//! Small groups of slices run on the submitting thread (a synchronous 4 KiB write is one system
//! call); large ones are cut into jobs for a few worker threads, at most one per core.

pub mod control;
pub mod export;
pub mod peer;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

pub use export::ShmExport;
pub use peer::{ShmPeer, ShmRoute};

use super::{Error, LinkInfo, Opcode, Route, Slice, Transport};
use crate::metadata::ShmOffer;

/// Groups up to this many bytes run on the submitting thread (a batch of 128 4 KiB blocks is
/// two system calls there; a thread hop would cost more than the copy).
const INLINE_BYTES: u64 = 1 << 20;
/// Slices larger than this are cut, so one large request spreads over the workers.
pub const SLICE_SIZE: u64 = 4 << 20;
/// A job handed to a worker carries about this many bytes (or [`peer::IOVS_PER_CALL`] slices).
const JOB_BYTES: u64 = 1 << 20;

struct Job {
    peer: Arc<ShmPeer>,
    slices: Vec<Slice>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Attachments by (pid, nonce); `None` remembers a refusal.
type PeerCache = HashMap<(u32, u128), Option<Arc<ShmPeer>>>;

/// See the module documentation.
pub struct ShmTransport {
    boot_id: Option<String>,
    /// Attachments by (pid, nonce); `None` remembers a refusal, so TCP is chosen at once.
    peers: Mutex<PeerCache>,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    max_workers: usize,
}

impl Default for ShmTransport {
    fn default() -> Self {
        ShmTransport::new()
    }
}

impl ShmTransport {
    pub fn new() -> ShmTransport {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ShmTransport {
            boot_id: peer::boot_id(),
            peers: Mutex::new(HashMap::new()),
            queue: Arc::new((Mutex::new(Queue::default()), Condvar::new())),
            workers: Mutex::new(Vec::new()),
            max_workers: cores.clamp(1, 4),
        }
    }

    /// The attachment to the target `offer` describes, or `None` when the path is not
    /// permitted (the reason is logged once per target).
    pub fn attach(&self, offer: &ShmOffer) -> Option<Arc<ShmPeer>> {
        // Parsed, not cloned: this runs for every request, which must not allocate.
        let key = (offer.pid, u128::from_str_radix(&offer.nonce, 16).ok()?);
        let mut peers = self.peers.lock();
        if let Some(known) = peers.get(&key) {
            return known.clone().filter(|p| p.usable());
        }
        let attached = match ShmPeer::attach(offer, self.boot_id.as_deref()) {
            Ok(p) => {
                tracing::debug!(pid = offer.pid, "same-host transport attached");
                Some(Arc::new(p))
            }
            Err(e) => {
                tracing::info!(pid = offer.pid, "same-host transport not used for this peer, tcp instead: {e}");
                None
            }
        };
        peers.insert(key, attached.clone());
        attached
    }

    fn start_workers(&self) -> std::io::Result<()> {
        let mut workers = self.workers.lock();
        while workers.len() < self.max_workers {
            let queue = self.queue.clone();
            let name = format!("mc-shm-copy-{}", workers.len());
            workers.push(std::thread::Builder::new().name(name).spawn(move || worker(&queue))?);
        }
        Ok(())
    }
}

fn worker(queue: &(Mutex<Queue>, Condvar)) {
    loop {
        let job = {
            let (lock, cv) = queue;
            let mut q = lock.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break Some(j);
                }
                if q.closed {
                    break None;
                }
                cv.wait(&mut q);
            }
        };
        let Some(job) = job else { return };
        job.peer.run(job.slices);
    }
}

/// Cuts `slices` into calls of one opcode and at most [`peer::IOVS_PER_CALL`] slices and
/// about `max_bytes` each.
fn chunks(slices: Vec<Slice>, max_bytes: u64, mut each: impl FnMut(Vec<Slice>)) {
    let mut current: Vec<Slice> = Vec::new();
    let mut bytes = 0u64;
    let mut opcode: Option<Opcode> = None;
    for s in slices {
        let full = current.len() >= peer::IOVS_PER_CALL || bytes >= max_bytes;
        if !current.is_empty() && (full || opcode != Some(s.opcode)) {
            each(std::mem::take(&mut current));
            bytes = 0;
        }
        opcode = Some(s.opcode);
        bytes += s.len;
        current.push(s);
    }
    if !current.is_empty() {
        each(current);
    }
}

impl Transport for ShmTransport {
    fn name(&self) -> &'static str {
        "shm"
    }

    fn slice_size(&self) -> u64 {
        SLICE_SIZE
    }

    fn submit(&self, route: &Route, slices: Vec<Slice>) -> Result<(), Error> {
        let Route::Shm(ShmRoute(peer)) = route else {
            slices.into_iter().for_each(|s| s.finish(false));
            return Err(Error::WrongRoute("shm", route.clone()));
        };
        let total: u64 = slices.iter().map(|s| s.len).sum();
        if total <= INLINE_BYTES {
            chunks(slices, u64::MAX, |c| peer.run(c));
            return Ok(());
        }
        if let Err(e) = self.start_workers() {
            slices.into_iter().for_each(|s| s.finish(false));
            return Err(Error::Io(e));
        }
        let mut jobs = Vec::new();
        chunks(slices, JOB_BYTES, |c| jobs.push(Job { peer: peer.clone(), slices: c }));
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock();
        if q.closed {
            drop(q);
            jobs.into_iter().for_each(|j| j.slices.into_iter().for_each(|s| s.finish(false)));
            return Err(Error::Closed);
        }
        q.jobs.extend(jobs);
        cv.notify_all();
        Ok(())
    }

    fn links(&self) -> Vec<LinkInfo> {
        use std::sync::atomic::Ordering::Relaxed;
        self.peers
            .lock()
            .values()
            .flatten()
            .map(|p| LinkInfo {
                transport: "shm",
                peer: format!("pid {}", p.offer.pid),
                protocol_version: 1,
                connections: 1,
                requests_completed: p.completed.load(Relaxed),
                requests_failed: p.failed.load(Relaxed),
                bytes: p.bytes.load(Relaxed),
            })
            .collect()
    }

    fn shutdown(&self) {
        let pending: Vec<Job> = {
            let (lock, cv) = &*self.queue;
            let mut q = lock.lock();
            q.closed = true;
            cv.notify_all();
            q.jobs.drain(..).collect()
        };
        for j in pending {
            j.slices.into_iter().for_each(|s| s.finish(false));
        }
        for w in self.workers.lock().drain(..) {
            let _ = w.join();
        }
        // Dropping the attachments releases our slots in the targets' control blocks.
        self.peers.lock().clear();
    }
}
