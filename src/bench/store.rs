//! `mooncake-bench store`: put/get latency and bandwidth of the store, measured the way
//! `benches/store_bench.py` measures either Python package (rounds of K fresh keys: put each,
//! get each, `remove_all`; per-call latency p50/p99, keys/s and GB/s of 1e9 bytes).
//!
//! Scenarios: `remote` (a second process — this command with `--role=owner` — contributes the
//! segment and this one is a pure client, so every byte crosses processes) and `local` (this
//! process contributes the segment: the memcpy path). Without `--master_server_address` a
//! `mooncake_master` next to this executable is started on free loopback ports (with its
//! HTTP metadata server) and stopped afterwards.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;

use super::BenchError;
use crate::store::{KeyBuffer, ReplicaConfig, Store, StoreConfig};

const MIB: u64 = 1 << 20;

/// Store put/get benchmark (the scenarios of `benches/store_bench.py`).
#[derive(Debug, Clone, Parser)]
#[command(name = "mooncake-bench store", rename_all = "snake_case", max_term_width = 100)]
pub struct StoreFlags {
    /// `client` (measure) or `owner` (contribute a segment until stdin closes).
    #[arg(long, default_value = "client", value_parser = ["client", "owner"])]
    pub role: String,
    /// `remote`, `local`, or both (comma-separated).
    #[arg(long, default_value = "remote,local")]
    pub scenarios: String,
    /// The master; empty: start one.
    #[arg(long, default_value = "")]
    pub master_server_address: String,
    /// The engine's metadata server; empty: the started master's HTTP metadata server.
    #[arg(long, default_value = "")]
    pub metadata_server: String,
    /// Segment contributed by the owner (MiB).
    #[arg(long, default_value_t = 2048)]
    pub segment_mib: u64,
    /// Staging buffer of the measuring client (MiB).
    #[arg(long, default_value_t = 512)]
    pub local_buffer_mib: u64,
    /// Registered buffer for the zero-copy APIs (MiB): first half source, second half target.
    #[arg(long, default_value_t = 512)]
    pub reg_mib: u64,
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "4096,65536,1048576,16777216")]
    pub sizes: Vec<u64>,
    /// APIs: bytes (put/get), zerocopy (put_from/get_into), batch_bytes (put_batch/get_batch),
    /// batch_zc (batch_put_from/batch_get_into).
    #[arg(long, value_delimiter = ',', default_value = "bytes,zerocopy,batch_bytes,batch_zc")]
    pub apis: Vec<String>,
    /// Keys per batched call.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Seconds of put time per (api, size).
    #[arg(long, default_value_t = 1.0)]
    pub duration: f64,
    /// At most this many keys per round, and at most `round_mib` MiB per round.
    #[arg(long, default_value_t = 512)]
    pub keys_cap: u64,
    #[arg(long, default_value_t = 256)]
    pub round_mib: u64,
    #[arg(long, default_value_t = 200)]
    pub max_rounds: u64,
    /// One JSON object per row instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `mooncake-bench store …` (`args[0]` is `store`).
pub fn main(args: Vec<String>) -> i32 {
    let flags = match StoreFlags::try_parse_from(crate::gflags::normalize(args, &["json"])) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let run = if flags.role == "owner" { owner(&flags) } else { client(&flags) };
    match run {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mooncake-bench store: {e}");
            1
        }
    }
}

fn config(master: &str, metadata: &str, segment: u64, staging: u64) -> StoreConfig {
    let mut c = StoreConfig::new("127.0.0.1", metadata, master);
    c.global_segment_size = segment;
    c.local_buffer_size = staging;
    c
}

fn setup_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::setup(e.to_string())
}

fn owner(flags: &StoreFlags) -> Result<(), BenchError> {
    let c = config(&flags.master_server_address, &flags.metadata_server, flags.segment_mib * MIB, 16 * MIB);
    let store = Store::setup(&c).map_err(setup_error)?;
    println!("OWNER READY {}", store.hostname());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    store.close().map_err(setup_error)
}

/// A child process stopped (by PID) when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        // An owner stops when its stdin closes; a master on SIGTERM.
        if self.0.stdin.take().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup_error)?;
    Ok(l.local_addr().map_err(setup_error)?.port())
}

