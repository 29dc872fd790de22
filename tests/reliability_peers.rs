//! Reliability suite (issue 18, item 9): a target process killed (SIGKILL) or stopped (SIGSTOP)
//! in the middle of a batch, for writes and reads, over each path between two of our engines:
//! TCP with our framing, TCP with Mooncake's protocol (`MOONCAKE_TCP_FRAMING=0` in the target,
//! which then does not offer the framing) and the same-host path.
//!
//! The target is this test binary run again in a child role (`rel_target_child`); the initiator
//! runs here with a progress timeout of [`PROGRESS`]. A batch of 2 GiB (2,048 requests of 1 MiB
//! over the target's 64 MiB) is submitted, the signal goes out once the first task has completed
//! (so the batch is in flight), and then:
//! - every task ends, and the wait for that is bounded ([`PROGRESS`] plus [`SLACK`]: a hang
//!   fails the test, speed is never asserted);
//! - over TCP, and over the same-host path to a killed target, the batch ends FAILED;
//! - over the same-host path to a stopped target the batch completes: a stopped process's
//!   memory stays readable and writable by `process_vm_writev`/`readv`, and its registrations
//!   still stand, so the copies are legitimate; the bytes are read back from the stopped target
//!   and compared;
//! - the initiator stays usable: after SIGCONT a new transfer to the same target succeeds (the
//!   TCP lanes are opened again), unregistering the local buffer and destroying the engine
//!   return (each bounded).
//!
//! Each case starts its own target and initiator. Runs with `MOONCAKE_RELIABILITY=1`
//! (ci/test-reliability.sh). Wall time: about 12 s for the twelve cases, two at a time (most of
//! it waiting: the stopped-target cases over TCP each wait [`PROGRESS`]).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::config::{Config, SameHost};
use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;
use support::{pattern, wait_batch};

const COMPLETED: i32 = 4;
const FAILED: i32 = 6;
/// The initiator's `MC_TCP_PROGRESS_TIMEOUT_SEC` in these tests (the default is 30 s).
const PROGRESS: Duration = Duration::from_secs(3);
/// Allowed beyond the progress timeout before a batch counts as hung (a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(20);
const MIB: u64 = 1 << 20;
/// The target's registered buffer.
const REMOTE_LEN: u64 = 64 * MIB;
/// Requests per batch (1 MiB each, wrapping over the target's buffer: 2 GiB in all).
const REQUESTS: u64 = 2048;
/// The child's own limit on its life, whatever the parent does.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

/// The target role: an engine with a 64 MiB buffer registered (zeroed); prints
/// `TARGET <name> <addr>` and stays until stdin closes (or [`CHILD_LIFETIME`] passes).
#[test]
fn rel_target_child() {
    if std::env::var_os("MC_REL_TARGET_ROLE").is_none() {
        return;
    }
    let e = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
    e.install_transport("tcp").unwrap();
    let mut mem = vec![0u8; REMOTE_LEN as usize];
    let base = mem.as_mut_ptr() as u64;
    e.register_memory(base, REMOTE_LEN, "cpu:0", true).unwrap();
    println!("\nTARGET {} {base}", e.server_name());
    std::io::stdout().flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(CHILD_LIFETIME);
    drop(mem);
    std::process::exit(0);
}

/// A target process, killed (by PID) when dropped.
struct Target {
    child: Child,
    name: String,
    base: u64,
}

impl Target {
    fn spawn(env: &[(&str, &str)]) -> Target {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "rel_target_child", "--nocapture", "--test-threads=1"])
            .env("MC_REL_TARGET_ROLE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn target");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let line = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "target exited before it was ready");
            if let Some((_, rest)) = line.split_once("TARGET ") {
                break rest.trim().to_string();
            }
        };
        let (name, base) = line.split_once(' ').unwrap();
        Target { name: name.to_string(), base: base.parse().unwrap(), child }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child, by its PID.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill(); // SIGKILL ends a stopped process too
        }
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Framed,
    Unframed,
    SameHost,
}

