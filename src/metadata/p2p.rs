//! `P2PHANDSHAKE`: no metadata server. A segment's name is `host:handshake_port`, and its
//! descriptor is fetched from that port with a type-1 request (`wire.md` §2.1).

use std::sync::{Arc, OnceLock, Weak};

use serde_json::{Value, json};

use super::handshake::{self, ClientLimits, FrameType, HandshakeService};
use super::{Error, MetadataStore, RpcMeta, SegmentDescriptor, naming};
use crate::runtime::RuntimeGuard;

/// The P2P metadata "store": every lookup is a handshake with the peer itself.
pub struct P2pMetadata {
    runtime: Arc<RuntimeGuard>,
    limits: ClientLimits,
    default_port: u16,
    /// The local engine, whose descriptor is the body of a type-1 request (as Mooncake sends
    /// it; the target ignores it).
    local: OnceLock<Weak<dyn HandshakeService>>,
}

impl P2pMetadata {
    pub fn new(runtime: Arc<RuntimeGuard>, limits: ClientLimits, default_port: u16) -> P2pMetadata {
        P2pMetadata { runtime, limits, default_port, local: OnceLock::new() }
    }

    /// Sets the engine whose descriptor accompanies requests.
    pub fn set_local(&self, local: Weak<dyn HandshakeService>) {
        let _ = self.local.set(local);
    }
}

impl MetadataStore for P2pMetadata {
    fn kind(&self) -> &'static str {
        super::P2P_HANDSHAKE
    }

    fn serves_descriptor_on_handshake(&self) -> bool {
        true
    }

    fn get_segment(&self, name: &str) -> Result<SegmentDescriptor, Error> {
        let (host, port) = self.rpc_address(name)?;
        let body =
            self.local.get().and_then(Weak::upgrade).and_then(|s| s.local_descriptor()).unwrap_or_else(|| json!({}));
        let reply = self.runtime.block_on(handshake::request(&host, port, FrameType::Metadata, &body, self.limits))?;
        if reply == Value::Null {
            return Err(Error::Malformed(format!(
                "{name}: the peer answered the descriptor request with null (it runs with a \
                 metadata server, not P2PHANDSHAKE)"
            )));
        }
        SegmentDescriptor::from_json(&reply).map_err(|e| Error::Malformed(format!("{name}: {e}")))
    }

    fn publish_segment(&self, _desc: &SegmentDescriptor) -> Result<(), Error> {
        // The descriptor is served live from the handshake port; nothing to store.
        Ok(())
    }

    fn publish_rpc(&self, _name: &str, _rpc: &RpcMeta) -> Result<(), Error> {
        Ok(())
    }

    fn withdraw_segment(&self, _name: &str) -> Result<(), Error> {
        Ok(())
    }

    fn is_published(&self, _name: &str) -> Result<bool, Error> {
        Ok(true)
    }

    fn rpc_address(&self, name: &str) -> Result<(String, u16), Error> {
        let (host, port) = naming::split_host_port(name, self.default_port);
        if host.is_empty() {
            return Err(Error::InvalidArgument(format!("segment name {name:?} has no host")));
        }
        Ok((host, port))
    }
}
