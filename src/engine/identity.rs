//! An engine's name, published host and handshake listener, as Mooncake's `init` picks them
//! (`wire.md` §1).
//!
//! - P2P: the host part of `local_server_name` is kept, the handshake port is random, and the
//!   name becomes `"<host>:<port>"`; the published host is that host.
//! - Metadata server (HTTP, etcd, redis): the name is `local_server_name` verbatim; the
//!   published host is `MC_TCP_BIND_ADDRESS`, else the first UP non-loopback IPv4 address; the
//!   port is random, unless `MC_LEGACY_RPC_PORT_BINDING` takes host and port from the name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use super::{Error, Result};
use crate::config::Config;
use crate::error::Code;
use crate::metadata::naming;

pub(super) struct Identity {
    pub server_name: String,
    pub public_host: String,
    pub listener: TcpListener,
}

impl Identity {
    pub fn rpc_port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

fn socket_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::new(Code::Socket, format!("{what}: {e}"))
}

fn random_listener(config: &Config) -> Result<TcpListener> {
    naming::bind_random_port(handshake_bind_ip(config)?, config.min_rpc_port, config.max_rpc_port, config.use_ipv6)
        .map_err(socket_error(format!("no free handshake port in {}..={}", config.min_rpc_port, config.max_rpc_port)))
}

pub(super) fn p2p(local_server_name: &str, config: &Config) -> Result<Identity> {
    let host = naming::host_part(local_server_name.trim());
    if host.is_empty() {
        return Err(Error::invalid(format!("local_server_name {local_server_name:?} has no host part")));
    }
    let listener = random_listener(config)?;
    let port = listener.local_addr().map_err(socket_error("handshake listener".into()))?.port();
    Ok(Identity { server_name: format!("{}:{port}", naming::wrap_ipv6(&host)), public_host: host, listener })
}

pub(super) fn with_metadata_server(local_server_name: &str, config: &Config) -> Result<Identity> {
    let name = local_server_name.trim();
    if name.is_empty() {
        return Err(Error::invalid("local_server_name is empty"));
    }
    if config.legacy_rpc_port_binding {
        let (host, port) = naming::split_host_port(name, config.default_handshake_port);
        let ip = handshake_bind_ip(config)?;
        let listener = naming::bind_listener(SocketAddr::new(ip, port), config.use_ipv6)
            .map_err(socket_error(format!("MC_LEGACY_RPC_PORT_BINDING: cannot listen on port {port}")))?;
        return Ok(Identity { server_name: name.to_string(), public_host: host, listener });
    }
    let public_host = match &config.bind_address {
        Some(a) => a.clone(),
        None => naming::first_lan_ipv4().ok_or_else(|| {
            Error::new(Code::Socket, "no UP non-loopback IPv4 address to publish (set MC_TCP_BIND_ADDRESS)")
        })?,
    };
    Ok(Identity { server_name: name.to_string(), public_host, listener: random_listener(config)? })
}

fn parse_bind_address(config: &Config) -> Result<Option<IpAddr>> {
    match &config.bind_address {
        None => Ok(None),
        Some(a) => a
            .parse::<IpAddr>()
            .map(Some)
            .map_err(|_| Error::invalid(format!("MC_TCP_BIND_ADDRESS={a:?} is not an IP address"))),
    }
}

/// The handshake listener's address: `MC_TCP_BIND_ADDRESS`, else all IPv4 addresses (all
/// addresses with `MC_USE_IPV6`), as Mooncake listens.
fn handshake_bind_ip(config: &Config) -> Result<IpAddr> {
    Ok(parse_bind_address(config)?.unwrap_or(if config.use_ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }))
}

/// The data listener: `MC_TCP_BIND_ADDRESS`, else dual-stack `[::]` (IPv4 where IPv6 is off).
pub(super) fn data_listener(config: &Config) -> std::io::Result<TcpListener> {
    let (min, max) = (config.min_rpc_port, config.max_rpc_port);
    match parse_bind_address(config).ok().flatten() {
        Some(ip) => naming::bind_random_port(ip, min, max, false),
        None => naming::bind_random_port(IpAddr::V6(Ipv6Addr::UNSPECIFIED), min, max, true)
            .or_else(|_| naming::bind_random_port(IpAddr::V4(Ipv4Addr::UNSPECIFIED), min, max, false)),
    }
}
