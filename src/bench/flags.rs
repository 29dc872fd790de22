//! The command line of `mooncake-bench`: the flags of Mooncake's `transfer_engine_bench`, with
//! its names, meanings and defaults, read the way gflags reads them.
//!
//! gflags spellings accepted: `--flag=value`, `--flag value`, `-flag=value`, `-flag value`, and
//! for booleans `--flag`, `--flag=true|false|1|0|yes|no` and `--noflag`. A repeated flag's last
//! value wins.
//!
//! Defaults are Mooncake's, except three that would send traffic to private addresses:
//! `--metadata_server` defaults to `P2PHANDSHAKE`, `--local_server_name` to `127.0.0.1`, and
//! `--segment_id` has no default (the initiator requires it).

use clap::Parser;

use super::BenchError;

/// Mooncake's `transfer_engine_bench`, rebuilt over libmooncake.
///
/// Target mode registers the buffer(s), prints `listening on HOST:PORT` and serves until
/// SIGINT/SIGTERM. Initiator mode opens `--segment_id` and runs `--threads` threads, each
/// submitting batches of `--batch_size` blocks of `--block_size` bytes for `--duration` seconds.
#[derive(Debug, Clone, Parser)]
#[command(name = "mooncake-bench", version, rename_all = "snake_case", max_term_width = 100, args_override_self = true)]
pub struct Flags {
    /// Running mode: initiator or target. The initiator reads/writes blocks of the target.
    #[arg(long, default_value = "initiator", value_parser = ["initiator", "target"])]
    pub mode: String,

    /// Operation type: read or write.
    #[arg(long, default_value = "read", value_parser = ["read", "write"])]
    pub operation: String,

    /// Transfer protocol: `tcp` (TCP only), `shm` (the same-host transport, an error when the
    /// target cannot be reached by it), `auto` (same-host where permitted, else TCP). Others,
    /// such as `rdma`, are refused with an error in this build.
    #[arg(long, default_value = "rdma")]
    pub protocol: String,

    /// Metadata connection string; this build supports P2PHANDSHAKE.
    #[arg(long, default_value = "P2PHANDSHAKE")]
    pub metadata_server: String,

    /// Local server name (`host` or `host:port`) peers reach this engine by.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_server_name: String,

    /// Segment to access (initiator): the target's `host:port` as its `listening on` line says.
    #[arg(long)]
    pub segment_id: Option<String>,

    /// Size of each data buffer (one per NUMA node), raised to block_size * batch_size * threads.
    #[arg(long, default_value_t = 1 << 30)]
    pub buffer_size: u64,

    /// Requests per batch.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Bytes of each request.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_size: u64,

    /// Test duration in seconds (fractions allowed here; Mooncake takes whole seconds).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Task submission threads.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,

    /// Discover devices and install the transports they allow, instead of `--protocol`.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::gflags::clap_bool)]
    pub auto_discovery: bool,

    /// Report unit: GB|GiB|Gb|MB|MiB|Mb|KB|KiB|Kb.
    #[arg(long, default_value = "GB")]
    pub report_unit: String,

    /// Digits after the decimal point in the throughput report.
    #[arg(long, default_value_t = 2)]
    pub report_precision: u32,

    /// Backend: classic (tent is not part of this build).
    #[arg(long, default_value = "classic")]
    pub backend: String,

    /// RDMA device names (accepted for compatibility; unused by tcp).
    #[arg(long, default_value = "mlx5_2")]
    pub device_name: String,

    /// RDMA NIC priority matrix file (accepted for compatibility; unused by tcp).
    #[arg(long, default_value = "")]
    pub nic_priority_matrix: String,

    /// Ours: before the timed run, write a pattern over every block the run uses, read it back
    /// into zeroed memory and compare (initiator only).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::gflags::clap_bool)]
    pub verify: bool,

    /// Ours: print one JSON object on stdout instead of the text report.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::gflags::clap_bool)]
    pub json: bool,

    /// Ours: yield the CPU between status polls instead of spinning (Mooncake's bench spins).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::gflags::clap_bool)]
    pub poll_yield: bool,

    /// Ours: seconds one batch may take before its unfinished tasks count as errors and the
    /// thread stops.
    #[arg(long, default_value_t = 60.0)]
    pub batch_timeout: f64,
}

/// Names of the boolean flags, for gflags' `--noflag` spelling.
const BOOL_FLAGS: &[&str] = &["auto_discovery", "verify", "json", "poll_yield"];

/// Rewrites gflags-only spellings (`-flag`, `--noflag`) into ones clap reads.
pub fn normalize<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    crate::gflags::normalize(args, BOOL_FLAGS)
}

