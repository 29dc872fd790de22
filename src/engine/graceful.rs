//! `enableGracefulShutdown`: on SIGINT or SIGTERM, every engine that asked for it stops taking
//! new work, lets the tasks in flight finish (up to [`DRAIN_BOUND`]), closes its listeners and
//! connections and withdraws its descriptor; then the signal's default action runs, so the
//! process ends with the usual status. The whole stop is bounded by [`SHUTDOWN_BOUND`].
//!
//! One watcher thread (signal-hook's iterator) serves the whole process; it starts with the
//! first registration and lives until the process exits.

use std::sync::Weak;
use std::time::Duration;

use parking_lot::Mutex;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{EngineShared, Error, Result};
use crate::error::Code;

/// Longest time tasks in flight get to finish.
const DRAIN_BOUND: Duration = Duration::from_secs(3);
/// Longest time the engines get to stop (drain included) before the process ends anyway.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

struct Registry {
    engines: Vec<Weak<EngineShared>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

pub(super) fn register(engine: Weak<EngineShared>) -> Result<()> {
    let mut reg = REGISTRY.lock();
    if reg.is_none() {
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|e| Error::new(Code::Context, format!("cannot install SIGINT/SIGTERM handlers: {e}")))?;
        std::thread::Builder::new()
            .name("mc-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    on_signal(sig);
                }
            })
            .map_err(|e| Error::new(Code::Context, format!("cannot start the signal watcher: {e}")))?;
        *reg = Some(Registry { engines: Vec::new() });
    }
    let engines = &mut reg.as_mut().expect("set above").engines;
    engines.retain(|e| e.strong_count() > 0);
    engines.push(engine);
    Ok(())
}

fn on_signal(sig: i32) {
    let engines: Vec<_> = REGISTRY.lock().as_mut().map(|r| std::mem::take(&mut r.engines)).unwrap_or_default();
    tracing::warn!(signal = sig, engines = engines.len(), "signal received: shutting transfer engines down");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new().name("mc-graceful".into()).spawn(move || {
        for e in engines.iter().filter_map(Weak::upgrade) {
            e.stop(Some(DRAIN_BOUND));
        }
        let _ = done_tx.send(());
    });
    if worker.is_ok() && done_rx.recv_timeout(SHUTDOWN_BOUND).is_err() {
        tracing::warn!("engines did not stop within {SHUTDOWN_BOUND:?}; exiting anyway");
    }
    if let Err(e) = signal_hook::low_level::emulate_default_handler(sig) {
        tracing::warn!("cannot run the default action of signal {sig}: {e}");
        std::process::exit(128 + sig);
    }
}
