//! `mooncake_http_metadata_server`: the wheel's HTTP metadata server command, rebuilt over
//! `mooncake::metadata::http_server` (same flags and defaults: `--host 0.0.0.0 --port 8080
//! --log-level INFO`). Exits 0 on SIGINT or SIGTERM, 1 when the address cannot be bound.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use clap::{Parser, ValueEnum};

use crate::metadata::http_server::{self, Flavour, ServerOptions};

/// HTTP Metadata Server for Mooncake
#[derive(Parser, Debug)]
#[command(name = "mooncake_http_metadata_server", version)]
struct Args {
    /// Port to listen on
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Host to bind to
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Logging level
    #[arg(long = "log-level", value_enum, ignore_case = true, default_value = "INFO")]
    log_level: LogLevel,
    /// Answer as `mooncake_master --enable_http_metadata_server` does (keys not decoded,
    /// GET /health) instead of as the wheel's server (an extension of ours)
    #[arg(long)]
    master_embedded: bool,
    /// Largest PUT body accepted, in bytes; longer ones get 413 (an extension of ours; default:
    /// the wheel's 1 MiB, or 16 MiB with --master-embedded)
    #[arg(long)]
    max_body_bytes: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "UPPER")]
enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// Runs the server with its command line (`args[0]`: the name it was run as); the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let (_, args) = super::program_args(args, "mooncake_http_metadata_server");
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging(args.log_level);
    let bind = match resolve(&args.host, args.port) {
        Ok(bind) => bind,
        Err(e) => {
            tracing::error!("cannot use host {:?}: {e}", args.host);
            return 1;
        }
    };
    let flavour = if args.master_embedded { Flavour::MasterEmbedded } else { Flavour::Standalone };
    let mut options = ServerOptions::new(flavour);
    if let Some(n) = args.max_body_bytes {
        options.max_body_bytes = n;
    }
    let served = http_server::serve_until_signal(bind, options, |server| {
        tracing::info!("HTTP Metadata Server started on {}", server.local_addr());
    });
    match served {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("Server error: cannot serve on {bind}: {e}");
            1
        }
    }
}

/// `host` as an address (a name is resolved; its first address is used, as aiohttp does).
fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

/// Logs to stderr at `level`, unless `RUST_LOG` says otherwise.
fn init_logging(level: LogLevel) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error | LogLevel::Critical => "error",
    };
    let filter = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| level.to_string());
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // `try_init`: a second run in the same process keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
