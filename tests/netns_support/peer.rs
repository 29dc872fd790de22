//! A role process inside a namespace: this test binary, re-executed under `ip netns exec` with
//! the role selected by [`ROLE_VAR`], spoken to in JSON lines over its stdin and stdout.
//!
//! libtest prints its own lines on stdout too (`running 1 test`, `test role_… ... ok`), so
//! protocol lines carry [`MARKER`] and everything else is ignored. stderr (the engine's logs) is
//! kept and printed when the test fails. `ip netns exec` execs the command without forking, so
//! the child's PID is the engine process's PID: [`Peer::start`] checks that, and [`Peer::kill`]
//! and drop signal exactly that PID.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Selects the role in the re-executed test binary.
pub const ROLE_VAR: &str = "MC_NETNS_ROLE";
/// Starts every protocol line a role prints.
pub const MARKER: &str = "@mcns@ ";

/// Lines of stderr kept per process.
const LOG_LINES: usize = 400;

/// A running role process. Killed (SIGKILL to its PID) and reaped on drop.
pub struct Peer {
    pub role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
    log: Arc<Mutex<VecDeque<String>>>,
    exited: Option<ExitStatus>,
    /// The role's `ready` message.
    pub ready: Value,
}

impl Peer {
    /// Starts `role` (the name of its `#[test]` function) in namespace `ns` with `env` added,
    /// and waits (bounded) for its `ready` message.
    pub fn start(ns: &str, role: &str, env: &[(&str, String)]) -> Peer {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(exe).args(["--exact", role, "--nocapture", "--test-threads=1"]);
        // The namespaces stand for separate hosts, but they share this kernel, where the
        // same-host transport would (rightly) bypass the veth link these tests break.
        cmd.env(ROLE_VAR, role).env_remove("RUST_TEST_THREADS").env("MOONCAKE_SHM", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn role");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, messages) = channel();
        // Both readers end when the process exits and its pipes close.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Some(at) = line.find(MARKER) else { continue };
                let text = &line[at + MARKER.len()..];
                let v = serde_json::from_str(text).unwrap_or_else(|e| panic!("bad protocol line {text:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let sink = log.clone();
        std::thread::spawn(move || keep_lines(stderr, &sink));
        let mut peer = Peer { role: role.into(), child, stdin: None, messages, log, exited: None, ready: Value::Null };
        peer.stdin = peer.child.stdin.take();
        let ready = peer.recv(Duration::from_secs(20));
        assert_eq!(ready["event"], "ready", "{role}: first message {ready}");
        assert_eq!(ready["pid"].as_u64(), Some(peer.child.id() as u64), "{role}: `ip netns exec` forked");
        peer.ready = ready;
        peer
    }

    /// The next protocol message, waiting at most `limit`.
    pub fn recv(&mut self, limit: Duration) -> Value {
        match self.messages.recv_timeout(limit) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no message within {limit:?}", self.role),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(Duration::from_secs(5));
                panic!("{}: closed stdout ({status:?}) before answering", self.role)
            }
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, cmd: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).unwrap_or_else(|e| panic!("{}: send: {e}", self.role));
    }

    /// Sends `cmd` and returns its reply, which must say `ok`.
    pub fn call(&mut self, cmd: &Value, limit: Duration) -> Value {
        self.send(cmd);
        let r = self.recv(limit);
        assert_eq!(r["reply"], cmd["cmd"], "{}: reply {r} to {cmd}", self.role);
        assert_eq!(r["ok"], true, "{}: {cmd} failed: {r}", self.role);
        r
    }

    /// SIGKILL to the process's PID, then reaps it (bounded).
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            // `Child::kill` is `kill(pid, SIGKILL)`.
            let _ = self.child.kill();
            self.exited = Some(self.wait_exit(Duration::from_secs(10)).expect("killed process did not exit"));
        }
    }

    /// Closes stdin (the role then stops its engine and exits) and waits at most `limit` for a
    /// successful exit; returns how long the exit took.
    pub fn finish(&mut self, limit: Duration) -> Duration {
        let t = Instant::now();
        drop(self.stdin.take());
        let status = self.wait_exit(limit);
        let status = status.unwrap_or_else(|| panic!("{}: did not exit within {limit:?} of stdin closing", self.role));
        self.exited = Some(status);
        assert!(status.success(), "{}: exited with {status}", self.role);
        t.elapsed()
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.wait_exit(Duration::from_secs(10));
        }
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
            eprintln!("---- stderr of {} (pid {}) ----\n{log}\n----", self.role, self.child.id());
        }
    }
}

fn keep_lines(r: impl Read, log: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(r).lines().map_while(Result::ok) {
        let Ok(mut log) = log.lock() else { return };
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }
}
