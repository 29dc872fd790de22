//! Where segment descriptors come from.
//!
//! [`MetadataStore`] is the one interface. [`p2p::P2pMetadata`] (Mooncake's `P2PHANDSHAKE`: no
//! server, the descriptor is fetched from the peer's handshake port) needs no service; the
//! others are [`KvMetadata`] (Mooncake's keys) over a [`KvStore`]: [`http::HttpKv`] always,
//! `etcd::EtcdKv` with the cargo feature `etcd`, `redis::RedisKv` with `redis`. A build without
//! a feature refuses its connection strings with [`Error::Unsupported`] naming the feature.
//! `docs/ARCHITECTURE.md` shows how a segment name becomes a connection for each.

pub mod conns;
pub mod descriptor;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod handshake;
pub mod http;
pub mod http_server;
pub mod kv;
pub mod naming;
pub mod p2p;
#[cfg(feature = "redis")]
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

pub use descriptor::{BufferDesc, Extensions, SegmentDescriptor, ShmOffer};
pub use handshake::HandshakeService;
pub use kv::{KvMetadata, KvStore, RpcMeta};

use crate::config::Config;
use crate::error::Code;
use crate::runtime::RuntimeGuard;

/// Mooncake's connection string for "no metadata server".
pub const P2P_HANDSHAKE: &str = "P2PHANDSHAKE";

/// A failure of the metadata layer, with the peer or key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve host {host:?}: {reason}")]
    Dns { host: String, reason: String },
    #[error("{peer}: {what} failed: {source}")]
    Socket { peer: String, what: &'static str, source: std::io::Error },
    #[error("{peer}: no {what} within {after:?}")]
    Timeout { peer: String, what: &'static str, after: Duration },
    #[error("{0}")]
    Malformed(String),
    #[error("{peer} refused: {reason}")]
    Rejected { peer: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The metadata service has no such key (an engine that is not, or no longer, published).
    #[error("{0}")]
    NotFound(String),
    /// The metadata service is down, slow (past its timeout) or answered with an error.
    #[error("{0}")]
    Service(String),
}

impl Error {
    /// The ABI code this failure is reported with.
    pub fn code(&self) -> Code {
        match self {
            Error::Dns { .. } => Code::Dns,
            Error::Socket { .. } | Error::Timeout { .. } => Code::Socket,
            Error::Malformed(_) => Code::MalformedJson,
            Error::Rejected { .. } => Code::RejectHandshake,
            Error::Unsupported(_) => Code::NotImplemented,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) | Error::Service(_) => Code::Metadata,
        }
    }
}

/// A source of segment descriptors, shared by every open segment of one engine.
pub trait MetadataStore: Send + Sync {
    /// The connection string's kind, for logs (`"P2PHANDSHAKE"`).
    fn kind(&self) -> &'static str;
    /// True when descriptors travel over the handshake port (type-1 requests are answered
    /// with the local descriptor); false when a server stores them (answered with `null`).
    fn serves_descriptor_on_handshake(&self) -> bool;
    /// Fetches the current descriptor of segment `name`.
    fn get_segment(&self, name: &str) -> Result<SegmentDescriptor, Error>;
    /// Publishes (or re-publishes) this engine's descriptor.
    fn publish_segment(&self, desc: &SegmentDescriptor) -> Result<(), Error>;
    /// Publishes where this engine's handshake port is (`rpc_meta`); a no-op in P2P mode.
    fn publish_rpc(&self, name: &str, rpc: &RpcMeta) -> Result<(), Error>;
    /// Withdraws this engine's descriptor and RPC entry (destroy, shutdown).
    fn withdraw_segment(&self, name: &str) -> Result<(), Error>;
    /// True while both of this engine's keys are in the service (P2P: always); an engine
    /// re-publishes when a restarted service has lost them.
    fn is_published(&self, name: &str) -> Result<bool, Error>;
    /// The handshake address (host, port) of segment `name`: notifications and probes go there,
    /// and so does data for descriptors without `tcp_data_host`.
    fn rpc_address(&self, name: &str) -> Result<(String, u16), Error>;
    /// Calls `on_change(segment name)` when a segment's descriptor changes or vanishes, where
    /// the service can tell (etcd watches); elsewhere peers see changes when they refetch.
    fn watch_segments(&self, _on_change: Arc<dyn Fn(&str) + Send + Sync>) -> Result<(), Error> {
        Ok(())
    }
}

/// Which backend a connection string selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    P2p,
    Http(String),
    Etcd(String),
    Redis(String),
}

