//! `mooncake-bench`: Mooncake's `transfer_engine_bench`, rebuilt over this crate.
//!
//! Same flags, defaults and semantics as Mooncake's bench (see [`flags`]), so the two can be
//! mixed: our target with Mooncake's initiator, and Mooncake's target with ours.
//!
//! - **target** ([`target`]): registers one `--buffer_size` buffer per NUMA node, prints
//!   `listening on HOST:PORT`, serves until SIGINT/SIGTERM, then exits 0.
//! - **initiator** ([`initiator`]): opens `--segment_id`, takes the remote base of thread `t`
//!   from `buffers[t % local buffers]` of the target's descriptor, and runs `--threads`
//!   threads; each allocates a batch, submits `--batch_size` blocks of `--block_size` (block
//!   `i` of thread `t` at offset `block_size * (i * threads + t)` on both sides), polls every
//!   task until it has ended, frees the batch, and repeats for `--duration` seconds. Then it
//!   prints Mooncake's `Test completed: …` line, GB/s (1e9 bytes), blocks/s and batch latency
//!   percentiles ([`report`]), or one JSON object with `--json`.
//!
//! Exit status: 0 when every task completed (and `--verify` matched), 1 when a task failed,
//! verification failed or setup failed, 2 for a bad command line.

pub mod buffer;
pub mod flags;
pub mod initiator;
pub mod report;
pub mod store;
pub mod target;

pub use flags::Flags;

use crate::config::SameHost;
use crate::engine::{EngineOptions, TransferEngine};
use crate::metadata::naming;
use buffer::Buffer;

/// Mooncake's default RPC port in a server name without one.
const DEFAULT_RPC_PORT: u16 = 12001;

/// Why the bench stopped before (or instead of) reporting.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad command line (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Engine, memory or segment setup failed (exit 1).
    #[error("{0}")]
    Setup(String),
}

impl BenchError {
    pub fn usage(msg: String) -> BenchError {
        BenchError::Usage(msg)
    }

    pub fn setup(msg: String) -> BenchError {
        BenchError::Setup(msg)
    }

    fn exit_code(&self) -> i32 {
        match self {
            BenchError::Usage(_) => 2,
            BenchError::Setup(_) => 1,
        }
    }
}

/// Runs the bench with a command line (`args[0]` is the program name) and returns the exit
/// status; `main` passes it to `std::process::exit`.
pub fn main_with_args<I: IntoIterator<Item = String>>(args: I) -> i32 {
    let args: Vec<String> = args.into_iter().collect();
    let name = args.first().cloned().unwrap_or_else(|| "mooncake-bench".into());
    if args.get(1).map(String::as_str) == Some("store") {
        return store::main(args[1..].to_vec());
    }
    let mut flags = match Flags::parse_args(args) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match run(&mut flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e}");
            e.exit_code()
        }
    }
}

/// Checks `flags` and runs the selected mode; `Ok` carries the exit status.
pub fn run(flags: &mut Flags) -> Result<i32, BenchError> {
    if let Some(warning) = flags.check()? {
        eprintln!("mooncake-bench: warning: {warning}");
    }
    match flags.mode.as_str() {
        "target" => target::run(flags).map(|()| 0),
        _ => initiator::run(flags).map(|r| {
            if r.errors == 0 && r.stopped_threads == 0 && r.verify.as_ref().is_none_or(|v| v.ok) { 0 } else { 1 }
        }),
    }
}

/// Creates the engine as Mooncake's bench does: `init(metadata_server, local_server_name,
/// host, port)`, then installs `--protocol` unless `--auto_discovery` installed transports.
pub(crate) fn start_engine(flags: &Flags) -> Result<TransferEngine, BenchError> {
    let (host, port) = naming::split_host_port(&flags.local_server_name, DEFAULT_RPC_PORT);
    let mut config = crate::config::Config::from_env();
    // `shm` and `auto` ride on an engine with tcp installed: the same-host path is chosen per
    // peer from its descriptor, and `auto` falls back to tcp.
    let install = match flags.protocol.as_str() {
        "tcp" => {
            config.same_host = SameHost::Off;
            "tcp"
        }
        "shm" => {
            config.same_host = SameHost::Require;
            "tcp"
        }
        "auto" => {
            config.same_host = SameHost::Auto;
            "tcp"
        }
        other => other,
    };
    let engine = TransferEngine::with_config(
        EngineOptions {
            metadata: flags.metadata_server.clone(),
            local_server_name: flags.local_server_name.clone(),
            ip_or_host_name: host,
            rpc_port: port.into(),
            auto_discover: flags.auto_discovery,
        },
        config,
    )
    .map_err(|e| BenchError::setup(format!("cannot start the transfer engine: {e}")))?;
    if !flags.auto_discovery {
        engine.install_transport(install).map_err(|e| {
            BenchError::setup(format!("--protocol={}: {e}; use --protocol=tcp, shm or auto", flags.protocol))
        })?;
    }
    Ok(engine)
}

/// The bench's buffers: one per NUMA node, each registered with location `cpu:<node>`.
pub(crate) struct Memory {
    buffers: Vec<Buffer>,
}

impl Memory {
    /// Allocates and registers the buffers in node order (remotely accessible, as Mooncake's
    /// `registerLocalMemory` does by default).
    pub(crate) fn register(engine: &TransferEngine, size: u64) -> Result<Memory, BenchError> {
        let mut buffers = Vec::new();
        for node in 0..buffer::numa_nodes() {
            let b = Buffer::new(size)
                .map_err(|e| BenchError::setup(format!("cannot allocate buffer {node} of {size} bytes: {e}")))?;
            engine
                .register_memory(b.addr(), b.len(), &format!("cpu:{node}"), true)
                .map_err(|e| BenchError::setup(format!("cannot register buffer {node}: {e}")))?;
            buffers.push(b);
        }
        Ok(Memory { buffers })
    }

    pub(crate) fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    pub(crate) fn buffers_mut(&mut self) -> &mut [Buffer] {
        &mut self.buffers
    }

    /// Unregisters every buffer (before they are unmapped).
    pub(crate) fn unregister(&self, engine: &TransferEngine) {
        for b in &self.buffers {
            if let Err(e) = engine.unregister_memory(b.addr()) {
                tracing::warn!("unregistering bench buffer {:#x}: {e}", b.addr());
            }
        }
    }
}
