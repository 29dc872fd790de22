//! `tracing` set-up: quiet by default, verbose on request.
//!
//! `RUST_LOG` wins when set (any `tracing` filter). Otherwise `MC_LOG_LEVEL` takes Mooncake's
//! names (`TRACE`, `INFO`, `WARNING`, `ERROR`). The default shows warnings and errors only,
//! because routine operations log at `debug`. Logs go to stderr, as glog's do.

use std::sync::Once;

static INIT: Once = Once::new();

/// Installs the subscriber once per process. A subscriber that the host program installed
/// first is left alone.
pub fn init() {
    INIT.call_once(|| {
        let filter = match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.is_empty() => spec,
            _ => mooncake_level_filter(std::env::var("MC_LOG_LEVEL").ok().as_deref()).to_string(),
        };
        let env_filter = tracing_subscriber::EnvFilter::try_new(&filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(env_filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
    });
}

/// Maps `MC_LOG_LEVEL` to a `tracing` filter.
fn mooncake_level_filter(level: Option<&str>) -> &'static str {
    match level.map(|l| l.trim().to_ascii_uppercase()) {
        Some(l) if l == "TRACE" => "trace",
        Some(l) if l == "DEBUG" => "debug",
        Some(l) if l == "INFO" => "info",
        Some(l) if l == "ERROR" => "error",
        _ => "warn",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_map() {
        assert_eq!(super::mooncake_level_filter(Some("TRACE")), "trace");
        assert_eq!(super::mooncake_level_filter(Some("warning")), "warn");
        assert_eq!(super::mooncake_level_filter(None), "warn");
    }
}
