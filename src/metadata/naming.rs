//! Server names and ports as Mooncake forms and parses them (`wire.md` §1).
//!
//! A peer is addressed by its server name: `host:port`, `[v6addr]:port`, or a bare host (then
//! the port is `MC_HANDSHAKE_PORT`, 12001 by default).

use std::net::{Ipv6Addr, SocketAddr, TcpListener};

use rand::Rng;

/// True when `s` is an IPv6 address, with or without a `%scope` suffix.
pub fn is_ipv6(s: &str) -> bool {
    let addr = s.split('%').next().unwrap_or(s);
    addr.parse::<Ipv6Addr>().is_ok()
}

/// `host` as it appears before `:port`: IPv6 addresses get brackets.
pub fn wrap_ipv6(host: &str) -> String {
    if is_ipv6(host) { format!("[{host}]") } else { host.to_string() }
}

/// Splits a server name into host and port. A missing or unparsable port gives
/// `default_port`, as Mooncake's `parseHostNameWithPort` does.
pub fn split_host_port(name: &str, default_port: u16) -> (String, u16) {
    let port_of = |s: &str| s.parse::<u16>().unwrap_or(default_port);
    if let Some(rest) = name.strip_prefix('[')
        && let Some(close) = rest.find(']')
        && is_ipv6(&rest[..close])
    {
        let host = rest[..close].to_string();
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => (host, port_of(p)),
            _ => (host, default_port),
        };
    }
    if is_ipv6(name) {
        return (name.to_string(), default_port);
    }
    match name.rfind(':') {
        None => (name.to_string(), default_port),
        Some(i) => (name[..i].to_string(), port_of(&name[i + 1..])),
    }
}

/// The host part of a server name (any port dropped).
pub fn host_part(name: &str) -> String {
    split_host_port(name, 0).0
}

/// Binds a listener on a random free port of `[min, max]`, as Mooncake's
/// `findAvailableTcpPort` picks one (up to 500 random tries), keeping the bound socket so that
/// no other process can take the port between the choice and the use.
pub fn bind_random_port(ip: std::net::IpAddr, min: u16, max: u16, dual_stack: bool) -> std::io::Result<TcpListener> {
    let mut rng = rand::rng();
    let mut last_err = None;
    for _ in 0..500 {
        let port = rng.random_range(min..=max);
        match bind_listener(SocketAddr::new(ip, port), dual_stack) {
            Ok(l) => return Ok(l),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no port tried")))
}

/// Binds one listening socket (backlog 128, `SO_REUSEADDR` so that a restarted engine can take
/// a port still in TIME_WAIT).
pub fn bind_listener(addr: SocketAddr, dual_stack: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// The first UP and RUNNING, non-loopback IPv4 address of this host: what a Mooncake engine
/// publishes in metadata-server mode when `MC_TCP_BIND_ADDRESS` is not set.
pub fn first_lan_ipv4() -> Option<String> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        let up = ifa.flags.contains(InterfaceFlags::IFF_UP) && ifa.flags.contains(InterfaceFlags::IFF_RUNNING);
        if !up || ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        if let Some(v4) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Some(v4.ip().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_mooncake() {
        assert_eq!(split_host_port("127.0.0.1:16156", 12001), ("127.0.0.1".into(), 16156));
        assert_eq!(split_host_port("node1", 12001), ("node1".into(), 12001));
        assert_eq!(split_host_port("[::1]:15000", 12001), ("::1".into(), 15000));
        assert_eq!(split_host_port("[::1]", 12001), ("::1".into(), 12001));
        assert_eq!(split_host_port("fe80::1", 12001), ("fe80::1".into(), 12001));
        assert_eq!(split_host_port("host:notaport", 12001), ("host".into(), 12001));
        assert_eq!(wrap_ipv6("::1"), "[::1]");
        assert_eq!(wrap_ipv6("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn random_port_is_in_range() {
        let l = bind_random_port("127.0.0.1".parse().unwrap(), 15000, 17000, false).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!((15000..=17000).contains(&port));
    }
}
