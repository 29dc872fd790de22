//! Mooncake's published wheel as a peer: `tests/interop/wheel_peer.py` in the wheel's venv.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// The venv's python: `MOONCAKE_WHEEL_PYTHON`, else the default venv of `ci/setup-wheel.sh`.
/// `None` when neither exists; tests then skip, unless `MOONCAKE_REQUIRE_WHEEL=1` (CI) makes
/// the absence a failure.
pub fn python() -> Option<PathBuf> {
    let p = std::env::var_os("MOONCAKE_WHEEL_PYTHON").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("ANCHOR_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mooncake-anchor")))?;
        Some(home.join("venv/bin/python"))
    });
    match p {
        Some(p) if p.exists() => Some(p),
        _ => {
            assert!(
                std::env::var_os("MOONCAKE_REQUIRE_WHEEL").is_none(),
                "MOONCAKE_REQUIRE_WHEEL is set but the Mooncake wheel's venv is missing (run ci/setup-wheel.sh)"
            );
            eprintln!("SKIPPED: Mooncake wheel venv not found (run ci/setup-wheel.sh)");
            None
        }
    }
}

/// A running wheel peer. Killed (by PID) on drop.
pub struct WheelPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub session: String,
    pub addr: u64,
    pub len: u64,
}

impl WheelPeer {
    /// Starts a peer with a `buf`-byte buffer; `env` adds variables (`MC_TCP_PROTO`, …).
    pub fn start(python: &PathBuf, buf: u64, env: &[(&str, &str)]) -> WheelPeer {
        WheelPeer::start_with(python, buf, env, &[])
    }

    /// Like `start`, with extra arguments for `wheel_peer.py` (`--guard N`, `--split`).
    pub fn start_with(python: &PathBuf, buf: u64, env: &[(&str, &str)], args: &[&str]) -> WheelPeer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/wheel_peer.py");
        let mut cmd = Command::new(python);
        cmd.arg(script).arg("--buf").arg(buf.to_string()).args(args);
        cmd.env("MC_LOG_LEVEL", "WARNING").env("GLOG_minloglevel", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wheel peer");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let hello = read_json(&mut stdout);
        assert_eq!(hello["rc"], 0, "wheel peer failed to start: {hello}");
        WheelPeer {
            session: hello["session"].as_str().unwrap().to_string(),
            addr: hello["addr"].as_u64().unwrap(),
            len: hello["len"].as_u64().unwrap(),
            child,
            stdin,
            stdout,
        }
    }

    pub fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        read_json(&mut self.stdout)
    }

    pub fn fill(&mut self, offset: u64, len: u64, seed: u64) {
        let r = self.call(json!({"op": "fill", "offset": offset, "len": len, "seed": seed}));
        assert_eq!(r["ok"], true);
    }

    pub fn bytes(&mut self, offset: u64, len: u64) -> Vec<u8> {
        let r = self.call(json!({"op": "bytes", "offset": offset, "len": len}));
        hex(r["hex"].as_str().unwrap())
    }

    /// `batch_transfer_sync_{write,read}` from the wheel's buffer offsets to `remote` addresses.
    pub fn transfer(&mut self, op: &str, target: &str, local: &[u64], remote: &[u64], len: &[u64]) -> i64 {
        let r = self.call(json!({"op": op, "target": target, "local": local, "remote": remote, "len": len}));
        r["rc"].as_i64().unwrap()
    }
}

impl Drop for WheelPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json(r: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("read from wheel peer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("wheel peer said {line:?}: {e}"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
