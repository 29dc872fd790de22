//! The one background tokio runtime.
//!
//! Metadata work (the handshake server, handshake requests, later HTTP/etcd clients) runs on it;
//! the data path does not. It starts when the first engine needs it and stops when the last
//! [`RuntimeGuard`] is dropped, so that a process that destroys all its engines is left with the
//! threads it had before (the tests check this over 1,000 create/destroy cycles).

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};

static SHARED: Mutex<Weak<RuntimeGuard>> = Mutex::new(Weak::new());

/// A reference to the shared runtime; the runtime lives while any guard does.
pub struct RuntimeGuard {
    runtime: Option<Runtime>,
    handle: Handle,
}

/// Returns the shared runtime, starting it if no guard is alive.
pub fn acquire() -> std::io::Result<Arc<RuntimeGuard>> {
    let mut shared = SHARED.lock();
    if let Some(guard) = shared.upgrade() {
        return Ok(guard);
    }
    // One worker is enough for metadata traffic and keeps a 2-core machine free for the data
    // path; blocking work is never spawned on it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .thread_name("mooncake-rt")
        .enable_io()
        .enable_time()
        .build()?;
    let guard = Arc::new(RuntimeGuard { handle: runtime.handle().clone(), runtime: Some(runtime) });
    *shared = Arc::downgrade(&guard);
    Ok(guard)
}

impl RuntimeGuard {
    /// The runtime's handle, for spawning.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `future` to completion from a thread outside the runtime (every C entry point).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        if Handle::try_current().is_ok() {
            // Dropped from inside a runtime task: waiting here would deadlock.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
