//! Real processes for the store tests: `mooncake_master` (our binary) on free loopback ports,
//! and segment owners that run in a child copy of the test binary (the `#[ignore]`d
//! `owner_process` test of each binary, selected with `--exact`), all stopped by PID.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::store::{Store, StoreConfig};

use super::servers::free_port;

/// One `mooncake_master` with its embedded HTTP metadata server.
pub struct Master {
    child: Child,
    pub rpc_port: u16,
    pub http_port: u16,
    pub metrics_port: u16,
}

impl Master {
    pub fn start(extra: &[&str]) -> Master {
        // Free ports are picked, then bound by the master: another process may take one in
        // between (the master then exits with "Address already in use"); try fresh ones.
        for _ in 0..5 {
            if let Some(m) = Master::try_start(extra) {
                return m;
            }
        }
        panic!("mooncake_master exited early five times");
    }

    fn try_start(extra: &[&str]) -> Option<Master> {
        let (rpc_port, http_port, metrics_port) = (free_port(), free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_mooncake_master"))
            .args([
                "--rpc_address=127.0.0.1".to_string(),
                format!("--rpc_port={rpc_port}"),
                "--metrics_host=127.0.0.1".to_string(),
                format!("--metrics_port={metrics_port}"),
                "--enable_http_metadata_server=true".to_string(),
                "--http_metadata_server_host=127.0.0.1".to_string(),
                format!("--http_metadata_server_port={http_port}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("start mooncake_master");
        let mut master = Master { child, rpc_port, http_port, metrics_port };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [rpc_port, http_port, metrics_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if master.child.try_wait().unwrap().is_some() {
                    return None;
                }
                assert!(Instant::now() < deadline, "mooncake_master did not listen on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Exited after all three answered: one of them was another process's.
        std::thread::sleep(Duration::from_millis(50));
        if master.child.try_wait().unwrap().is_some() {
            return None;
        }
        Some(master)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    pub fn metadata(&self) -> String {
        format!("http://127.0.0.1:{}/metadata", self.http_port)
    }

    /// A client config against this master (metadata through its HTTP server).
    pub fn config(&self, segment: u64) -> StoreConfig {
        let mut c = StoreConfig::new("127.0.0.1", &self.metadata(), &self.addr());
        c.global_segment_size = segment;
        c.local_buffer_size = 16 << 20;
        c
    }

    pub fn client(&self, segment: u64) -> Store {
        Store::setup(&self.config(segment)).expect("store setup")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A segment owner in another process: a child copy of this test binary running the
/// binary's `owner_process` test, which sets up a store with a segment of `segment` bytes,
/// prints its hostname, and waits for its stdin to close.
pub struct Owner {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub hostname: String,
}

impl Owner {
    pub fn start(master: &Master, segment: u64) -> Owner {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["owner_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("STORE_TEST_MASTER", master.addr())
            .env("STORE_TEST_METADATA", master.metadata())
            .env("STORE_TEST_SEGMENT", segment.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start owner");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let hostname = loop {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the owner exited before it was ready");
            // libtest prints `test owner_process ... ` on the same line first.
            if let Some((_, name)) = line.trim().split_once("OWNER READY ") {
                break name.to_string();
            }
        };
        Owner { child, _stdout: stdout, hostname }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies without closing its store.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closing stdin: the owner closes its store and exits 0.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "owner exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the owner did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The body of each binary's `owner_process` test (run only inside an `Owner`).
pub fn owner_main() {
    let master = std::env::var("STORE_TEST_MASTER").expect("run through support::store::Owner");
    let metadata = std::env::var("STORE_TEST_METADATA").unwrap();
    let segment: u64 = std::env::var("STORE_TEST_SEGMENT").unwrap().parse().unwrap();
    let mut config = StoreConfig::new("127.0.0.1", &metadata, &master);
    config.global_segment_size = segment;
    let store = Store::setup(&config).expect("owner setup");
    println!("OWNER READY {}", store.hostname());
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    store.close().expect("owner close");
}

/// A cheap checksum (FNV-1a, 64 bit) for comparing large values.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
