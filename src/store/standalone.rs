//! `mooncake_client`: the standalone store client. It owns a segment and an engine, and serves
//! the dummy clients of this host (`setup_dummy(..., "<host>:<port>")`) until SIGINT/SIGTERM,
//! then unmounts its segment and exits 0. Flags are Mooncake's (gflags syntax).

use clap::Parser;

use super::dummy::DummyServer;
use super::size::parse_size;
use super::{Store, StoreConfig};

/// Mooncake's standalone store client: owns a segment and serves dummy clients on this host.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mooncake_client",
    version,
    rename_all = "snake_case",
    max_term_width = 100,
    args_override_self = true
)]
pub struct ClientFlags {
    /// Local hostname (the engine's segment name; a port is added when it has none).
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// The port dummy clients name in `setup_dummy(…, "<host>:<port>")`.
    #[arg(long, default_value_t = 50052)]
    pub port: u16,
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub master_server_address: String,
    #[arg(long, default_value = "http://127.0.0.1:8080/metadata")]
    pub metadata_server: String,
    /// Size of the segment contributed ("4 GB", "512MB", bytes).
    #[arg(long, default_value = "4 GB")]
    pub global_segment_size: String,
    /// Size of the staging buffer.
    #[arg(long, default_value = "0")]
    pub local_buffer_size: String,
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    #[arg(long, default_value = "")]
    pub device_names: String,
    /// Accepted for compatibility; each dummy has its own thread.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// Not available in this build (accepted, logged).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = crate::gflags::clap_bool)]
    pub enable_offload: bool,
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = crate::gflags::clap_bool)]
    pub start_offload_rpc_server: bool,
    #[arg(long, default_value = "default")]
    pub tenant_id: String,
    /// Not available in this build (accepted, logged).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = crate::gflags::clap_bool)]
    pub enable_http_server: bool,
    #[arg(long, default_value_t = 9300)]
    pub http_port: u16,
}

/// The boolean flags, for gflags' `--noflag` spelling.
const BOOL_FLAGS: &[&str] = &["enable_offload", "start_offload_rpc_server", "enable_http_server"];

/// Runs `mooncake_client` with a command line; the exit status.
pub fn main_with_args(args: Vec<String>) -> i32 {
    let name = args.first().cloned().unwrap_or_else(|| "mooncake_client".into());
    let flags = match ClientFlags::try_parse_from(crate::gflags::normalize(args, BOOL_FLAGS)) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    crate::logging::init();
    match run(&name, &flags) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{name}: {e}");
            eprintln!("{name}: {e}");
            1
        }
    }
}

fn run(name: &str, flags: &ClientFlags) -> Result<(), String> {
    let size = |name: &str, v: &str| parse_size(v).ok_or_else(|| format!("--{name}={v:?} is not a size"));
    for (name, on) in [("enable_offload", flags.enable_offload), ("enable_http_server", flags.enable_http_server)] {
        if on {
            tracing::warn!("--{name} is not available in this build; ignored");
        }
    }
    let mut config = StoreConfig::new(&flags.host, &flags.metadata_server, &flags.master_server_address);
    config.global_segment_size = size("global_segment_size", &flags.global_segment_size)?;
    config.local_buffer_size = size("local_buffer_size", &flags.local_buffer_size)?;
    config.protocol = flags.protocol.clone();
    config.device_name = flags.device_names.clone();
    // The signal handler goes in before any thread starts, so every thread inherits it.
    let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let store = Store::setup(&config).map_err(|e| e.to_string())?;
    let real = store.real().ok_or("not a real client")?;
    let server = DummyServer::start(real, flags.port)
        .map_err(|e| format!("cannot serve dummy clients on port {}: {e}", flags.port))?;
    tracing::info!(hostname = %store.hostname(), port = flags.port, "mooncake_client ready");
    // The one line saying where it listens (tests wait for `… ready`): the segment's name, and
    // the abstract unix socket dummy clients of this host connect to.
    println!(
        "{name} ready: segment {}; listening for dummy clients on @{} (port {})",
        store.hostname(),
        server.socket_name(),
        flags.port
    );
    let mut signals = signals;
    let _ = signals.forever().next();
    tracing::info!("mooncake_client stopping");
    drop(server);
    store.close().map_err(|e| e.to_string())
}
