//! `mooncake-bench` as a process: against itself, and mixed with the C++ `transfer_engine_bench`
//! of Mooncake's published wheel in both directions (ours as target with theirs as initiator,
//! theirs as target with ours as initiator and `--verify`).
//!
//! The wheel is found as `tests/support/wheel.rs` finds it; its `mooncake` package holds
//! `transfer_engine_bench`. Without it the wheel tests print `SKIPPED: …` and pass, unless
//! `MOONCAKE_REQUIRE_WHEEL=1` (CI) makes that a failure.
//! Every process is started on 127.0.0.1 and stopped by its PID; every wait is bounded.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const OURS: &str = env!("CARGO_BIN_EXE_mooncake-bench");
const COMMON: &[&str] = &["--metadata_server=P2PHANDSHAKE", "--local_server_name=127.0.0.1", "--protocol=tcp"];
const BUF: &str = "--buffer_size=67108864";
/// Longest any one process of these tests may run.
const PROCESS_LIMIT: Duration = Duration::from_secs(20);

/// The wheel's `transfer_engine_bench`, or `None` (skip) when the wheel is not installed.
fn wheel_bench() -> Option<PathBuf> {
    let python = support::wheel::python()?;
    let out = Command::new(&python)
        .args(["-c", "import mooncake, os; print(os.path.dirname(mooncake.__file__))"])
        .stderr(Stdio::null())
        .output();
    let dir = out.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let bin = Path::new(&dir).join("transfer_engine_bench");
    assert!(!dir.is_empty() && bin.exists(), "{} has no mooncake/transfer_engine_bench", python.display());
    Some(bin)
}

/// A target process; stopped with SIGTERM (then SIGKILL) by its PID on drop.
struct Target {
    child: Option<Child>,
    segment: String,
    lines: mpsc::Receiver<String>,
}

