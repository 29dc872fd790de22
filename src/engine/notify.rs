//! Notifications: received ones wait in an inbox until drained; outgoing ones travel as type-2
//! handshake requests to the peer's RPC port (`wire.md` §2.3).

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::json;

use super::batch::{NotifySender, PendingNotify};
use super::error::{Error, Result};
use super::segments::SegmentCache;
use crate::error::Code;
use crate::metadata::MetadataStore;
use crate::metadata::handshake::{self, ClientLimits, FrameType};
use crate::runtime::RuntimeGuard;

/// Received notifications, oldest first.
#[derive(Default)]
pub struct NotifyInbox {
    queue: Mutex<Vec<(String, String)>>,
}

impl NotifyInbox {
    pub fn push(&self, name: String, msg: String) {
        self.queue.lock().push((name, msg));
    }

    /// Takes every queued notification.
    pub fn drain(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.queue.lock())
    }
}

/// Sends notifications to open segments.
pub struct NotifyOutbox {
    runtime: Arc<RuntimeGuard>,
    segments: Arc<SegmentCache>,
    /// Finds the handshake port of a segment opened without one (`rpc_meta` of a peer that
    /// published its data host in its descriptor).
    metadata: Arc<dyn MetadataStore>,
    limits: ClientLimits,
    /// This engine's own handshake address: `LOCAL_SEGMENT` notifications go there, as in
    /// Mooncake, and arrive in this engine's inbox.
    own_address: (String, u16),
    /// Batch notifications, delivered one after the other by one runtime task, so that they
    /// arrive in the order their batches completed (concurrent deliveries could overtake each
    /// other). The task ends when the outbox is dropped and the queue is drained.
    batch_queue: tokio::sync::mpsc::UnboundedSender<QueuedNotify>,
}

/// A batch notification waiting for delivery.
struct QueuedNotify {
    host: String,
    port: u16,
    name: String,
    msg: String,
}

impl NotifyOutbox {
    pub fn new(
        runtime: Arc<RuntimeGuard>,
        segments: Arc<SegmentCache>,
        metadata: Arc<dyn MetadataStore>,
        limits: ClientLimits,
        own_address: (String, u16),
    ) -> NotifyOutbox {
        let (batch_queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<QueuedNotify>();
        runtime.handle().spawn(async move {
            while let Some(n) = queued.recv().await {
                if let Err(e) = deliver(n.host, n.port, n.name, n.msg, limits).await {
                    tracing::warn!("batch notification not delivered: {e}");
                }
            }
        });
        NotifyOutbox { runtime, segments, metadata, limits, own_address, batch_queue }
    }

    /// The handshake address notifications to `segment` go to.
    pub(crate) fn address(&self, segment: i32) -> Result<(String, u16)> {
        if segment == 0 {
            return Ok(self.own_address.clone());
        }
        let entry = self
            .segments
            .get(segment)
            .ok_or_else(|| Error::new(Code::Metadata, format!("notify: segment {segment} is not open")))?;
        match &entry.rpc {
            Some(rpc) => Ok(rpc.clone()),
            None => Ok(self.metadata.rpc_address(&entry.name)?),
        }
    }

    /// Sends one notification and waits for the peer's acknowledgement.
    pub fn send(&self, segment: i32, name: &str, msg: &str) -> Result<()> {
        let (host, port) = self.address(segment)?;
        self.runtime.block_on(deliver(host, port, name.to_string(), msg.to_string(), self.limits))
    }
}

impl NotifySender for NotifyOutbox {
    fn send_batch_notify(&self, n: PendingNotify) {
        let resolved = match n.address {
            Some(a) => Ok(a),
            None => self.address(n.segment),
        };
        let (host, port) = match resolved {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("batch notification not sent: {e}");
                return;
            }
        };
        // Completion runs on a data thread: hand the request to the runtime, never wait here.
        if self.batch_queue.send(QueuedNotify { host, port, name: n.name, msg: n.msg }).is_err() {
            tracing::warn!("batch notification not sent: the engine is shutting down");
        }
    }
}

async fn deliver(host: String, port: u16, name: String, msg: String, limits: ClientLimits) -> Result<()> {
    let reply =
        handshake::request(&host, port, FrameType::Notify, &json!({"name": name, "notify_msg": msg}), limits).await?;
    match reply.get("notify_msg").and_then(|v| v.as_str()) {
        Some(ack) if !ack.is_empty() => Ok(()),
        _ => Err(Error::new(Code::RejectHandshake, format!("{host}:{port} did not acknowledge the notification"))),
    }
}