impl Path {
    fn target_env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Path::Framed => vec![("MOONCAKE_SHM", "off")],
            Path::Unframed => vec![("MOONCAKE_SHM", "off"), ("MOONCAKE_TCP_FRAMING", "0")],
            Path::SameHost => vec![],
        }
    }

    fn transport(self) -> &'static str {
        if self == Path::SameHost { "shm" } else { "tcp" }
    }
}

/// The reliability suite runs under `ci/test-reliability.sh` (`MOONCAKE_RELIABILITY=1`), beside
/// the other CI steps; a plain `cargo test` skips it with a line saying so.
fn enabled() -> bool {
    let on = std::env::var_os("MOONCAKE_RELIABILITY").is_some_and(|v| v != "0");
    if !on {
        eprintln!("SKIPPED: the reliability suite runs with MOONCAKE_RELIABILITY=1 (ci/test-reliability.sh)");
    }
    on
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

fn initiator() -> TransferEngine {
    let mut cfg = Config::from_env();
    cfg.tcp_progress_timeout = PROGRESS;
    cfg.tcp_status_timeout = PROGRESS;
    cfg.same_host = SameHost::Auto;
    let e = TransferEngine::with_config(EngineOptions::p2p("127.0.0.1"), cfg).expect("engine");
    e.install_transport("tcp").unwrap();
    e
}

fn requests(opcode: Opcode, local: u64, seg: i32, remote: u64, count: u64) -> Vec<TransferRequest> {
    (0..count)
        .map(|i| {
            let off = (i * MIB) % REMOTE_LEN;
            TransferRequest { opcode, source: local + off, target_id: seg, target_offset: remote + off, length: MIB }
        })
        .collect()
}

/// Polls until task 0 has ended (the batch is moving), bounded.
fn wait_first_task(e: &TransferEngine, batch: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = mooncake::ffi::codes::task_state_code(e.task_status(batch, 0).unwrap().status);
        if s != 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "the first task did not end within 30 s");
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn case(path: Path, sig: i32, opcode: Opcode) {
    let target = Target::spawn(&path.target_env());
    let e = initiator();
    // The local buffer holds what the target's buffer must hold after the writes (request i
    // writes local[i mod 64 MiB] to remote[i mod 64 MiB]); reads fill it from the zeroed target.
    let mut local = pattern(REMOTE_LEN as usize, 7);
    let local_addr = local.as_mut_ptr() as u64;
    e.register_memory(local_addr, REMOTE_LEN, "cpu:0", true).unwrap();
    let seg = e.open_segment(&target.name, false).unwrap();
    let desc = e.segment_descriptor(seg).unwrap();
    assert_eq!(desc.extensions.shm.is_some(), path == Path::SameHost, "{path:?}: {:?}", desc.extensions);
    assert_eq!(desc.extensions.tcp_framing != 0, path != Path::Unframed, "{path:?}: {:?}", desc.extensions);
    // Warm up the route and check which transport carries it.
    let warm = requests(opcode, local_addr, seg, target.base, 1);
    assert_eq!(support::run_batch(&e, &warm), vec![COMPLETED]);
    let used: Vec<_> = e.links().iter().filter(|l| l.requests_completed > 0).map(|l| l.transport).collect();
    assert_eq!(used, vec![path.transport()], "{path:?}");

    let reqs = requests(opcode, local_addr, seg, target.base, REQUESTS);
    let batch = e.allocate_batch(reqs.len()).unwrap();
    e.submit(batch, &reqs, None).unwrap();
    let first = wait_first_task(&e, batch);
    assert_eq!(first, COMPLETED, "{path:?}: the first task of the batch did not complete");
    target.signal(sig);
    let signalled = Instant::now();
    let limit = PROGRESS + SLACK;
    let st = wait_batch(&e, batch, reqs.len(), limit);
    let took = signalled.elapsed();
    let failed = st.iter().filter(|&&s| s == FAILED).count();
    let completed = st.iter().filter(|&&s| s == COMPLETED).count();
    assert_eq!(failed + completed, st.len(), "{path:?}: a task ended neither completed nor failed: {st:?}");
    eprintln!(
        "RESULT path={path:?} signal={sig} op={opcode:?}: batch ended {} ms after the signal, {completed} completed, \
         {failed} failed",
        took.as_millis()
    );
    let stopped_same_host = path == Path::SameHost && sig == libc::SIGSTOP;
    if stopped_same_host {
        assert_eq!(failed, 0, "{path:?}: copies to a stopped (live) target failed");
    } else {
        assert!(failed > 0, "{path:?} signal {sig}: the batch ended without a failure ({completed} completed)");
    }
    e.free_batch(batch).unwrap();

    if stopped_same_host {
        // The stopped target's memory: read it back (still over the same-host path) and compare.
        let mut back = vec![0u8; REMOTE_LEN as usize];
        e.register_memory(back.as_mut_ptr() as u64, REMOTE_LEN, "cpu:0", true).unwrap();
        let r: Vec<_> = requests(Opcode::Read, back.as_ptr() as u64, seg, target.base, REMOTE_LEN / MIB);
        assert!(support::run_batch(&e, &r).iter().all(|&s| s == COMPLETED));
        let want: &[u8] = if opcode == Opcode::Write { &local } else { &vec![0u8; REMOTE_LEN as usize] };
        let wrong = back.iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 0, "{path:?}: {wrong} wrong bytes in the stopped target");
        e.unregister_memory(back.as_ptr() as u64).unwrap();
    }
    if opcode == Opcode::Read && completed == st.len() {
        // Every read completed: the local buffer now holds the target's zeroes.
        assert!(local.iter().all(|&b| b == 0), "{path:?}: reads completed with wrong bytes");
    }

    if sig == libc::SIGSTOP {
        // The target runs again: the same segment works again (TCP lanes are opened afresh).
        target.signal(libc::SIGCONT);
        let again = requests(Opcode::Write, local_addr, seg, target.base, 8);
        let deadline = Instant::now() + PROGRESS + SLACK;
        let ok = loop {
            // The first try may still meet a lane the stop broke; a fresh one must then work.
            if support::run_batch(&e, &again).iter().all(|&s| s == COMPLETED) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(ok, "{path:?}: no transfer to the target succeeded after SIGCONT");
    }
    // The initiator lets go of everything, each step bounded.
    let e = within(Duration::from_secs(30), "unregister_memory", move || {
        e.unregister_memory(local_addr).unwrap();
        e
    });
    within(Duration::from_secs(30), "destroying the engine", move || drop(e));
    drop(local);
    drop(target);
}

macro_rules! cases {
    ($($name:ident: $path:expr, $sig:expr, $op:expr;)*) => {$(
        #[test]
        fn $name() {
            if std::env::var_os("MC_REL_TARGET_ROLE").is_some() || !enabled() {
                return;
            }
            case($path, $sig, $op);
        }
    )*};
}

cases! {
    killed_mid_write_framed_tcp: Path::Framed, libc::SIGKILL, Opcode::Write;
    killed_mid_read_framed_tcp: Path::Framed, libc::SIGKILL, Opcode::Read;
    killed_mid_write_mooncake_tcp: Path::Unframed, libc::SIGKILL, Opcode::Write;
    killed_mid_read_mooncake_tcp: Path::Unframed, libc::SIGKILL, Opcode::Read;
    killed_mid_write_same_host: Path::SameHost, libc::SIGKILL, Opcode::Write;
    killed_mid_read_same_host: Path::SameHost, libc::SIGKILL, Opcode::Read;
    stopped_mid_write_framed_tcp: Path::Framed, libc::SIGSTOP, Opcode::Write;
    stopped_mid_read_framed_tcp: Path::Framed, libc::SIGSTOP, Opcode::Read;
    stopped_mid_write_mooncake_tcp: Path::Unframed, libc::SIGSTOP, Opcode::Write;
    stopped_mid_read_mooncake_tcp: Path::Unframed, libc::SIGSTOP, Opcode::Read;
    stopped_mid_write_same_host: Path::SameHost, libc::SIGSTOP, Opcode::Write;
    stopped_mid_read_same_host: Path::SameHost, libc::SIGSTOP, Opcode::Read;
}
