//! The two roles, run inside a namespace by the re-executed test binary.
//!
//! Both read `MC_NETNS_HOST` (the address the engine is reached at) and `MC_NETNS_BUF` (bytes
//! of the registered buffer), print `ready` with their segment name and buffer address, then
//! answer one command per stdin line until stdin closes; then they stop the engine and print
//! `stopped` with how long that took.
//!
//! Commands (each answered by `{"reply": <cmd>, "ok": …}`):
//! - `fill {offset, len, seed}`: writes the test pattern into the buffer.
//! - `verify {offset, len, seed, old_seed?}`: compares the buffer with the pattern; `ok` says
//!   whether all matched; `mismatch` and `last_mismatch` are the first and last differing
//!   offsets (or null), `mismatches` their count, and `old` how many of them hold the pattern of
//!   `old_seed` instead.
//! - initiator only: `open {segment, refresh?}` → `id`; `run {…}` (see [`RunSpec`]) submits one
//!   batch and, unless `detach`, waits for every task to end and reports how they ended and
//!   when; `status` counts the tasks of the last detached batch.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::ffi::codes::task_state_code;
use mooncake::transport::Opcode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::peer::MARKER;

/// Prints one protocol message on stdout.
pub fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARKER}{v}").and_then(|()| out.flush());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

struct Role {
    engine: TransferEngine,
    /// Registered with `engine`; declared after it, so it outlives the engine's last transfer.
    buf: Vec<u8>,
    /// The last detached batch and its task count.
    detached: Option<(u64, usize)>,
}

impl Role {
    fn start() -> Role {
        let host = env("MC_NETNS_HOST");
        let len: usize = env("MC_NETNS_BUF").parse().expect("MC_NETNS_BUF");
        let engine = TransferEngine::new(EngineOptions::p2p(&host)).expect("engine");
        let mut buf = vec![0u8; len];
        engine.register_memory(buf.as_mut_ptr() as u64, len as u64, "cpu:0", true).expect("register");
        emit(&json!({
            "event": "ready",
            "segment": engine.server_name(),
            "addr": buf.as_ptr() as u64,
            "len": len,
            "pid": std::process::id(),
        }));
        Role { engine, buf, detached: None }
    }

