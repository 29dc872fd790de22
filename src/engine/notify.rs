//! Notifications: received ones wait in a bounded inbox until drained ([`NotifyInbox`]: per
//! sender and in all, the oldest dropped first); outgoing ones travel as type-2 handshake
//! requests to the peer's RPC port (`wire.md` §2.3).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use super::batch::{NotifySender, PendingNotify};
use super::error::{Error, Result};
use super::segments::SegmentCache;
use crate::error::Code;
use crate::metadata::MetadataStore;
use crate::metadata::handshake::{self, ClientLimits, FrameType};
use crate::runtime::RuntimeGuard;
use crate::transport::log_limit::LogLimit;

/// Most notifications kept from one sender (`MC_NOTIFY_MAX_PER_PEER`).
pub const DEFAULT_MAX_PER_PEER: u64 = 4096;
/// Most bytes (name and message) kept from one sender (`MC_NOTIFY_MAX_BYTES_PER_PEER`).
pub const DEFAULT_MAX_BYTES_PER_PEER: u64 = 16 << 20;
/// Most notifications kept from all senders together (`MC_NOTIFY_MAX`).
pub const DEFAULT_MAX_TOTAL: u64 = 65_536;
/// Most bytes kept from all senders together (`MC_NOTIFY_MAX_BYTES`).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 64 << 20;

/// What the inbox holds at most; beyond it the oldest notifications go first.
///
/// The defaults leave room for what a consumer that polls `getNotifs` now and then receives
/// (Mooncake's users send a short message per finished batch: 4,096 of them from one peer
/// is far more than a poll interval sees) while a peer that floods us costs at most 16 MiB,
/// and all peers together 64 MiB. The sender is the notification's `name` (its segment, as
/// the sender states it); the totals also bound a sender that changes names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    pub max_per_peer: u64,
    pub max_bytes_per_peer: u64,
    pub max_total: u64,
    pub max_total_bytes: u64,
}

impl InboxLimits {
    /// The defaults, each overridable by its `MC_NOTIFY_*` variable (docs/ENV.md).
    pub fn from_env() -> InboxLimits {
        use crate::config::env_u64;
        InboxLimits {
            max_per_peer: env_u64("MC_NOTIFY_MAX_PER_PEER", DEFAULT_MAX_PER_PEER, 1, 1 << 24),
            max_bytes_per_peer: env_u64("MC_NOTIFY_MAX_BYTES_PER_PEER", DEFAULT_MAX_BYTES_PER_PEER, 1 << 10, 1 << 40),
            max_total: env_u64("MC_NOTIFY_MAX", DEFAULT_MAX_TOTAL, 1, 1 << 26),
            max_total_bytes: env_u64("MC_NOTIFY_MAX_BYTES", DEFAULT_MAX_TOTAL_BYTES, 1 << 10, 1 << 42),
        }
    }
}

/// Received notifications, oldest first, within [`InboxLimits`]: a notification that would
/// pass a limit pushes out the oldest ones of its sender (per-sender limits) or of anyone
/// (total limits); one larger than a byte limit by itself is dropped. Drops are counted and
/// logged at most once per [`DROP_LOG_INTERVAL`], with how many went since the last line.
pub struct NotifyInbox {
    limits: InboxLimits,
    state: Mutex<InboxState>,
    drops: LogLimit,
}

/// Drop warnings are logged at most this often (a flood makes one line, not one per message).
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
struct InboxState {
    /// By arrival number.
    queue: BTreeMap<u64, (String, String)>,
    next: u64,
    bytes: u64,
    /// Per sender: its notifications' arrival numbers, oldest first, and their bytes.
    peers: HashMap<String, (VecDeque<u64>, u64)>,
    dropped: u64,
}

fn size_of(name: &str, msg: &str) -> u64 {
    (name.len() + msg.len()) as u64
}

impl InboxState {
    /// Removes the notification number `seq` (the oldest of its sender).
    fn remove(&mut self, seq: u64) {
        let Some((name, msg)) = self.queue.remove(&seq) else { return };
        let size = size_of(&name, &msg);
        self.bytes -= size;
        if let Some((seqs, bytes)) = self.peers.get_mut(&name) {
            if seqs.front() == Some(&seq) {
                seqs.pop_front();
            } else {
                seqs.retain(|&s| s != seq);
            }
            *bytes -= size;
            if seqs.is_empty() {
                self.peers.remove(&name);
            }
        }
        self.dropped += 1;
    }
}