impl Target {
    /// Starts `bin --mode=target` and waits (bounded) for its `listening on 127.0.0.1:PORT`.
    fn start(bin: &Path, extra: &[&str]) -> Target {
        let mut child = Command::new(bin)
            .arg("--mode=target")
            .args(COMMON)
            .arg(BUF)
            .args(extra)
            .env("GLOG_minloglevel", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn target");
        let lines = merged_lines(&mut child);
        let mut t = Target { child: Some(child), segment: String::new(), lines };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = String::new();
        while t.segment.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match t.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(seg) = listening_address(&line) {
                        t.segment = seg;
                    }
                    seen += &line;
                    seen.push('\n');
                }
                Err(_) => panic!("{} printed no `listening on` line within 10 s:\n{seen}", bin.display()),
            }
        }
        t
    }

    /// Stops the target by PID with SIGTERM and returns its exit status (bounded).
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGTERM);
        wait_bounded(&mut child, Duration::from_secs(10)).expect("target did not exit within 10 s of SIGTERM")
    }

    /// Output printed so far (after the `listening on` line).
    fn output(&self) -> String {
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            if wait_bounded(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the PID of a child we own and have not reaped yet.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// `try_wait` until `limit`; `None` when still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of the child's stdout and stderr, as they come.
fn merged_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// `127.0.0.1:PORT` from a line containing `listening on 127.0.0.1:PORT` (te_cpp_bench.py's regex).
fn listening_address(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on 127.0.0.1:")? + "listening on ".len()..];
    let port: String = rest["127.0.0.1:".len()..].chars().take_while(char::is_ascii_digit).collect();
    (!port.is_empty()).then(|| format!("127.0.0.1:{port}"))
}

/// Runs an initiator to completion (bounded by [`PROCESS_LIMIT`]); returns status and output.
fn run_initiator(bin: &Path, segment: &str, args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(bin)
        .arg("--mode=initiator")
        .args(COMMON)
        .arg(BUF)
        .arg(format!("--segment_id={segment}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn initiator");
    let lines = merged_lines(&mut child);
    let status = wait_bounded(&mut child, PROCESS_LIMIT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("initiator {args:?} ran past {PROCESS_LIMIT:?}: {}", lines.try_iter().collect::<Vec<_>>().join("\n"))
    });
    // The readers end at EOF, which follows the exit.
    let out: Vec<String> = lines.iter().collect();
    (status, out.join("\n"))
}

/// `(duration, batch count, GB/s)` from Mooncake's `Test completed: duration D, batch count N,
/// throughput X GB/s` line (the regex of te_cpp_bench.py).
fn test_completed(output: &str) -> Option<(f64, u64, f64)> {
    let line = &output[output.find("Test completed: duration ")?..];
    let line = line.lines().next()?;
    let rest = line.strip_prefix("Test completed: duration ")?;
    let (dur, rest) = rest.split_once(", batch count ")?;
    let (batches, rest) = rest.split_once(", throughput ")?;
    let gbps = rest.strip_suffix(" GB/s")?;
    Some((dur.parse().ok()?, batches.parse().ok()?, gbps.parse().ok()?))
}

fn assert_throughput(what: &str, status: ExitStatus, out: &str) {
    assert!(status.success(), "{what}: exit {status}\n{out}");
    let (dur, batches, gbps) =
        test_completed(out).unwrap_or_else(|| panic!("{what}: no `Test completed` line:\n{out}"));
    assert!(dur > 0.0 && batches > 0 && gbps > 0.0, "{what}: {dur} s, {batches} batches, {gbps} GB/s\n{out}");
    eprintln!("{what}: {gbps} GB/s ({batches} batches in {dur} s)");
}

fn json_of(out: &str) -> serde_json::Value {
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON line:\n{out}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

const RUN: &[&str] = &["--block_size=65536", "--batch_size=64", "--threads=1", "--duration=1"];

#[test]
fn wheel_initiator_writes_and_reads_our_target() {
    let Some(wheel) = wheel_bench() else { return };
    let mut target = Target::start(Path::new(OURS), &[]);
    for op in ["--operation=write", "--operation=read"] {
        let (st, out) = run_initiator(&wheel, &target.segment, &[RUN, &[op, "--report_precision=4"]].concat());
        assert_throughput(&format!("wheel initiator {op} -> ours"), st, &out);
    }
    let st = target.stop();
    assert!(st.success(), "our target exited {st} on SIGTERM: {}", target.output());
}

#[test]
fn our_initiator_verifies_against_the_wheel_target() {
    let Some(wheel) = wheel_bench() else { return };
    let target = Target::start(&wheel, &[]);
    let args = ["--block_size=65536", "--batch_size=32", "--threads=2", "--duration=1", "--verify"];
    let (st, out) = run_initiator(Path::new(OURS), &target.segment, &[&args[..], &["--operation=write"]].concat());
    assert_throughput("ours write -> wheel", st, &out);
    assert!(out.contains("verify: ok"), "{out}");
    let (st, out) =
        run_initiator(Path::new(OURS), &target.segment, &[&args[..], &["--operation=read", "--json"]].concat());
    assert!(st.success(), "ours read -> wheel: exit {st}\n{out}");
    let j = json_of(&out);
    assert_eq!(j["errors"], 0, "{j}");
    assert_eq!(j["verify"]["ok"], true, "{j}");
    assert_eq!(j["verify"]["bytes"], 65536 * 32 * 2, "{j}");
    assert!(j["GBps"].as_f64().unwrap() > 0.0 && j["batches"].as_u64().unwrap() > 0, "{j}");
}

#[test]
fn ours_against_ours_with_verify() {
    let mut target = Target::start(Path::new(OURS), &[]);
    for op in ["--operation=write", "--operation=read"] {
        let (st, out) =
            run_initiator(Path::new(OURS), &target.segment, &[RUN, &[op, "--verify", "--threads=2"]].concat());
        assert_throughput(&format!("ours {op} -> ours"), st, &out);
        assert!(out.contains("verify: ok") && out.contains("errors: 0"), "{out}");
    }
    assert!(target.stop().success());
}

#[test]
fn failed_tasks_make_the_initiator_fail() {
    let mut target = Target::start(Path::new(OURS), &[]);
    let mut child = Command::new(OURS)
        .arg("--mode=initiator")
        .args(COMMON)
        .arg(BUF)
        .arg(format!("--segment_id={}", target.segment))
        .args(["--block_size=65536", "--batch_size=16", "--threads=1", "--duration=3", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn initiator");
    let lines = merged_lines(&mut child);
    std::thread::sleep(Duration::from_millis(1000));
    target.stop();
    let st = wait_bounded(&mut child, PROCESS_LIMIT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("initiator did not end after its target stopped")
    });
    let out: Vec<String> = lines.iter().collect();
    let out = out.join("\n");
    assert_eq!(st.code(), Some(1), "{out}");
    let j = json_of(&out);
    assert!(j["errors"].as_u64().unwrap() > 0, "{j}");
}

#[test]
fn bad_flags_exit_2() {
    let st = Command::new(OURS).args(["--operation=copy"]).stderr(Stdio::null()).status().unwrap();
    assert_eq!(st.code(), Some(2));
    let st = Command::new(OURS).args(["--mode=initiator"]).stderr(Stdio::null()).status().unwrap();
    assert_eq!(st.code(), Some(2), "initiator without --segment_id");
}