fn wait_port(port: u16) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(BenchError::setup(format!("nothing listens on port {port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The executable running this bench, when `current_exe` is not it (a console script running
/// the library inside Python): `cli::bench` sets it from `args[0]`.
static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();

/// Records the path this bench was started by; owners are started the same way, and the
/// master is looked for next to it. Only the first call counts.
pub fn set_launcher(path: PathBuf) {
    let _ = LAUNCHER.set(path);
}

fn launcher() -> Result<PathBuf, BenchError> {
    match LAUNCHER.get() {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe().map_err(setup_error),
    }
}

fn start_master() -> Result<(Spawned, String, String), BenchError> {
    let exe = launcher()?;
    let binary = exe.with_file_name("mooncake_master");
    let (rpc, http, metrics) = (free_port()?, free_port()?, free_port()?);
    let child = Command::new(&binary)
        .args([
            "--rpc_address=127.0.0.1".to_string(),
            format!("--rpc_port={rpc}"),
            "--metrics_host=127.0.0.1".to_string(),
            format!("--metrics_port={metrics}"),
            "--enable_http_metadata_server=true".to_string(),
            "--http_metadata_server_host=127.0.0.1".to_string(),
            format!("--http_metadata_server_port={http}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::setup(format!("cannot start {}: {e}", binary.display())))?;
    let child = Spawned(child);
    wait_port(rpc)?;
    wait_port(http)?;
    Ok((child, format!("127.0.0.1:{rpc}"), format!("http://127.0.0.1:{http}/metadata")))
}

fn start_owner(flags: &StoreFlags, master: &str, metadata: &str) -> Result<Spawned, BenchError> {
    let exe = launcher()?;
    let mut child = Command::new(exe)
        .args([
            "store".to_string(),
            "--role=owner".to_string(),
            format!("--master_server_address={master}"),
            format!("--metadata_server={metadata}"),
            format!("--segment_mib={}", flags.segment_mib),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(setup_error)?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).map_err(setup_error)? == 0 {
            return Err(BenchError::setup("the owner process exited before it was ready".into()));
        }
        if line.starts_with("OWNER READY") {
            return Ok(Spawned(child));
        }
    }
}

fn client(flags: &StoreFlags) -> Result<(), BenchError> {
    let mut own_master = None;
    let (master, metadata) = if flags.master_server_address.is_empty() {
        let (child, addr, url) = start_master()?;
        own_master = Some(child);
        (addr, url)
    } else {
        (flags.master_server_address.clone(), flags.metadata_server.clone())
    };
    for scenario in flags.scenarios.split(',') {
        let (owner, segment) = match scenario {
            "remote" => (Some(start_owner(flags, &master, &metadata)?), 0),
            "local" => (None, flags.segment_mib * MIB),
            other => return Err(BenchError::usage(format!("--scenarios: unknown scenario {other:?}"))),
        };
        let store =
            Store::setup(&config(&master, &metadata, segment, flags.local_buffer_mib * MIB)).map_err(setup_error)?;
        let mut reg = vec![0u8; (flags.reg_mib * MIB) as usize].into_boxed_slice();
        store.register_buffer(reg.as_ptr() as u64, reg.len() as u64).map_err(setup_error)?;
        for api in &flags.apis {
            for &size in &flags.sizes {
                let row = measure(&store, flags, api, size, &mut reg)?;
                row.print(scenario, flags.json);
            }
        }
        store.unregister_buffer(reg.as_ptr() as u64).map_err(setup_error)?;
        store.close().map_err(setup_error)?;
        drop(owner);
    }
    drop(own_master);
    Ok(())
}

/// Per-call latencies of one phase.
#[derive(Default)]
struct Phase {
    calls_ns: Vec<u64>,
    keys: u64,
    seconds: f64,
}

impl Phase {
    fn time<T>(&mut self, keys: u64, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let ns = t.elapsed().as_nanos() as u64;
        self.calls_ns.push(ns);
        self.seconds += ns as f64 / 1e9;
        self.keys += keys;
        out
    }

    fn summary(&mut self, size: u64) -> serde_json::Value {
        self.calls_ns.sort_unstable();
        let pct = |q: f64| {
            let i =
                ((q * (self.calls_ns.len().saturating_sub(1)) as f64).round() as usize).min(self.calls_ns.len() - 1);
            self.calls_ns[i] as f64 / 1e3
        };
        serde_json::json!({
            "keys": self.keys,
            "calls": self.calls_ns.len(),
            "seconds": self.seconds,
            "ops_per_s": self.keys as f64 / self.seconds,
            "GBps": (self.keys * size) as f64 / self.seconds / 1e9,
            "lat_p50_us": pct(0.5),
            "lat_p99_us": pct(0.99),
        })
    }
}

struct Row {
    api: String,
    size: u64,
    verified: bool,
    put: serde_json::Value,
    get: serde_json::Value,
}

impl Row {
    fn print(&self, scenario: &str, json: bool) {
        if json {
            let row = serde_json::json!({"scenario": scenario, "api": self.api, "size": self.size,
                "verified": self.verified, "put": self.put, "get": self.get});
            println!("{row}");
            return;
        }
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "[{scenario}] {:11} {:>9}B put {:9.0} op/s {:.3} GB/s p50={:.1}us p99={:.1}us | get {:9.0} op/s {:.3} GB/s p50={:.1}us p99={:.1}us verified={}",
            self.api,
            self.size,
            f(&self.put, "ops_per_s"),
            f(&self.put, "GBps"),
            f(&self.put, "lat_p50_us"),
            f(&self.put, "lat_p99_us"),
            f(&self.get, "ops_per_s"),
            f(&self.get, "GBps"),
            f(&self.get, "lat_p50_us"),
            f(&self.get, "lat_p99_us"),
            self.verified
        );
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::setup(format!("{what} failed: {e}"))
}

fn measure(store: &Store, flags: &StoreFlags, api: &str, size: u64, reg: &mut [u8]) -> Result<Row, BenchError> {
    let keys_per_round = (flags.round_mib * MIB / size).clamp(1, flags.keys_cap) as usize;
    let batch = flags.batch.clamp(1, keys_per_round);
    let value = {
        let mut v = vec![0u8; size as usize];
        v.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u64).wrapping_mul(2654435761).wrapping_shr(7) as u8);
        v
    };
    let half = reg.len() as u64 / 2;
    let slots = (half / size).max(1);
    let src = reg.as_ptr() as u64;
    let dst = src + half;
    for j in 0..slots.min(keys_per_round as u64) as usize {
        reg[j * size as usize..(j + 1) * size as usize].copy_from_slice(&value);
    }
    let cfg = ReplicaConfig { replica_num: 1, ..Default::default() };
    let (mut put, mut get) = (Phase::default(), Phase::default());
    let mut verified = true;
    for round in 0..flags.max_rounds {
        let keys: Vec<String> = (0..keys_per_round).map(|i| format!("{api}-{size}-r{round}-k{i}")).collect();
        let at = |base: u64, i: usize| base + (i as u64 % slots) * size;
        match api {
            "bytes" => {
                for k in &keys {
                    put.time(1, || store.put_parts(k, &[&value], &cfg, false)).map_err(|e| failed("put", e))?;
                }
                for (i, k) in keys.iter().enumerate() {
                    let v = get.time(1, || store.get(k)).map_err(|e| failed("get", e))?;
                    verified &= v.len() as u64 == size && (i > 0 || v == value);
                }
            }
            "zerocopy" => {
                for (i, k) in keys.iter().enumerate() {
                    put.time(1, || store.put_from(k, at(src, i), size, &cfg, false))
                        .map_err(|e| failed("put_from", e))?;
                }
                for (i, k) in keys.iter().enumerate() {
                    let n = get.time(1, || store.get_into(k, at(dst, i), size)).map_err(|e| failed("get_into", e))?;
                    verified &= n == size;
                }
            }
            "batch_bytes" => {
                for chunk in keys.chunks(batch) {
                    let items: Vec<(&str, &[u8])> = chunk.iter().map(|k| (k.as_str(), value.as_slice())).collect();
                    let out = put.time(chunk.len() as u64, || store.put_batch(&items, &cfg, false));
                    out.into_iter().try_for_each(|r| r.map_err(|e| failed("put_batch", e)))?;
                }
                for chunk in keys.chunks(batch) {
                    let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    let out = get.time(chunk.len() as u64, || store.get_batch(&names));
                    for (j, r) in out.into_iter().enumerate() {
                        let v = r.map_err(|e| failed("get_batch", e))?;
                        verified &= v.len() as u64 == size && (j > 0 || v == value);
                    }
                }
            }
            "batch_zc" => {
                for (c, chunk) in keys.chunks(batch).enumerate() {
                    let items: Vec<KeyBuffer<'_>> = chunk
                        .iter()
                        .enumerate()
                        .map(|(j, k)| KeyBuffer { key: k, addr: at(src, c * batch + j), len: size })
                        .collect();
                    let out = put.time(chunk.len() as u64, || store.batch_put_from(&items, &cfg, false));
                    out.into_iter().try_for_each(|r| r.map_err(|e| failed("batch_put_from", e)))?;
                }
                for (c, chunk) in keys.chunks(batch).enumerate() {
                    let items: Vec<KeyBuffer<'_>> = chunk
                        .iter()
                        .enumerate()
                        .map(|(j, k)| KeyBuffer { key: k, addr: at(dst, c * batch + j), len: size })
                        .collect();
                    let out = get.time(chunk.len() as u64, || store.batch_get_into(&items));
                    for r in out {
                        verified &= r.map_err(|e| failed("batch_get_into", e))? == size;
                    }
                }
            }
            other => return Err(BenchError::usage(format!("--apis: unknown api {other:?}"))),
        }
        if matches!(api, "zerocopy" | "batch_zc") {
            verified &= reg[half as usize..(half + size) as usize] == value[..];
        }
        store.remove_all(true).map_err(|e| failed("remove_all", e))?;
        if put.seconds >= flags.duration {
            break;
        }
    }
    Ok(Row { api: api.to_string(), size, verified, put: put.summary(size), get: get.summary(size) })
}
