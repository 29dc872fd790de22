//! The local transport: the target segment is this engine, so a transfer is one memcpy.
//!
//! Small copies run inline in `submit` (no thread hop adds latency); large ones go to one worker
//! thread, so that `submitTransfer` stays asynchronous for a multi-GiB request. The target range
//! is leased from the engine's regions for the length of the copy, exactly as an incoming TCP
//! request would be, so local and remote access follow one rule.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::memory::{copy_bytes, copy_unverified};
use super::{Error, LinkInfo, Opcode, Route, Slice, TargetMemory, Transport};

/// Copies up to this size run on the submitting thread.
const INLINE_COPY_MAX: u64 = 256 * 1024;

struct Queue {
    slices: VecDeque<Slice>,
    closed: bool,
}

/// See the module documentation.
pub struct LocalTransport {
    memory: Arc<dyn TargetMemory>,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl LocalTransport {
    pub fn new(memory: Arc<dyn TargetMemory>) -> LocalTransport {
        LocalTransport {
            memory,
            queue: Arc::new((Mutex::new(Queue { slices: VecDeque::new(), closed: false }), Condvar::new())),
            worker: Mutex::new(None),
        }
    }

    fn start_worker(&self) -> std::io::Result<()> {
        let mut worker = self.worker.lock();
        if worker.is_some() {
            return Ok(());
        }
        let queue = self.queue.clone();
        let memory = self.memory.clone();
        *worker = Some(std::thread::Builder::new().name("mc-local-copy".into()).spawn(move || {
            loop {
                let slice = {
                    let (lock, cv) = &*queue;
                    let mut q = lock.lock();
                    loop {
                        if let Some(s) = q.slices.pop_front() {
                            break Some(s);
                        }
                        if q.closed {
                            break None;
                        }
                        cv.wait(&mut q);
                    }
                };
                let Some(slice) = slice else { return };
                let ok = copy_one(&*memory, &slice);
                slice.finish(ok);
            }
        })?);
        Ok(())
    }
}

impl LocalTransport {
    /// One copy on the caller's thread, at once (no slice, no batch), for callers that wait
    /// for it anyway: the store's replicas in this process. `local` may be registered or not
    /// (as for a submitted request); false when the target range is not inside one registered
    /// region, or when an unregistered `local` is not mapped.
    pub fn copy_now(&self, opcode: Opcode, local: usize, remote: u64, len: u64) -> bool {
        copy_leased(&*self.memory, opcode, local, remote, len)
    }
}

/// Performs one slice's copy; false when the target range is not (or no longer) registered,
/// or an unregistered local range is not mapped.
fn copy_one(memory: &dyn TargetMemory, slice: &Slice) -> bool {
    copy_leased(memory, slice.opcode, slice.local, slice.remote, slice.len)
}

/// The copy of `copy_one` and `copy_now`: the target range is leased for its duration.
fn copy_leased(memory: &dyn TargetMemory, opcode: Opcode, local: usize, remote: u64, len: u64) -> bool {
    let Some(_lease) = memory.lease(remote, len) else {
        tracing::warn!(
            addr = format_args!("{remote:#x}"),
            len,
            "local transfer refused: target range is not inside one registered region"
        );
        return false;
    };
    let (src, dst) = match opcode {
        Opcode::Write => (local, remote as usize),
        Opcode::Read => (remote as usize, local),
    };
    if memory.vouches_for(local as u64, len) {
        // SAFETY: the local range lies in a registered region, the target range is leased
        // above, so both stay valid until the copy is done.
        unsafe { copy_bytes(src, dst, len) };
        return true;
    }
    // A local buffer that was never registered (Mooncake's TCP path accepts one): the kernel
    // copies it, so an unmapped address fails this slice instead of the process.
    // SAFETY: the target range is leased above; the local one is only the caller's promise,
    // which `copy_unverified` checks through the kernel.
    unsafe { copy_unverified(src, dst, len) }
}

impl Transport for LocalTransport {
    fn name(&self) -> &'static str {
        "local"
    }

    fn slice_size(&self) -> u64 {
        u64::MAX
    }

    fn submit(&self, route: &Route, slices: Vec<Slice>) -> Result<(), Error> {
        if *route != Route::Local {
            slices.into_iter().for_each(|s| s.finish(false));
            return Err(Error::WrongRoute("local", route.clone()));
        }
        let mut deferred = Vec::new();
        for slice in slices {
            if slice.len <= INLINE_COPY_MAX {
                let ok = copy_one(&*self.memory, &slice);
                slice.finish(ok);
            } else {
                deferred.push(slice);
            }
        }
        if deferred.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.start_worker() {
            for s in deferred {
                s.finish(false);
            }
            return Err(Error::Io(e));
        }
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock();
        if q.closed {
            drop(q);
            for s in deferred {
                s.finish(false);
            }
            return Err(Error::Closed);
        }
        q.slices.extend(deferred);
        cv.notify_one();
        Ok(())
    }

    fn links(&self) -> Vec<LinkInfo> {
        Vec::new()
    }

    fn shutdown(&self) {
        let pending: Vec<Slice> = {
            let (lock, cv) = &*self.queue;
            let mut q = lock.lock();
            q.closed = true;
            cv.notify_all();
            q.slices.drain(..).collect()
        };
        for s in pending {
            s.finish(false);
        }
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }
}