/// Classifies a connection string as Mooncake does: `P2PHANDSHAKE`, `http(s)://…`,
/// `etcd://…` or any string without `://` (etcd), `redis://…`.
pub fn classify(conn: &str) -> Result<Backend, Error> {
    let conn = conn.trim();
    if conn == P2P_HANDSHAKE {
        return Ok(Backend::P2p);
    }
    if conn.is_empty() {
        return Err(Error::InvalidArgument("metadata connection string is empty".into()));
    }
    match conn.split_once("://") {
        Some(("http" | "https", _)) => Ok(Backend::Http(conn.to_string())),
        Some(("etcd", rest)) => Ok(Backend::Etcd(rest.to_string())),
        Some(("redis", _)) => Ok(Backend::Redis(conn.to_string())),
        Some((scheme, _)) => Err(Error::InvalidArgument(format!(
            "metadata connection string {conn:?}: unknown scheme {scheme:?} \
             (expected P2PHANDSHAKE, http://, etcd:// or redis://)"
        ))),
        None => Ok(Backend::Etcd(conn.to_string())),
    }
}

/// Opens the metadata service of a server-backed connection string (HTTP, etcd, redis);
/// P2P needs no service and is set up by the engine itself. etcd and redis need their cargo
/// features; without them the message names the feature.
pub fn open_service(
    backend: &Backend,
    runtime: Arc<RuntimeGuard>,
    config: &Config,
) -> Result<Arc<dyn MetadataStore>, Error> {
    let cluster = config.metadata_cluster_id.as_deref();
    match backend {
        Backend::P2p => Err(Error::InvalidArgument("P2PHANDSHAKE has no metadata service".into())),
        Backend::Http(url) => {
            Ok(Arc::new(KvMetadata::new(http::HttpKv::new(runtime, url, config.metadata_timeout)?, cluster)))
        }
        #[cfg(feature = "etcd")]
        Backend::Etcd(endpoints) => {
            Ok(Arc::new(KvMetadata::new(etcd::EtcdKv::connect(runtime, endpoints, config)?, cluster)))
        }
        #[cfg(not(feature = "etcd"))]
        Backend::Etcd(endpoints) => Err(Error::Unsupported(format!(
            "etcd metadata ({endpoints}) needs the cargo feature `etcd` (Mooncake's USE_ETCD); this build has \
             P2PHANDSHAKE and http://"
        ))),
        #[cfg(feature = "redis")]
        Backend::Redis(url) => Ok(Arc::new(KvMetadata::new(redis::RedisKv::connect(runtime, url, config)?, cluster))),
        #[cfg(not(feature = "redis"))]
        Backend::Redis(url) => Err(Error::Unsupported(format!(
            "redis metadata ({url}) needs the cargo feature `redis`; this build has P2PHANDSHAKE and http://"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_connection_strings() {
        assert_eq!(classify("P2PHANDSHAKE").unwrap(), Backend::P2p);
        assert!(matches!(classify("http://127.0.0.1:8080/metadata").unwrap(), Backend::Http(_)));
        assert!(matches!(classify("etcd://h1:2379,h2:2379").unwrap(), Backend::Etcd(_)));
        assert!(matches!(classify("10.0.0.1:2379").unwrap(), Backend::Etcd(_)));
        assert!(matches!(classify("redis://r:6379").unwrap(), Backend::Redis(_)));
        assert!(classify("ftp://x").is_err());
        assert!(classify("").is_err());
    }
}
