//! The demo of README.md: two Transfer Engines in two processes, no server to start.
//!
//! `cargo run --release --example demo` starts a target process (this program with `--target`)
//! that registers 256 MiB; this process opens its segment by name ("127.0.0.1:<port>", the P2P
//! handshake of Mooncake), writes the buffer in 1 MiB requests, reads it back, checks every byte,
//! sends a notification, and prints what it measured and which transport carried the bytes:
//! between two processes of one host that is the same-host single-copy path (`shm`) unless
//! `MOONCAKE_SHM=off`, which leaves TCP (`tcp`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::engine::{EngineOptions, TaskState, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;

const LEN: usize = 256 << 20;
const BLOCK: u64 = 1 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--target") {
        return target();
    }
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).arg("--target").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let hello = lines.next().ok_or("target exited")??;
    let (name, addr) = hello.split_once(' ').ok_or("bad target line")?;
    let remote: u64 = addr.parse()?;
    println!("target segment {name}, buffer at {remote:#x}");

    let engine = TransferEngine::new(EngineOptions::p2p("127.0.0.1"))?;
    let mut src: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut back = vec![0u8; LEN];
    engine.register_memory(src.as_mut_ptr() as u64, LEN as u64, "cpu:0", true)?;
    engine.register_memory(back.as_mut_ptr() as u64, LEN as u64, "cpu:0", true)?;
    let seg = engine.open_segment(name, false)?;

    let requests = |opcode: Opcode, local: u64| -> Vec<TransferRequest> {
        (0..LEN as u64 / BLOCK)
            .map(|i| TransferRequest {
                opcode,
                source: local + i * BLOCK,
                target_id: seg,
                target_offset: remote + i * BLOCK,
                length: BLOCK,
            })
            .collect()
    };
    for (what, reqs) in [
        ("write", requests(Opcode::Write, src.as_ptr() as u64)),
        ("read", requests(Opcode::Read, back.as_ptr() as u64)),
    ] {
        let t = Instant::now();
        let batch = engine.allocate_batch(reqs.len())?;
        let notify = (what == "write").then(|| ("demo".to_string(), "256 MiB written".to_string()));
        engine.submit(batch, &reqs, notify)?;
        for task in 0..reqs.len() {
            loop {
                match engine.task_status(batch, task)?.status {
                    TaskState::Waiting => std::thread::sleep(Duration::from_micros(50)),
                    TaskState::Completed => break,
                    TaskState::Failed => return Err(format!("{what} task {task} ended FAILED").into()),
                }
            }
        }
        engine.free_batch(batch)?;
        let secs = t.elapsed().as_secs_f64();
        println!("{what}: {} MiB in {:.3} s = {:.2} GB/s", LEN >> 20, secs, LEN as f64 / secs / 1e9);
    }
    if back != src {
        return Err("read-back differs from what was written".into());
    }
    for link in engine.links().iter().filter(|l| l.bytes > 0) {
        let how = match link.transport {
            "shm" => "the same-host single-copy path (MOONCAKE_SHM=off uses tcp)",
            "tcp" => "TCP",
            "rdma" => "RDMA",
            _ => "",
        };
        println!("transport: {} to {}, {} MiB moved: {how}", link.transport, link.peer, link.bytes >> 20);
    }
    println!("verified: all {LEN} bytes read back equal what was written");
    drop(child.stdin.take()); // tells the target to finish
    let report = lines.next().ok_or("target exited early")??;
    println!("target: {report}");
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("target exited with {status}").into());
    }
    Ok(())
}

/// The target process: registers a buffer, prints "name addr", waits for stdin to close, then
/// reports the notifications it received.
fn target() -> Result<(), Box<dyn std::error::Error>> {
    let engine = TransferEngine::new(EngineOptions::p2p("127.0.0.1"))?;
    let mut buf = vec![0u8; LEN];
    engine.register_memory(buf.as_mut_ptr() as u64, LEN as u64, "cpu:0", true)?;
    println!("{} {}", engine.server_name(), buf.as_ptr() as u64);
    std::io::stdout().flush()?;
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {}
    let notes = engine.take_notifies();
    println!("received {} notification(s): {:?}", notes.len(), notes);
    Ok(())
}
