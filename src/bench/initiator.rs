//! Initiator mode: the timed run (and the `--verify` pass before it).
//!
//! Each of `--threads` threads repeats, for `--duration` seconds: allocate a batch of
//! `--batch_size`, submit block `i` at offset `block_size * (i * threads + t)` of its local
//! buffer and of its remote base, busy-poll task 0, 1, … until each has ended, free the batch.
//! That is Mooncake's loop (`--poll_yield` yields between polls instead of spinning). Unlike Mooncake, which exits at the first FAILED task, a failed task
//! is counted as an error and the run goes on; a batch whose tasks all failed, a refused
//! submission, a status error, or a batch still unfinished after `--batch_timeout` stops that
//! thread (the others go on; the run exits 1 in every such case).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::buffer::{check_pattern, fill_pattern};
use super::report::{Latency, LiveCounters, Progress, RunReport, VerifyReport};
use super::{BenchError, Flags, Memory, start_engine};
use crate::engine::TaskState;
use crate::engine::{TransferEngine, TransferRequest};
use crate::transport::Opcode;

/// Error messages kept for the report.
const MAX_MESSAGES: usize = 8;

/// What every worker shares.
struct Plan {
    segment: i32,
    block: u64,
    batch: usize,
    threads: usize,
    /// Local buffer addresses, by buffer index.
    local: Vec<u64>,
    /// Remote base address of each thread.
    remote_base: Vec<u64>,
    timeout: Duration,
    /// Yield between status polls instead of spinning.
    poll_yield: bool,
}

impl Plan {
    /// The requests of one batch of thread `t`.
    fn requests(&self, t: usize, opcode: Opcode) -> Vec<TransferRequest> {
        let local = self.local[t % self.local.len()];
        (0..self.batch)
            .map(|i| {
                let off = self.block * (i * self.threads + t) as u64;
                TransferRequest {
                    opcode,
                    source: local + off,
                    target_id: self.segment,
                    target_offset: self.remote_base[t] + off,
                    length: self.block,
                }
            })
            .collect()
    }

    /// Bytes from each base that a run touches.
    fn span(&self) -> u64 {
        self.block * (self.batch * self.threads) as u64
    }
}

/// How one batch ended.
struct BatchOutcome {
    completed: u64,
    failed: u64,
    /// Set when the thread must stop (the batch could not be submitted, polled or freed).
    fatal: Option<String>,
}

