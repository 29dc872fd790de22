//! `mooncake_master`'s command line, parsed the way gflags parses it.
//!
//! Syntax: `--name=value`, `--name value` (not for bools), `--name` (bool: true), `--noname`
//! (bool: false), bools as `true|false|t|f|yes|no|y|n|1|0` in any case, one or two dashes,
//! `--` ends the flags. gflags' own `--flagfile`, `--fromenv`, `--tryfromenv` and `--undefok`
//! work as there. An unknown flag is an error (`ERROR: unknown command line flag 'x'`, exit 1);
//! `--help` (and the other `--help*`) prints the flags and exits 1, `--version` exits 0, as
//! gflags does.
//!
//! The flag set is the wheel's ([`table::FLAGS`]). [`IMPLEMENTED`] lists what this build acts
//! on; every other flag is accepted, and the ones given are reported once at start-up as
//! ignored. `--enable_ha=true` is refused: this build has no HA. `--config_path` reads a JSON
//! file of `flag: value` pairs (Mooncake's master config keys are its flag names), which flags
//! given on the command line override, as in Mooncake; YAML files are refused.

mod parse;
pub mod table;

use std::collections::{BTreeMap, HashSet};

use super::{MasterConfig, Policy};
pub use parse::{FlagError, parse_bool, parse_duration_ms};

/// A flag's value type (gflags' types, plus Mooncake's duration strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Double,
    Str,
    /// A string of milliseconds, or a number with `ms`, `s`, `m` or `h`.
    Duration,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int32 => "int32",
            Kind::Int64 => "int64",
            Kind::Uint32 => "uint32",
            Kind::Uint64 => "uint64",
            Kind::Double => "double",
            Kind::Str | Kind::Duration => "string",
        }
    }
}

/// One flag of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    /// The source file that defines it in Mooncake (for `--help`).
    pub module: &'static str,
    pub help: &'static str,
}

/// The flags this build acts on (plus gflags' own, handled by the parser).
pub const IMPLEMENTED: &[&str] = &[
    "allow_evict_soft_pinned_objects",
    "client_ttl",
    "config_path",
    "default_kv_lease_ttl",
    "default_kv_soft_pin_ttl",
    "enable_ha",
    "enable_http_metadata_server",
    "enable_metric_reporting",
    "eviction_high_watermark_ratio",
    "eviction_ratio",
    "http_metadata_server_host",
    "http_metadata_server_port",
    "max_kv_soft_pin_ttl",
    "max_threads",
    "metrics_host",
    "metrics_port",
    "port",
    "put_start_discard_timeout_sec",
    "put_start_release_timeout_sec",
    "rpc_address",
    "rpc_enable_tcp_no_delay",
    "rpc_port",
    "rpc_thread_num",
    // gflags' own.
    "flagfile",
    "fromenv",
    "tryfromenv",
    "undefok",
];

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Serve with this configuration; `ignored` names the flags given that this build does not
    /// implement (to be logged once).
    Run { config: Box<MasterConfig>, ignored: Vec<String> },
    /// Print this usage text and exit 1 (gflags' `--help`).
    Help(String),
    /// Print this version line and exit 0.
    Version(String),
}

/// The flags as set: every flag's value, and which were given explicitly.
#[derive(Debug, Clone, Default)]
pub struct FlagValues {
    values: BTreeMap<&'static str, String>,
    explicit: HashSet<&'static str>,
}

impl FlagValues {
    fn defaults() -> FlagValues {
        let values = table::FLAGS.iter().map(|s| (s.name, s.default.to_string())).collect();
        FlagValues { values, explicit: HashSet::new() }
    }

