//! Keeping this engine published in a metadata service (HTTP, etcd, redis).
//!
//! Every `MOONCAKE_METADATA_REFRESH_MS` a thread checks that the service still holds the
//! engine's `rpc_meta` and segment keys, and re-publishes both when they are gone (an in-memory
//! HTTP server that restarted) or when an earlier publication failed (the service was down).
//! The engine keeps working in between; peers see it again as soon as the service is back.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::EngineShared;

/// The refresh thread; stopped (and joined) by [`Publisher::stop`] or on drop.
pub(super) struct Publisher {
    stop: std::sync::Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    pub fn start(engine: Weak<EngineShared>, interval: Duration) -> std::io::Result<Publisher> {
        let stop = std::sync::Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("mc-metadata".into()).spawn(move || {
            loop {
                {
                    let (lock, cv) = &*flag;
                    let mut stopped = lock.lock();
                    if !*stopped {
                        cv.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                let Some(engine) = engine.upgrade() else { return };
                if engine.stopped.load(Ordering::Acquire) {
                    return;
                }
                engine.refresh_publication();
            }
        })?;
        Ok(Publisher { stop, thread: Some(thread) })
    }

    pub fn stop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock() = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}
