//! Target mode: an engine with the bench's buffer(s) registered, serving until SIGINT/SIGTERM.
//!
//! As Mooncake's target: one buffer of `--buffer_size` per NUMA node, registered in node order
//! with location `cpu:<node>`, remotely accessible, so the initiator finds buffer `i` at
//! `buffers[i]` of the descriptor it fetches. The line `listening on HOST:PORT` is printed
//! once the buffers are registered, so a script that waits for it can start at once.

use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{BenchError, Flags, Memory, start_engine};

/// Runs the target until a signal; returns after the engine has stopped.
pub fn run(flags: &Flags) -> Result<(), BenchError> {
    // First, as Mooncake's target does, so that a signal during start-up is not lost.
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| BenchError::setup(format!("cannot watch SIGINT/SIGTERM: {e}")))?;
    let engine = start_engine(flags)?;
    let memory = Memory::register(&engine, flags.buffer_size)?;
    let name = engine.server_name().to_string();
    let buffers: Vec<_> = memory.buffers().iter().map(|b| json!({"addr": b.addr(), "length": b.len()})).collect();
    let data_port = engine.tcp().map(|t| t.data_port());
    if flags.json {
        println!(
            "{}",
            json!({"tool": "mooncake-bench", "mode": "target", "segment_id": name, "buffers": buffers,
                   "protocol": flags.protocol, "tcp_data_port": data_port})
        );
    }
    println!(
        "mooncake-bench target: listening on {name} (segment_id={name}, {} buffer(s) of {} bytes at {}, tcp data port {}); \
         stop with SIGINT or SIGTERM",
        memory.buffers().len(),
        flags.buffer_size,
        memory.buffers().iter().map(|b| format!("{:#x}", b.addr())).collect::<Vec<_>>().join(","),
        data_port.map_or("-".to_string(), |p| p.to_string()),
    );
    let signal = signals.forever().next();
    tracing::debug!(?signal, "target stopping");
    memory.unregister(&engine);
    engine.shutdown();
    drop(engine);
    drop(memory);
    println!("mooncake-bench target: stopped (signal {})", signal.unwrap_or(0));
    Ok(())
}
