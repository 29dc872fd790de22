//! What the initiator reports: the text lines (one of them in Mooncake's `Test completed`
//! format, so scripts that parse Mooncake's bench parse ours), the `--json` object, and the
//! once-a-second progress line on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Percentiles of per-batch latency: one turn of the worker loop, from allocating the batch
/// through submitting it and polling its tasks to freeing it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples_ns` (sorted in place).
    pub fn from_samples(samples_ns: &mut [u64]) -> Latency {
        if samples_ns.is_empty() {
            return Latency::default();
        }
        samples_ns.sort_unstable();
        let n = samples_ns.len();
        let at = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            samples_ns[rank.clamp(1, n) - 1] as f64 / 1e3
        };
        Latency {
            count: n,
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            max_us: samples_ns[n - 1] as f64 / 1e3,
        }
    }
}

/// The `--verify` pass: what was checked and whether it matched.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Bytes written, read back and compared.
    pub bytes: u64,
    pub blocks: u64,
    pub ok: bool,
    /// The first mismatch or failure, when not ok.
    pub detail: Option<String>,
    pub seconds: f64,
}

/// The result of one timed initiator run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub operation: String,
    pub protocol: String,
    pub segment: String,
    pub block_size: u64,
    pub batch_size: u32,
    pub threads: u32,
    pub duration_requested_s: f64,
    /// From before the threads start to after they have all stopped (Mooncake's measure).
    pub elapsed_s: f64,
    /// Batches whose tasks all completed.
    pub batches: u64,
    /// Tasks that completed.
    pub blocks: u64,
    /// Tasks that failed (status FAILED, refused submission, or timed out).
    pub errors: u64,
    /// Threads that stopped before the end (a fatal error: see `initiator.rs`); any makes
    /// the run exit 1 even when no task failed.
    pub stopped_threads: u32,
    /// The first few error messages.
    pub error_messages: Vec<String>,
    pub latency: Latency,
    pub verify: Option<VerifyReport>,
}

impl RunReport {
    pub fn bytes(&self) -> u64 {
        self.blocks * self.block_size
    }

    /// Payload bytes per second.
    pub fn bytes_per_s(&self) -> f64 {
        if self.elapsed_s > 1e-10 { self.bytes() as f64 / self.elapsed_s } else { 0.0 }
    }

    pub fn blocks_per_s(&self) -> f64 {
        if self.elapsed_s > 1e-10 { self.blocks as f64 / self.elapsed_s } else { 0.0 }
    }

    /// The text report; its first line is Mooncake's, in `unit` (bytes per unit) with
    /// `precision` decimals.
    pub fn text(&self, unit_bytes: f64, unit: &str, precision: u32) -> String {
        let p = precision as usize;
        let l = &self.latency;
        let mut s = format!(
            "Test completed: duration {:.2}, batch count {}, throughput {:.p$} {unit}/s\n",
            self.elapsed_s,
            self.batches,
            self.bytes_per_s() / unit_bytes,
        );
        s += &format!(
            "{} {}: throughput {:.4} GB/s, {:.0} blocks/s ({} blocks of {} B in {} batches of {}, {} thread(s), {:.2} s)\n",
            self.protocol,
            self.operation,
            self.bytes_per_s() / 1e9,
            self.blocks_per_s(),
            self.blocks,
            self.block_size,
            self.batches,
            self.batch_size,
            self.threads,
            self.elapsed_s,
        );
        s += &format!(
            "batch latency: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us ({} batches)\n",
            l.p50_us, l.p90_us, l.p99_us, l.max_us, l.count
        );
        if let Some(v) = &self.verify {
            s += &format!(
                "verify: {} ({} bytes in {} blocks written, read back and compared in {:.2} s){}\n",
                if v.ok { "ok" } else { "FAILED" },
                v.bytes,
                v.blocks,
                v.seconds,
                v.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            );
        }
        s += &format!("errors: {} failed task(s)\n", self.errors);
        if self.stopped_threads > 0 {
            s += &format!("stopped: {} thread(s) stopped early\n", self.stopped_threads);
        }
        for m in &self.error_messages {
            s += &format!("error: {m}\n");
        }
        s
    }