    /// Answers commands until stdin closes, then stops the engine.
    fn serve(mut self, initiator: bool) {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines().map_while(Result::ok) {
            let cmd: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    emit(&json!({"reply": null, "ok": false, "error": format!("bad command {line:?}: {e}")}));
                    continue;
                }
            };
            let name = cmd["cmd"].as_str().unwrap_or_default().to_string();
            let answer = match (name.as_str(), initiator) {
                ("fill", _) => self.fill(&cmd),
                ("verify", _) => self.verify(&cmd),
                ("open", true) => self.open(&cmd),
                ("run", true) => self.run(&cmd),
                ("status", true) => self.status(),
                _ => Err(format!("unknown command {name:?}")),
            };
            let mut reply = answer.unwrap_or_else(|e| json!({"ok": false, "error": e}));
            reply["reply"] = json!(name);
            reply.as_object_mut().expect("object").entry("ok").or_insert(json!(true));
            emit(&reply);
        }
        let t = Instant::now();
        let Role { engine, buf, .. } = self;
        drop(engine);
        drop(buf);
        emit(&json!({"event": "stopped", "ms": ms(t.elapsed())}));
    }

    fn range(&self, cmd: &Value) -> Result<(std::ops::Range<usize>, u64), String> {
        let (off, len) = (cmd["offset"].as_u64().unwrap_or(0) as usize, cmd["len"].as_u64().unwrap_or(0) as usize);
        if off.checked_add(len).is_none_or(|end| end > self.buf.len()) {
            return Err(format!("range {off}+{len} is outside the {}-byte buffer", self.buf.len()));
        }
        Ok((off..off + len, cmd["seed"].as_u64().unwrap_or(0)))
    }

    fn fill(&mut self, cmd: &Value) -> Result<Value, String> {
        let (r, seed) = self.range(cmd)?;
        fill(&mut self.buf[r], seed);
        Ok(json!({}))
    }

    fn verify(&self, cmd: &Value) -> Result<Value, String> {
        let (r, seed) = self.range(cmd)?;
        let old_seed = cmd["old_seed"].as_u64();
        let (mut first, mut last, mut count, mut old) = (None, None, 0u64, 0u64);
        for (i, &b) in self.buf[r].iter().enumerate() {
            if b != pattern_byte(i as u64, seed) {
                first.get_or_insert(i);
                last = Some(i);
                count += 1;
                old += u64::from(old_seed.is_some_and(|s| b == pattern_byte(i as u64, s)));
            }
        }
        Ok(json!({"ok": count == 0, "mismatch": first, "last_mismatch": last, "mismatches": count, "old": old}))
    }

    fn open(&self, cmd: &Value) -> Result<Value, String> {
        let t = Instant::now();
        let name = cmd["segment"].as_str().ok_or("no segment")?;
        let refresh = cmd["refresh"].as_bool().unwrap_or(false);
        match self.engine.open_segment(name, refresh) {
            Ok(id) => Ok(json!({"id": id, "ms": ms(t.elapsed())})),
            Err(e) => Ok(json!({"ok": false, "error": format!("open_segment({name}): {e}"), "ms": ms(t.elapsed())})),
        }
    }

    fn run(&mut self, cmd: &Value) -> Result<Value, String> {
        let spec = RunSpec::deserialize(cmd).map_err(|e| format!("bad run: {e}"))?;
        let requests = spec.requests(self.buf.as_ptr() as u64, self.buf.len() as u64)?;
        let n = requests.len();
        let batch = self.engine.allocate_batch(n).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        self.engine.submit(batch, &requests, None).map_err(|e| format!("submit: {e}"))?;
        let submit_ms = ms(t0.elapsed());
        if spec.detach {
            self.detached = Some((batch, n));
            return Ok(json!({"tasks": n, "submit_ms": submit_ms}));
        }
        let watch = TaskWatch::run(&self.engine, batch, n, t0, &spec);
        let freed = watch.pending == 0 && self.engine.free_batch(batch).is_ok();
        let mut out = watch.report();
        out["submit_ms"] = json!(submit_ms);
        out["freed"] = json!(freed);
        Ok(out)
    }

    fn status(&self) -> Result<Value, String> {
        let (batch, n) = self.detached.ok_or("no detached batch")?;
        let mut counts = [0usize; 3];
        for t in 0..n {
            match task_state_code(self.engine.task_status(batch, t).map_err(|e| e.to_string())?.status) {
                0 => counts[0] += 1,
                4 => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
        Ok(json!({"pending": counts[0], "completed": counts[1], "failed": counts[2]}))
    }
}

/// One `run` command: `count` requests of `block` bytes each, the `i`th at local offset
/// `local + (i * block) % local_span` and remote address `remote + (i * block) % remote_span`
/// (a span of 0 means no wrapping), so that a batch can move much more than the buffers hold.
/// `op` is `write`, `read`, or `mixed` (even requests write, odd ones read).
#[derive(Deserialize)]
struct RunSpec {
    id: i32,
    op: String,
    local: u64,
    remote: u64,
    block: u64,
    count: usize,
    #[serde(default)]
    local_span: u64,
    #[serde(default)]
    remote_span: u64,
    /// Longest wait for every task to end.
    limit_ms: u64,
    /// Print a `progress` message once this many tasks have completed.
    #[serde(default)]
    progress_after: Option<usize>,
    /// Return right after submitting.
    #[serde(default)]
    detach: bool,
}

impl RunSpec {
    fn requests(&self, base: u64, buf_len: u64) -> Result<Vec<TransferRequest>, String> {
        let opcode = |i: usize| match self.op.as_str() {
            "write" => Ok(Opcode::Write),
            "read" => Ok(Opcode::Read),
            "mixed" if i.is_multiple_of(2) => Ok(Opcode::Write),
            "mixed" => Ok(Opcode::Read),
            other => Err(format!("unknown op {other:?}")),
        };
        let at = |i: usize, span: u64| if span == 0 { i as u64 * self.block } else { (i as u64 * self.block) % span };
        let mut out = Vec::with_capacity(self.count);
        for i in 0..self.count {
            let local = self.local + at(i, self.local_span);
            if local + self.block > buf_len {
                return Err(format!("request {i}: local {local}+{} is outside the buffer", self.block));
            }
            out.push(TransferRequest {
                opcode: opcode(i)?,
                source: base + local,
                target_id: self.id,
                target_offset: self.remote + at(i, self.remote_span),
                length: self.block,
            });
        }
        Ok(out)
    }
}

/// Polls a batch until every task ended (or the spec's limit passed), noting when each ended.
struct TaskWatch {
    statuses: Vec<i32>,
    /// Milliseconds from submission to when the task was first seen ended.
    end_ms: Vec<Option<f64>>,
    progress_ms: Option<f64>,
    pending: usize,
}

impl TaskWatch {
    /// A sweep stops after this many consecutive tasks still in flight: tasks end roughly in
    /// queue order, so the rest would be in flight too, and a sweep stays cheap.
    const SWEEP_IN_FLIGHT: usize = 64;

    fn run(engine: &TransferEngine, batch: u64, n: usize, t0: Instant, spec: &RunSpec) -> TaskWatch {
        let deadline = t0 + Duration::from_millis(spec.limit_ms);
        let mut w = TaskWatch { statuses: vec![0; n], end_ms: vec![None; n], progress_ms: None, pending: n };
        let mut open: Vec<usize> = (0..n).collect();
        let mut completed = 0;
        while !open.is_empty() && Instant::now() < deadline {
            let now = ms(t0.elapsed());
            let mut in_flight_run = 0;
            open.retain(|&t| {
                if in_flight_run >= Self::SWEEP_IN_FLIGHT {
                    return true;
                }
                let s = task_state_code(engine.task_status(batch, t).expect("task_status").status);
                if s == 0 {
                    in_flight_run += 1;
                    return true;
                }
                in_flight_run = 0;
                completed += usize::from(s == 4);
                w.statuses[t] = s;
                w.end_ms[t] = Some(now);
                false
            });
            if w.progress_ms.is_none() && spec.progress_after.is_some_and(|k| completed >= k) {
                w.progress_ms = Some(now);
                emit(&json!({"event": "progress", "completed": completed, "ms": now}));
            }
            if !open.is_empty() {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        w.pending = open.len();
        w
    }

    fn report(&self) -> Value {
        let (mut completed, mut failed) = (0, 0);
        let (mut last_end, mut first_fail) = (None::<f64>, None::<f64>);
        for (&s, &end) in self.statuses.iter().zip(&self.end_ms) {
            let Some(end) = end else { continue };
            last_end = Some(last_end.map_or(end, |m| m.max(end)));
            if s == 4 {
                completed += 1;
            } else {
                failed += 1;
                first_fail = Some(first_fail.map_or(end, |m| m.min(end)));
            }
        }
        json!({
            "tasks": self.statuses.len(),
            "completed": completed,
            "failed": failed,
            "pending": self.pending,
            "progress_ms": self.progress_ms,
            "last_end_ms": last_end,
            "first_fail_ms": first_fail,
            "statuses": if self.statuses.len() <= 256 { json!(self.statuses) } else { Value::Null },
        })
    }
}

/// Byte `i` of the test pattern seeded `seed` (the pattern of `tests/support`).
fn pattern_byte(i: u64, seed: u64) -> u8 {
    (i.wrapping_mul(2654435761).wrapping_add(seed) >> 7) as u8
}

fn fill(buf: &mut [u8], seed: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(i as u64, seed);
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The target role: an engine with a registered buffer that answers `fill` and `verify`.
pub fn target() {
    Role::start().serve(false);
}

/// The initiator role: an engine that also opens segments and runs batches on command.
pub fn initiator() {
    Role::start().serve(true);
}
