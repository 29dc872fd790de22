//! Settings read from the environment variables Mooncake deployments already set
//! (listed in `docs/ENV.md`), with Mooncake's defaults.
//!
//! A [`Config`] is read once per engine, when it is created, so that a process can run engines
//! with different settings one after the other (the tests do).

use std::time::Duration;

/// Every setting the engine and its transports use.
#[derive(Debug, Clone)]
pub struct Config {
    /// Range of the random handshake and data ports (`MC_MIN_RPC_PORT`, `MC_MAX_RPC_PORT`).
    pub min_rpc_port: u16,
    pub max_rpc_port: u16,
    /// Port assumed when a peer's name has none (`MC_HANDSHAKE_PORT`).
    pub default_handshake_port: u16,
    /// `MC_TCP_BIND_ADDRESS`: published address in metadata-server mode; when set, our
    /// listeners bind to it too.
    pub bind_address: Option<String>,
    /// `MC_LEGACY_RPC_PORT_BINDING`: take the handshake port from `local_server_name`.
    pub legacy_rpc_port_binding: bool,
    /// `MC_USE_IPV6`: listen for handshakes on IPv6 as well.
    pub use_ipv6: bool,
    /// `MC_HANDSHAKE_CONNECT_TIMEOUT` (seconds).
    pub handshake_connect_timeout: Duration,
    /// `MC_HANDSHAKE_MAX_LENGTH` (bytes, 1 MiB to 128 MiB).
    pub handshake_max_length: usize,
    /// `MC_TCP_LANES_PER_PEER` (1..=16): connections per peer on the initiator side.
    pub tcp_lanes_per_peer: usize,
    /// `MC_TCP_ENABLE_CONNECTION_POOL`: keep data connections open between requests.
    pub tcp_connection_pool: bool,
    /// `MC_TCP_PROTO=1` was set. Mooncake's initiators then speak protocol v1; ours keep v2
    /// towards peers that offer it, because a refused v1 write cannot be reported (see
    /// `docs/C-API.md`). The value is kept so that this is logged once.
    pub tcp_force_v1_requested: bool,
    /// `MC_TCP_STATUS_TIMEOUT_SEC`: longest wait for a v2 status frame.
    pub tcp_status_timeout: Duration,
    /// `MC_TCP_PROGRESS_TIMEOUT_SEC`: a peer that moves no byte for this long fails its tasks.
    pub tcp_progress_timeout: Duration,
    /// `MC_FORCE_TCP`: install TCP whatever discovery finds.
    pub force_tcp: bool,
    /// `MC_TE_FILTERS`: the only RDMA devices discovery keeps (comma-separated; empty: all).
    pub te_filters: Vec<String>,
    /// `MC_TE_FILTERS_EXCLUDE`: RDMA devices discovery drops, unless `MC_TE_FILTERS` is set.
    pub te_filters_exclude: Vec<String>,
    /// `MC_CUSTOM_TOPO_JSON`: a NIC priority matrix file used instead of the discovered one.
    pub custom_topo_json: Option<std::path::PathBuf>,
    /// `MC_METADATA_CLUSTER_ID`: metadata keys live under `mooncake/<id>/`.
    pub metadata_cluster_id: Option<String>,
    /// `MOONCAKE_METADATA_TIMEOUT_MS` (ours; Mooncake's HTTP client uses 3 s): the longest a
    /// metadata request may take before it fails with `ERR_METADATA`.
    pub metadata_timeout: Duration,
    /// `MOONCAKE_METADATA_REFRESH_MS` (ours): how often an engine checks that the metadata
    /// service still has its keys, and re-publishes them if a restarted service lost them.
    pub metadata_refresh: Duration,
    /// `MOONCAKE_METADATA_LEASE_TTL_S` (ours): an engine's keys in etcd (a lease) and redis (an
    /// expiry) outlive its last keep-alive by this long, so a killed engine disappears.
    pub metadata_lease_ttl: Duration,
    /// `MOONCAKE_SHM` (ours): `auto` (default: offer the same-host path and use it where the
    /// kernel permits), `off` (neither), `require` (a same-host peer that cannot be reached
    /// that way is an error instead of falling back to TCP).
    pub same_host: SameHost,
    /// `MOONCAKE_SHM_REVOKE_TIMEOUT_MS` (ours, default 1000): how long unregistering waits for a
    /// same-host copier before cutting it off.
    pub shm_revoke_timeout: Duration,
    /// `MC_REDIS_USERNAME`, `MC_REDIS_PASSWORD`: redis `AUTH`, as Mooncake sends it.
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    /// `MC_REDIS_DB_INDEX` (0..=255, Mooncake's range): the database `SELECT`ed (unset: the
    /// one the URL names, else 0).
    pub redis_db_index: Option<u8>,
}

/// See [`Config::same_host`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameHost {
    Auto,
    Off,
    Require,
}

impl SameHost {
    fn from_env() -> SameHost {
        match std::env::var("MOONCAKE_SHM").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("auto") | Ok("1") => SameHost::Auto,
            Ok("off") | Ok("0") => SameHost::Off,
            Ok("require") => SameHost::Require,
            Ok(other) => {
                tracing::warn!("MOONCAKE_SHM={other:?} is not auto, off or require; using auto");
                SameHost::Auto
            }
        }
    }
}