/// Submits `reqs` as one batch and polls each task until it has ended (or `timeout`), spinning
/// or, with `poll_yield`, yielding the CPU between polls.
fn run_batch(engine: &TransferEngine, reqs: &[TransferRequest], timeout: Duration, poll_yield: bool) -> BatchOutcome {
    let n = reqs.len() as u64;
    let fatal = |completed, msg: String| BatchOutcome { completed, failed: n - completed, fatal: Some(msg) };
    let batch = match engine.allocate_batch(reqs.len()) {
        Ok(b) => b,
        Err(e) => return fatal(0, format!("allocate_batch: {e}")),
    };
    if let Err(e) = engine.submit(batch, reqs, None) {
        let _ = engine.free_batch(batch);
        return fatal(0, format!("submit: {e}"));
    }
    let deadline = Instant::now() + timeout;
    let (mut completed, mut failed) = (0u64, 0u64);
    for task in 0..reqs.len() {
        let mut spins = 0u32;
        loop {
            match engine.task_status(batch, task) {
                Ok(s) if s.status == TaskState::Completed => {
                    completed += 1;
                    break;
                }
                Ok(s) if s.status == TaskState::Failed => {
                    failed += 1;
                    break;
                }
                Ok(_) => {}
                Err(e) => return fatal(completed, format!("status of task {task}: {e}")),
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && Instant::now() > deadline {
                // The batch stays allocated: its tasks are still in flight.
                return fatal(completed, format!("batch not finished after {timeout:?} (task {task} still waiting)"));
            }
            if poll_yield {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    if let Err(e) = engine.free_batch(batch) {
        return BatchOutcome { completed, failed, fatal: Some(format!("free_batch: {e}")) };
    }
    BatchOutcome { completed, failed, fatal: None }
}

/// Totals of one worker.
#[derive(Default)]
struct WorkerTotals {
    batches: u64,
    blocks: u64,
    errors: u64,
    /// The thread stopped on a fatal error before the run's end.
    stopped: bool,
    messages: Vec<String>,
    latency_ns: Vec<u64>,
}

fn worker(
    engine: &TransferEngine,
    plan: &Plan,
    t: usize,
    opcode: Opcode,
    running: &AtomicBool,
    live: &LiveCounters,
) -> WorkerTotals {
    let reqs = plan.requests(t, opcode);
    let mut totals = WorkerTotals::default();
    while running.load(Ordering::Relaxed) {
        let start = Instant::now();
        let out = run_batch(engine, &reqs, plan.timeout, plan.poll_yield);
        totals.latency_ns.push(start.elapsed().as_nanos() as u64);
        totals.blocks += out.completed;
        totals.errors += out.failed;
        if out.failed == 0 && out.fatal.is_none() {
            totals.batches += 1;
        } else if out.failed > 0 && totals.messages.len() < MAX_MESSAGES {
            totals.messages.push(format!("thread {t}: {} of {} task(s) failed", out.failed, reqs.len()));
        }
        live.blocks.fetch_add(out.completed, Ordering::Relaxed);
        live.bytes.fetch_add(out.completed * plan.block, Ordering::Relaxed);
        live.errors.fetch_add(out.failed, Ordering::Relaxed);
        if let Some(msg) = out.fatal {
            totals.messages.push(format!("thread {t} stopped: {msg}"));
            totals.stopped = true;
            break;
        }
        if out.completed == 0 && out.failed > 0 {
            // Every task failed: the peer is gone or refuses us; more batches would only fail.
            totals.messages.push(format!("thread {t} stopped: a whole batch failed"));
            totals.stopped = true;
            break;
        }
    }
    totals
}

/// Writes the pattern over every block of the run, reads it back into zeroed memory, compares.
fn verify(engine: &TransferEngine, plan: &Plan, memory: &mut Memory) -> VerifyReport {
    let start = Instant::now();
    let span = plan.span() as usize;
    let nbuf = memory.buffers().len();
    let mut report = VerifyReport { bytes: 0, blocks: 0, ok: false, detail: None, seconds: 0.0 };
    let pass = |opcode: Opcode, report: &mut VerifyReport| -> bool {
        for t in 0..plan.threads {
            let out = run_batch(engine, &plan.requests(t, opcode), plan.timeout, plan.poll_yield);
            if out.failed > 0 || out.fatal.is_some() {
                report.detail = Some(format!(
                    "{opcode:?} pass, thread {t}: {} task(s) failed{}",
                    out.failed,
                    out.fatal.map(|m| format!(" ({m})")).unwrap_or_default()
                ));
                return false;
            }
        }
        true
    };
    for (b, buf) in memory.buffers_mut().iter_mut().enumerate() {
        fill_pattern(b, 0, &mut buf.bytes_mut()[..span]);
    }
    if pass(Opcode::Write, &mut report) {
        for buf in memory.buffers_mut() {
            buf.bytes_mut()[..span].fill(0);
        }
        if pass(Opcode::Read, &mut report) {
            report.ok = true;
            'check: for t in 0..plan.threads {
                let b = t % nbuf;
                let bytes = memory.buffers()[b].bytes();
                for r in plan.requests(t, Opcode::Read) {
                    let off = r.source - memory.buffers()[b].addr();
                    let block = &bytes[off as usize..(off + r.length) as usize];
                    report.blocks += 1;
                    report.bytes += r.length;
                    if let Some(i) = check_pattern(b, off, block) {
                        report.ok = false;
                        report.detail = Some(format!(
                            "thread {t}: byte {} of the block at remote {:#x} differs after write + read back",
                            i, r.target_offset
                        ));
                        break 'check;
                    }
                }
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// Runs the initiator: setup, `--verify` if asked, the timed run, the report.
pub fn run(flags: &Flags) -> Result<RunReport, BenchError> {
    let engine = start_engine(flags)?;
    let mut memory = Memory::register(&engine, flags.buffer_size)?;
    let result = run_with(flags, &engine, &mut memory);
    memory.unregister(&engine);
    engine.shutdown();
    let report = result?;
    let (unit_bytes, unit, warning) = flags.report_unit();
    if let Some(w) = warning {
        eprintln!("mooncake-bench: warning: {w}");
    }
    if flags.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text(unit_bytes, &unit, flags.report_precision));
    }
    Ok(report)
}

fn run_with(flags: &Flags, engine: &TransferEngine, memory: &mut Memory) -> Result<RunReport, BenchError> {
    let segment_name = flags.segment_id.clone().unwrap_or_default();
    let segment = engine
        .open_segment(&segment_name, false)
        .map_err(|e| BenchError::setup(format!("cannot open segment {segment_name:?}: {e}")))?;
    let desc = engine
        .segment_descriptor(segment)
        .ok_or_else(|| BenchError::setup(format!("segment {segment_name:?} has no descriptor")))?;
    let threads = flags.threads as usize;
    let nbuf = memory.buffers().len();
    let need = flags.block_size * flags.batch_size as u64 * threads as u64;
    let mut remote_base = Vec::with_capacity(threads);
    for t in 0..threads {
        let b = desc.buffers.get(t % nbuf).ok_or_else(|| {
            BenchError::setup(format!(
                "segment {segment_name:?} registers {} buffer(s); thread {t} needs buffer {}",
                desc.buffers.len(),
                t % nbuf
            ))
        })?;
        if b.length < need {
            return Err(BenchError::setup(format!(
                "buffer {} of segment {segment_name:?} has {} bytes; this run needs {need} \
                 (block_size * batch_size * threads): start the target with a larger --buffer_size",
                t % nbuf,
                b.length
            )));
        }
        remote_base.push(b.addr);
    }
    let plan = Plan {
        segment,
        block: flags.block_size,
        batch: flags.batch_size as usize,
        threads,
        local: memory.buffers().iter().map(|b| b.addr()).collect(),
        remote_base,
        timeout: Duration::from_secs_f64(flags.batch_timeout),
        poll_yield: flags.poll_yield,
    };
    let verify_report = flags.verify.then(|| verify(engine, &plan, memory));
    if let Some(v) = verify_report.as_ref().filter(|v| !v.ok) {
        eprintln!("mooncake-bench: verify FAILED: {}", v.detail.as_deref().unwrap_or("?"));
    }
    let opcode = if flags.is_write() { Opcode::Write } else { Opcode::Read };
    let running = AtomicBool::new(true);
    let live = Arc::new(LiveCounters::default());
    let progress = Progress::start(!flags.json, live.clone());
    let start = Instant::now();
    let totals: Vec<WorkerTotals> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (plan, running, live) = (&plan, &running, &*live);
                std::thread::Builder::new()
                    .name(format!("bench-{t}"))
                    .spawn_scoped(s, move || worker(engine, plan, t, opcode, running, live))
            })
            .collect();
        sleep_until(start + Duration::from_secs_f64(flags.duration), &handles);
        running.store(false, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| WorkerTotals {
                    messages: vec!["worker panicked".into()],
                    errors: 1,
                    stopped: true,
                    ..Default::default()
                }),
                Err(e) => WorkerTotals {
                    messages: vec![format!("cannot start worker: {e}")],
                    errors: 1,
                    stopped: true,
                    ..Default::default()
                },
            })
            .collect()
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    progress.finish();
    let mut latency_ns = Vec::new();
    let mut report = RunReport {
        operation: flags.operation.clone(),
        protocol: flags.protocol.clone(),
        segment: segment_name,
        block_size: flags.block_size,
        batch_size: flags.batch_size,
        threads: flags.threads,
        duration_requested_s: flags.duration,
        elapsed_s,
        batches: 0,
        blocks: 0,
        errors: 0,
        stopped_threads: 0,
        error_messages: Vec::new(),
        latency: Latency::default(),
        verify: verify_report,
    };
    for w in totals {
        report.batches += w.batches;
        report.blocks += w.blocks;
        report.errors += w.errors;
        report.stopped_threads += u32::from(w.stopped);
        report.error_messages.extend(w.messages);
        latency_ns.extend(w.latency_ns);
    }
    report.error_messages.truncate(MAX_MESSAGES);
    report.latency = Latency::from_samples(&mut latency_ns);
    Ok(report)
}

/// Sleeps until `deadline`, waking early when every worker has already stopped (each one
/// stopped on a fatal error), so a broken run does not wait out its duration.
fn sleep_until<T>(deadline: Instant, handles: &[std::io::Result<std::thread::ScopedJoinHandle<'_, T>>]) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if handles.iter().all(|h| h.as_ref().map_or(true, |h| h.is_finished())) {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}
