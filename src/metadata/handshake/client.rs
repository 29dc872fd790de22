//! The handshake client: one request per connection, closed as soon as the reply is read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frame::{self, FrameError, FrameType};
use crate::metadata::Error;

/// Bounds of one handshake request.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    pub max_frame: usize,
}

/// Sends one typed request to `host:port` and returns the JSON of the reply, checking that the
/// reply has the request's type. Every resolved address is tried in turn, as Mooncake does.
pub async fn request(
    host: &str,
    port: u16,
    kind: FrameType,
    body: &Value,
    limits: ClientLimits,
) -> Result<Value, Error> {
    let peer = format!("{}:{port}", crate::metadata::naming::wrap_ipv6(host));
    let addrs = resolve(host, port).await?;
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return exchange(stream, &peer, kind, body, limits).await,
            Ok(Err(e)) => last = Some(Error::Socket { peer: peer.clone(), what: "connect", source: e }),
            Err(_) => {
                last = Some(Error::Timeout { peer: peer.clone(), what: "connect", after: limits.connect_timeout })
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Dns { host: host.to_string(), reason: "no address".into() }))
}

async fn exchange(
    mut stream: TcpStream,
    peer: &str,
    kind: FrameType,
    body: &Value,
    limits: ClientLimits,
) -> Result<Value, Error> {
    let _ = stream.set_nodelay(true);
    let bytes = frame::encode(kind, false, body);
    let io = async {
        stream.write_all(&bytes).await?;
        frame::read_frame(&mut stream, limits.max_frame).await
    };
    let reply = match tokio::time::timeout(limits.reply_timeout, io).await {
        Err(_) => return Err(Error::Timeout { peer: peer.to_string(), what: "reply", after: limits.reply_timeout }),
        Ok(Err(FrameError::Io(e))) => {
            return Err(Error::Socket { peer: peer.to_string(), what: "handshake", source: e });
        }
        Ok(Err(e)) => return Err(Error::Malformed(format!("{peer}: handshake reply: {e}"))),
        Ok(Ok(reply)) => reply,
    };
    if reply.kind != kind || reply.typeless {
        return Err(Error::Rejected {
            peer: peer.to_string(),
            reason: format!("replied with type {:?} to a {kind:?} request", reply.kind),
        });
    }
    Ok(reply.body)
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.split('%').next().unwrap_or(host).parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(list) => {
            let list: Vec<_> = list.collect();
            if list.is_empty() {
                Err(Error::Dns { host: host.to_string(), reason: "no address".into() })
            } else {
                Ok(list)
            }
        }
        Err(e) => Err(Error::Dns { host: host.to_string(), reason: e.to_string() }),
    }
}