    /// The `--json` object.
    pub fn json(&self) -> Value {
        let l = &self.latency;
        json!({
            "tool": "mooncake-bench",
            "mode": "initiator",
            "operation": self.operation,
            "protocol": self.protocol,
            "segment_id": self.segment,
            "block_size": self.block_size,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "duration_s": self.duration_requested_s,
            "elapsed_s": self.elapsed_s,
            "batches": self.batches,
            "blocks": self.blocks,
            "bytes": self.bytes(),
            "GBps": self.bytes_per_s() / 1e9,
            "blocks_per_s": self.blocks_per_s(),
            "batch_latency_us": {"count": l.count, "p50": l.p50_us, "p90": l.p90_us, "p99": l.p99_us, "max": l.max_us},
            "errors": self.errors,
            "stopped_threads": self.stopped_threads,
            "error_messages": self.error_messages,
            "verify": self.verify.as_ref().map(|v| json!({
                "ok": v.ok, "bytes": v.bytes, "blocks": v.blocks, "seconds": v.seconds, "detail": v.detail,
            })),
        })
    }
}

/// Counters the workers raise and the progress line reads.
#[derive(Default)]
pub struct LiveCounters {
    pub blocks: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// Prints one line per second (throughput of the last second) while a run goes on; only when
/// stdout is a terminal.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the printer when `enabled` and stdout is a terminal; otherwise does nothing.
    pub fn start(enabled: bool, counters: Arc<LiveCounters>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (enabled && std::io::stdout().is_terminal())
            .then(|| {
                let stop = stop.clone();
                std::thread::Builder::new().name("bench-progress".into()).spawn(move || progress_loop(&stop, &counters))
            })
            .and_then(Result::ok);
        Progress { stop, thread }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn progress_loop(stop: &AtomicBool, c: &LiveCounters) {
    let start = Instant::now();
    let (mut last_t, mut last_bytes, mut last_blocks) = (start, 0u64, 0u64);
    let mut next = start + Duration::from_secs(1);
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        let (bytes, blocks) = (c.bytes.load(Ordering::Relaxed), c.blocks.load(Ordering::Relaxed));
        let dt = now.duration_since(last_t).as_secs_f64();
        println!(
            "[{:5.1} s] {:.4} GB/s, {:.0} blocks/s, errors {}",
            now.duration_since(start).as_secs_f64(),
            (bytes - last_bytes) as f64 / dt / 1e9,
            (blocks - last_blocks) as f64 / dt,
            c.errors.load(Ordering::Relaxed)
        );
        (last_t, last_bytes, last_blocks) = (now, bytes, blocks);
        next += Duration::from_secs(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        RunReport {
            operation: "write".into(),
            protocol: "tcp".into(),
            segment: "127.0.0.1:1".into(),
            block_size: 65536,
            batch_size: 128,
            threads: 1,
            duration_requested_s: 2.0,
            elapsed_s: 2.0,
            batches: 100,
            blocks: 12800,
            errors: 0,
            stopped_threads: 0,
            error_messages: vec![],
            latency: Latency::from_samples(&mut [3000, 1000, 2000]),
            verify: None,
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        let l = Latency::from_samples(&mut v);
        assert_eq!((l.p50_us, l.p90_us, l.p99_us, l.max_us, l.count), (50.0, 90.0, 99.0, 100.0, 100));
        assert_eq!(Latency::from_samples(&mut []), Latency::default());
    }

    #[test]
    fn first_line_is_mooncakes_format() {
        let r = report();
        let text = r.text(1e9, "GB", 4);
        let first = text.lines().next().unwrap();
        assert_eq!(first, "Test completed: duration 2.00, batch count 100, throughput 0.4194 GB/s");
        assert!(text.contains("blocks/s") && text.contains("p99"));
    }

    #[test]
    fn json_has_the_numbers() {
        let j = report().json();
        assert_eq!(j["bytes"], 12800 * 65536);
        assert!((j["GBps"].as_f64().unwrap() - 0.4194304).abs() < 1e-9);
        assert_eq!(j["batch_latency_us"]["max"], 3.0);
        assert!(j["verify"].is_null());
    }
}