impl Default for NotifyInbox {
    fn default() -> NotifyInbox {
        NotifyInbox::new(InboxLimits::from_env())
    }
}

impl NotifyInbox {
    pub fn new(limits: InboxLimits) -> NotifyInbox {
        NotifyInbox { limits, state: Mutex::new(InboxState::default()), drops: LogLimit::new(DROP_LOG_INTERVAL) }
    }

    pub fn limits(&self) -> InboxLimits {
        self.limits
    }

    pub fn push(&self, name: String, msg: String) {
        let l = self.limits;
        let size = size_of(&name, &msg);
        let mut st = self.state.lock();
        let before = st.dropped;
        if size > l.max_bytes_per_peer || size > l.max_total_bytes {
            st.dropped += 1;
        } else {
            // The sender's oldest first, then anyone's.
            while let Some((seqs, bytes)) = st.peers.get(&name)
                && (seqs.len() as u64 >= l.max_per_peer || bytes + size > l.max_bytes_per_peer)
            {
                let oldest = seqs[0];
                st.remove(oldest);
            }
            while st.queue.len() as u64 >= l.max_total || st.bytes + size > l.max_total_bytes {
                let Some((&oldest, _)) = st.queue.first_key_value() else { break };
                st.remove(oldest);
            }
            let seq = st.next;
            st.next += 1;
            st.bytes += size;
            let peer = st.peers.entry(name.clone()).or_default();
            peer.0.push_back(seq);
            peer.1 += size;
            st.queue.insert(seq, (name.clone(), msg));
        }
        let dropped = st.dropped - before;
        let total = st.dropped;
        drop(st);
        if dropped > 0
            && let Some(suppressed) = self.drops.allow()
        {
            tracing::warn!(
                sender = %name,
                dropped_total = total,
                suppressed,
                "notification inbox full: dropping the oldest notifications (limits: {} and {} bytes per \
                 sender, {} and {} bytes in all; MC_NOTIFY_* raise them)",
                l.max_per_peer,
                l.max_bytes_per_peer,
                l.max_total,
                l.max_total_bytes
            );
        }
    }

    /// Takes every queued notification, oldest first.
    pub fn drain(&self) -> Vec<(String, String)> {
        let mut st = self.state.lock();
        st.peers.clear();
        st.bytes = 0;
        std::mem::take(&mut st.queue).into_values().collect()
    }

    /// Notifications and bytes queued now.
    pub fn held(&self) -> (usize, u64) {
        let st = self.state.lock();
        (st.queue.len(), st.bytes)
    }

    /// Notifications dropped since the engine started.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> InboxLimits {
        InboxLimits { max_per_peer: 4, max_bytes_per_peer: 4096, max_total: 6, max_total_bytes: 8192 }
    }

    #[test]
    fn a_sender_over_its_count_loses_its_oldest() {
        let inbox = NotifyInbox::new(limits());
        inbox.push("quiet".into(), "keep".into());
        for i in 0..10 {
            inbox.push("loud".into(), format!("m{i}"));
        }
        let got = inbox.drain();
        let msgs: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(msgs, ["keep", "m6", "m7", "m8", "m9"]);
        assert_eq!(inbox.dropped(), 6);
        assert_eq!(inbox.held(), (0, 0));
    }

    #[test]
    fn bytes_are_bounded_per_sender_and_in_all() {
        let inbox = NotifyInbox::new(limits());
        let kib = "x".repeat(1000);
        for i in 0..20 {
            inbox.push(format!("p{}", i % 3), format!("{i}{kib}"));
        }
        let (count, bytes) = inbox.held();
        assert!(bytes <= 8192 && count <= 6, "{count} notifications, {bytes} bytes");
        let got = inbox.drain();
        // The newest survive, in arrival order.
        let first: Vec<u32> = got.iter().map(|(_, m)| m.trim_end_matches('x').parse().unwrap()).collect();
        assert_eq!(first.last(), Some(&19));
        assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
        // One larger than a sender may hold is dropped by itself; the others stay.
        inbox.push("a".into(), "small".into());
        inbox.push("a".into(), "y".repeat(5000));
        assert_eq!(inbox.drain(), vec![("a".to_string(), "small".to_string())]);
    }
}