impl Config {
    /// Reads the environment, falling back to Mooncake's default for every unset or invalid
    /// value (an invalid value is logged once, as Mooncake does).
    pub fn from_env() -> Config {
        // The warnings about invalid values below must reach the log.
        crate::logging::init();
        let (mut min_port, mut max_port) =
            (env_u64("MC_MIN_RPC_PORT", 15000, 1, 65535) as u16, env_u64("MC_MAX_RPC_PORT", 17000, 1, 65535) as u16);
        if min_port > max_port {
            tracing::warn!(min_port, max_port, "MC_MIN_RPC_PORT > MC_MAX_RPC_PORT; using 15000..=17000");
            (min_port, max_port) = (15000, 17000);
        }
        let progress = env_u64("MC_TCP_PROGRESS_TIMEOUT_SEC", 30, 1, 86_400);
        Config {
            min_rpc_port: min_port,
            max_rpc_port: max_port,
            default_handshake_port: env_u64("MC_HANDSHAKE_PORT", 12001, 1, 65535) as u16,
            bind_address: std::env::var("MC_TCP_BIND_ADDRESS").ok().filter(|s| !s.is_empty()),
            legacy_rpc_port_binding: std::env::var_os("MC_LEGACY_RPC_PORT_BINDING").is_some(),
            use_ipv6: std::env::var_os("MC_USE_IPV6").is_some(),
            handshake_connect_timeout: Duration::from_secs(env_u64("MC_HANDSHAKE_CONNECT_TIMEOUT", 5, 1, 3599)),
            handshake_max_length: env_u64("MC_HANDSHAKE_MAX_LENGTH", 1 << 20, 1 << 20, 128 << 20) as usize,
            tcp_lanes_per_peer: env_u64("MC_TCP_LANES_PER_PEER", 4, 1, 16) as usize,
            tcp_connection_pool: env_flag("MC_TCP_ENABLE_CONNECTION_POOL", true),
            tcp_force_v1_requested: std::env::var("MC_TCP_PROTO").is_ok_and(|v| v.trim() == "1"),
            tcp_status_timeout: Duration::from_secs(env_u64("MC_TCP_STATUS_TIMEOUT_SEC", 30, 1, 86_400)),
            tcp_progress_timeout: Duration::from_secs(progress),
            force_tcp: std::env::var_os("MC_FORCE_TCP").is_some(),
            te_filters: parse_list(&std::env::var("MC_TE_FILTERS").unwrap_or_default()),
            te_filters_exclude: parse_list(&std::env::var("MC_TE_FILTERS_EXCLUDE").unwrap_or_default()),
            custom_topo_json: std::env::var_os("MC_CUSTOM_TOPO_JSON").filter(|s| !s.is_empty()).map(Into::into),
            metadata_cluster_id: std::env::var("MC_METADATA_CLUSTER_ID").ok().filter(|s| !s.is_empty()),
            metadata_timeout: Duration::from_millis(env_u64("MOONCAKE_METADATA_TIMEOUT_MS", 3000, 10, 600_000)),
            metadata_refresh: Duration::from_millis(env_u64("MOONCAKE_METADATA_REFRESH_MS", 2000, 10, 3_600_000)),
            metadata_lease_ttl: Duration::from_secs(env_u64("MOONCAKE_METADATA_LEASE_TTL_S", 10, 2, 86_400)),
            same_host: SameHost::from_env(),
            shm_revoke_timeout: Duration::from_millis(env_u64("MOONCAKE_SHM_REVOKE_TIMEOUT_MS", 1000, 1, 600_000)),
            redis_username: std::env::var("MC_REDIS_USERNAME").ok().filter(|s| !s.is_empty()),
            redis_password: std::env::var("MC_REDIS_PASSWORD").ok().filter(|s| !s.is_empty()),
            redis_db_index: std::env::var_os("MC_REDIS_DB_INDEX")
                .is_some()
                .then(|| env_u64("MC_REDIS_DB_INDEX", 0, 0, 255) as u8),
        }
    }

    /// Logs, once per engine, the variables that name features this build does not have.
    pub fn log_ignored_variables(&self) {
        const ABSENT: &[&str] = &[
            #[cfg(not(rdma_transport))]
            "MC_FORCE_HCA",
            #[cfg(not(rdma_transport))]
            "MC_GID_INDEX",
            #[cfg(not(rdma_transport))]
            "MC_SLICE_SIZE",
            "MC_SLICE_TIMEOUT",
            "MC_RDMA_BIND_ADDRESS",
            "MC_TE_METRIC",
            "MC_DISABLE_METACACHE",
            "MC_TE_METADATA_REFRESH_INTERVAL_SECONDS",
        ];
        for name in ABSENT {
            if std::env::var_os(name).is_some() {
                tracing::info!("{name} is set but applies to a feature this build lacks; ignored");
            }
        }
        if self.tcp_force_v1_requested {
            tracing::info!(
                "MC_TCP_PROTO=1: this engine still uses TCP protocol v2 towards peers that offer \
                 it (a refused v1 write cannot be reported); its server answers v1 requests"
            );
        }
    }
}

/// `name` as an integer in `min..=max`; `default` when unset, and (logged) when invalid.
pub(crate) fn env_u64(name: &str, default: u64, min: u64, max: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(raw) => match raw.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                tracing::warn!("{name}={raw:?} is not in {min}..={max}; using {default}");
                default
            }
        },
    }
}

fn env_flag(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"),
    }
}

/// A comma-separated list: names trimmed of spaces and tabs, empty ones dropped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim_matches([' ', '\t'])).filter(|s| !s.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_trimmed_and_empty_names_dropped() {
        let v = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_list(" mlx5_0 ,\tmlx5_2,,"), v(&["mlx5_0", "mlx5_2"]));
        assert!(parse_list("").is_empty() && parse_list(" , ").is_empty());
    }

    #[test]
    fn bounded_values_fall_back_to_default() {
        assert_eq!(env_u64("MOONCAKE_TEST_UNSET_VARIABLE", 7, 1, 9), 7);
    }
}