impl Flags {
    /// Parses a command line (`args[0]` is the program name). Help and version requests come
    /// back as clap errors too (`Error::exit` prints them and exits 0).
    pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(normalize(args))
    }

    /// Checks what clap cannot, and applies Mooncake's buffer-size adjustment: returns the
    /// warning to print when the buffer was raised.
    pub fn check(&mut self) -> Result<Option<String>, BenchError> {
        if !(self.duration.is_finite() && self.duration >= 0.0) {
            return Err(BenchError::usage(format!("--duration={} is not a number of seconds >= 0", self.duration)));
        }
        if !(self.batch_timeout.is_finite() && self.batch_timeout > 0.0) {
            return Err(BenchError::usage(format!("--batch_timeout={} must be > 0", self.batch_timeout)));
        }
        if self.backend != "classic" {
            return Err(BenchError::usage(format!(
                "--backend={:?}: only the classic backend is part of this build",
                self.backend
            )));
        }
        if self.mode == "initiator" && self.segment_id.as_deref().is_none_or(str::is_empty) {
            return Err(BenchError::usage(
                "initiator mode needs --segment_id=HOST:PORT (the target's `listening on` address)".into(),
            ));
        }
        let need = self
            .block_size
            .checked_mul(self.batch_size as u64)
            .and_then(|n| n.checked_mul(self.threads as u64))
            .ok_or_else(|| BenchError::usage("block_size * batch_size * threads overflows".into()))?;
        if self.buffer_size < need {
            self.buffer_size = need;
            return Ok(Some(format!(
                "buffer size is smaller than block_size * batch_size * threads, adjusted to {need}"
            )));
        }
        Ok(None)
    }

    /// Bytes per report unit, and the unit's name; an unknown unit falls back to GB with a
    /// warning, as Mooncake does.
    pub fn report_unit(&self) -> (f64, String, Option<String>) {
        match unit_bytes(&self.report_unit) {
            Some(b) => (b, self.report_unit.clone(), None),
            None => (
                1e9,
                "GB".into(),
                Some(format!(
                    "report_unit only supports GB|GiB|Gb|MB|MiB|Mb|KB|KiB|Kb, not {:?}; using GB",
                    self.report_unit
                )),
            ),
        }
    }

    pub fn is_write(&self) -> bool {
        self.operation == "write"
    }
}

/// Bytes per second of one unit of `unit`/s (Mooncake's table).
fn unit_bytes(unit: &str) -> Option<f64> {
    Some(match unit {
        "GB" => 1e9,
        "GiB" => (1u64 << 30) as f64,
        "Gb" => 1e9 / 8.0,
        "MB" => 1e6,
        "MiB" => (1u64 << 20) as f64,
        "Mb" => 1e6 / 8.0,
        "KB" => 1e3,
        "KiB" => 1024.0,
        "Kb" => 1e3 / 8.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        let mut v = vec!["mooncake-bench".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        Flags::parse_args(v).unwrap()
    }

    #[test]
    fn defaults_are_mooncakes_except_addresses() {
        let f = parse(&[]);
        assert_eq!((f.mode.as_str(), f.operation.as_str(), f.protocol.as_str()), ("initiator", "read", "rdma"));
        assert_eq!((f.buffer_size, f.batch_size, f.block_size, f.threads), (1 << 30, 128, 65536, 12));
        assert_eq!(f.duration, 10.0);
        assert_eq!((f.metadata_server.as_str(), f.local_server_name.as_str()), ("P2PHANDSHAKE", "127.0.0.1"));
        assert_eq!((f.report_unit.as_str(), f.report_precision), ("GB", 2));
        assert!(f.segment_id.is_none() && !f.verify && !f.json && !f.auto_discovery && !f.poll_yield);
    }

    #[test]
    fn gflags_spellings() {
        let f = parse(&["--mode=target", "--block_size", "4096", "-threads=3", "-batch_size", "7", "--verify"]);
        assert_eq!((f.mode.as_str(), f.block_size, f.threads, f.batch_size, f.verify), ("target", 4096, 3, 7, true));
        let f = parse(&["--verify=false", "--json=1", "--noauto_discovery"]);
        assert!(!f.verify && f.json && !f.auto_discovery);
        let f = parse(&["--verify", "--json", "--duration=0.5"]);
        assert!(f.verify && f.json && f.duration == 0.5);
        let f = parse(&["--threads=2", "--threads=3"]);
        assert_eq!(f.threads, 3, "the last of a repeated flag wins, as in gflags");
    }

    #[test]
    fn bad_values_are_refused() {
        let argv = |a: &[&str]| std::iter::once("b").chain(a.iter().copied()).map(String::from).collect::<Vec<_>>();
        assert!(Flags::parse_args(argv(&["--operation=copy"])).is_err());
        assert!(Flags::parse_args(argv(&["--batch_size=0"])).is_err());
        assert!(Flags::parse_args(argv(&["--verify=maybe"])).is_err());
        assert!(Flags::parse_args(argv(&["--no_such_flag=1"])).is_err());
    }

    #[test]
    fn buffer_is_raised_like_mooncake() {
        let mut f = parse(&["--mode=target", "--buffer_size=1024"]);
        assert!(f.check().unwrap().is_some());
        assert_eq!(f.buffer_size, 65536 * 128 * 12);
        let mut f = parse(&[]);
        assert!(matches!(f.check(), Err(BenchError::Usage(_))), "initiator without --segment_id");
    }

    #[test]
    fn report_units() {
        let mut f = parse(&["--report_unit=MiB"]);
        assert_eq!(f.report_unit().0, 1048576.0);
        f.report_unit = "furlong".into();
        let (b, name, warn) = f.report_unit();
        assert_eq!((b, name.as_str()), (1e9, "GB"));
        assert!(warn.is_some());
    }
}