    fn str(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    fn bool(&self, name: &str) -> bool {
        parse_bool(self.str(name)).unwrap_or(false)
    }

    fn int(&self, name: &str) -> i128 {
        parse::parse_int(self.str(name)).unwrap_or(0)
    }

    fn double(&self, name: &str) -> f64 {
        self.str(name).trim().parse().unwrap_or(0.0)
    }

    fn duration(&self, name: &str) -> std::time::Duration {
        std::time::Duration::from_millis(parse_duration_ms(self.str(name)).unwrap_or(0))
    }

    /// Whether `name` was given (on the command line, a flag file or the environment).
    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains(name)
    }
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, FlagError> {
    let mut values = FlagValues::defaults();
    let outcome = parse::apply_args(&mut values, args.into_iter().collect())?;
    if let Some(cmd) = outcome {
        return Ok(cmd);
    }
    let path = values.str("config_path").to_string();
    if !path.is_empty() {
        parse::apply_config_file(&mut values, &path)?;
    }
    to_config(&values)
}

/// The configuration the flags describe (after validation).
fn to_config(v: &FlagValues) -> Result<Command, FlagError> {
    if v.bool("enable_ha") {
        return Err(FlagError(
            "--enable_ha=true: high availability (leader election through etcd) is not available in this \
             build of mooncake_master; run a single master without --enable_ha"
                .into(),
        ));
    }
    let port = |name: &str| -> Result<u16, FlagError> {
        u16::try_from(v.int(name)).map_err(|_| FlagError(format!("--{name}={} is not a TCP port", v.str(name))))
    };
    let rpc_port = if v.int("rpc_port") > 0 { port("rpc_port")? } else { port("port")? };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i128;
    let threads = if v.int("rpc_thread_num") > 0 { v.int("rpc_thread_num") } else { v.int("max_threads").min(cpus) };
    let ratio = |name: &str, lo_open: bool| -> Result<f64, FlagError> {
        let x = v.double(name);
        let ok = if lo_open { x > 0.0 && x <= 1.0 } else { (0.0..=1.0).contains(&x) };
        if ok {
            Ok(x)
        } else {
            Err(FlagError(format!("--{name}={} must be within {}0, 1]", v.str(name), if lo_open { "(" } else { "[" })))
        }
    };
    let secs = |name: &str| std::time::Duration::from_secs(u64::try_from(v.int(name)).unwrap_or(0));
    if v.int("client_ttl") <= 0 {
        return Err(FlagError(format!("--client_ttl={} must be positive", v.str("client_ttl"))));
    }
    let policy = Policy {
        lease_ttl: v.duration("default_kv_lease_ttl"),
        soft_pin_ttl: v.duration("default_kv_soft_pin_ttl"),
        max_soft_pin_ttl: v.duration("max_kv_soft_pin_ttl"),
        allow_evict_soft_pinned: v.bool("allow_evict_soft_pinned_objects"),
        high_watermark: ratio("eviction_high_watermark_ratio", true)?,
        eviction_ratio: ratio("eviction_ratio", false)?,
        client_ttl: secs("client_ttl"),
        put_discard_timeout: secs("put_start_discard_timeout_sec"),
        put_release_timeout: secs("put_start_release_timeout_sec"),
    };
    let config = MasterConfig {
        rpc_address: v.str("rpc_address").to_string(),
        rpc_port,
        rpc_threads: usize::try_from(threads.max(1)).unwrap_or(1),
        rpc_enable_tcp_no_delay: v.bool("rpc_enable_tcp_no_delay"),
        metrics_host: v.str("metrics_host").to_string(),
        metrics_port: port("metrics_port")?,
        enable_metric_reporting: v.bool("enable_metric_reporting"),
        enable_http_metadata_server: v.bool("enable_http_metadata_server"),
        http_metadata_server_host: v.str("http_metadata_server_host").to_string(),
        http_metadata_server_port: port("http_metadata_server_port")?,
        policy,
    };
    let ignored = table::FLAGS
        .iter()
        .filter(|s| v.is_explicit(s.name) && !IMPLEMENTED.contains(&s.name))
        .map(|s| format!("--{}={}", s.name, v.str(s.name)))
        .collect();
    Ok(Command::Run { config: Box::new(config), ignored })
}

/// gflags' `--help` text over our table, marking the flags this build ignores.
pub fn usage() -> String {
    let mut out = String::from(
        "mooncake_master: the Mooncake Store master (libmooncake)\n\nUsage: mooncake_master [--flag=value ...]\n",
    );
    let mut module = "";
    for s in table::FLAGS {
        if s.module != module {
            module = s.module;
            out.push_str(&format!("\n  Flags from {module}:\n"));
        }
        let note = if IMPLEMENTED.contains(&s.name) || s.module.starts_with("gflags_reporting") {
            ""
        } else {
            " [accepted, ignored by this build]"
        };
        let default = if matches!(s.kind, Kind::Str | Kind::Duration) {
            format!("\"{}\"", s.default)
        } else {
            s.default.to_string()
        };
        out.push_str(&format!("    -{} ({}){note} type: {} default: {default}\n", s.name, s.help, s.kind.name()));
    }
    out
}

#[cfg(test)]
mod tests;
