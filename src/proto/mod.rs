//! The master's RPC protocol: what store clients and `mooncake_master` say to each other.
//! It belongs to neither side: the store client (`src/store/`) and the master
//! (`src/master/`) both name it, and neither names the other (`tests/layers.rs`).
//!
//! Mooncake's master speaks coro_rpc (yalantinglibs), which nothing outside Mooncake's C++
//! build reads, and the store's clients and master always come from the same build; so this
//! protocol is ours. It is compact and binary:
//!
//! ```text
//! frame := len: u32 LE (of what follows, at most MAX_FRAME) | postcard(Envelope<T>)
//! ```
//!
//! A client sends a [`Request`] and waits for one [`Response`] with the same `id`, one request
//! at a time per connection (clients keep a small pool of connections for concurrency). The
//! first request of every connection is [`Request::Hello`], which names the client process, so
//! that the master can tell when the last connection of a client closed (the process died or
//! closed its store): it then unmounts that client's segments and revokes its unfinished puts.
//!
//! Errors travel as Mooncake's store `ErrorCode` values ([`ErrorCode`]): the C and Python layers
//! return them unchanged, as Mooncake's do.

mod code;
mod frame;

use serde::{Deserialize, Serialize};

pub use code::ErrorCode;
pub use frame::{Envelope, FrameError, decode, encode, frame_len, read_frame, write_frame};

/// Bumped whenever a message changes shape; the master refuses other versions in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side reads (a batch of many keys fits easily; a value never
/// travels through the master).
pub const MAX_FRAME: usize = 64 << 20;

/// A client process, chosen at random by the client (Mooncake uses a UUID the same way).
pub type ClientId = u128;

/// A mounted segment, chosen at random by the client that mounts it.
pub type SegmentId = u128;

/// One put in progress, chosen by the master; `PutEnd`/`PutRevoke` name it.
pub type PutId = u64;

/// Where and how many replicas a put asks for (Mooncake's `ReplicateConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaConfig {
    /// Replicas on distinct segments; 0 is read as 1.
    pub replica_num: u32,
    /// Evicted only after every unpinned object (and, with `soft_pin_ttl_ms`, only for that long).
    pub soft_pin: bool,
    /// Milliseconds the soft pin lasts; `None`: as long as the object does.
    pub soft_pin_ttl_ms: Option<u64>,
    /// Never evicted (still removable).
    pub hard_pin: bool,
    /// Segment names (a client's hostname) tried first, in order.
    pub preferred_segments: Vec<String>,
}

/// One replica: a contiguous range of a mounted segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The Transfer Engine segment name of the owner (its `local_hostname`).
    pub segment_name: String,
    /// Absolute address inside the owner's process.
    pub addr: u64,
}

/// An object as a reader finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub size: u64,
    /// Every replica holds all `size` bytes; at least one.
    pub replicas: Vec<Replica>,
    /// The read lease granted with this answer: the master neither frees nor reuses the
    /// replicas' space for this long after it sent the answer. A reader whose copy ends later
    /// than that (measured from before it sent the request) cannot trust the bytes.
    pub lease_ttl_ms: u64,
    /// Names this read in `ReadsDone`: once every reader of a removed or replaced version
    /// said it is done, its space is freed without waiting for the lease to run out.
    pub read_id: u64,
}

/// Space reserved for one put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutSlot {
    pub put_id: PutId,
    /// Where to write all the bytes, once per replica.
    pub replicas: Vec<Replica>,
}

/// One key of a batched put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutItem {
    pub key: String,
    pub size: u64,
}

/// A requests' outcome: a value, or one of Mooncake's codes.
pub type Outcome<T> = Result<T, ErrorCode>;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First request on each connection. Answer: `Hello`.
    Hello { protocol: u32, client: ClientId },
    /// Heartbeat (every second while a client lives). Answer: `Pong`.
    Ping { client: ClientId },
    /// Offer `size` bytes at `base` of engine segment `name` (which this client owns).
    /// Answer: `Done`.
    MountSegment { client: ClientId, segment: SegmentId, name: String, base: u64, size: u64 },
    /// Withdraw a segment: its objects' replicas there are dropped. Answer: `Unmounted`.
    UnmountSegment { client: ClientId, segment: SegmentId },
    /// Reserve space for `key`. `upsert`: replace an existing object when this put ends
    /// (otherwise an existing key is `ObjectAlreadyExists`). Answer: `Put`.
    PutStart { client: ClientId, key: String, size: u64, config: ReplicaConfig, upsert: bool },
    /// Every replica of put `put_id` is written: the object becomes visible. Answer: `Done`.
    PutEnd { client: ClientId, key: String, put_id: PutId },
    /// Put `put_id` failed: its space is freed, the object stays as it was. Answer: `Done`.
    PutRevoke { client: ClientId, key: String, put_id: PutId },
    /// `PutStart` for many keys (one config). Answer: `PutBatch`, one outcome per item.
    BatchPutStart { client: ClientId, items: Vec<PutItem>, config: ReplicaConfig, upsert: bool },
    /// `PutEnd` (`revoke`: `PutRevoke`) for many puts. Answer: `Codes`.
    BatchPutFinish { client: ClientId, puts: Vec<(String, PutId)>, revoke: bool },
    /// The replicas of `key`, with a read lease. Answer: `Object`.
    GetReplicas { key: String },
    /// `GetReplicas` for many keys. Answer: `Objects`.
    BatchGetReplicas { keys: Vec<String> },
    /// Whether `key` is visible (grants a read lease when it is). Answer: `Flags`.
    BatchExists { keys: Vec<String> },
    /// Remove `key` (`force`: even while leased). Answer: `Done`.
    Remove { key: String, force: bool },
    /// Remove every key matching `pattern` (Rust regex syntax, ECMAScript-like). Answer: `Count`.
    RemoveByRegex { pattern: String, force: bool },
    /// Remove every key (leased ones only with `force`). Answer: `Count`.
    RemoveAll { force: bool },
    /// Liveness of the master itself. Answer: `Done`.
    Health,
    /// These reads (`(key, ObjectInfo::read_id)`) have finished copying. Answer: `Done`.
    ReadsDone { reads: Vec<(String, u64)> },
}

/// Request kinds by name, in [`Request::kind_index`] order (messages, metrics).
pub const REQUEST_KINDS: [&str; 17] = [
    "Hello",
    "Ping",
    "MountSegment",
    "UnmountSegment",
    "PutStart",
    "PutEnd",
    "PutRevoke",
    "BatchPutStart",
    "BatchPutFinish",
    "GetReplicas",
    "BatchGetReplicas",
    "BatchExists",
    "Remove",
    "RemoveByRegex",
    "RemoveAll",
    "Health",
    "ReadsDone",
];

impl Request {
    /// The position of this request's kind in [`REQUEST_KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Request::Hello { .. } => 0,
            Request::Ping { .. } => 1,
            Request::MountSegment { .. } => 2,
            Request::UnmountSegment { .. } => 3,
            Request::PutStart { .. } => 4,
            Request::PutEnd { .. } => 5,
            Request::PutRevoke { .. } => 6,
            Request::BatchPutStart { .. } => 7,
            Request::BatchPutFinish { .. } => 8,
            Request::GetReplicas { .. } => 9,
            Request::BatchGetReplicas { .. } => 10,
            Request::BatchExists { .. } => 11,
            Request::Remove { .. } => 12,
            Request::RemoveByRegex { .. } => 13,
            Request::RemoveAll { .. } => 14,
            Request::Health => 15,
            Request::ReadsDone { .. } => 16,
        }
    }

    /// The request's name.
    pub fn kind(&self) -> &'static str {
        REQUEST_KINDS[self.kind_index()]
    }
}

/// What the master answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed as a whole.
    Error(ErrorCode),
    /// Success with nothing to report.
    Done,
    Hello {
        protocol: u32,
        /// `--default_kv_lease_ttl`, milliseconds.
        lease_ttl_ms: u64,
        /// A client that sends no ping for this long is dropped (`--client_ttl`).
        client_ttl_ms: u64,
    },
    /// `known`: false when the master no longer knows this client (it expired or the master
    /// restarted): the client mounts its segments again.
    Pong {
        known: bool,
    },
    /// The segment is gone from the index. Readers may still hold leases on its bytes for up
    /// to `wait_ms`: the owner keeps the memory registered that long before freeing it.
    Unmounted {
        wait_ms: u64,
    },
    Put(PutSlot),
    PutBatch(Vec<Outcome<PutSlot>>),
    Codes(Vec<Outcome<()>>),
    Object(ObjectInfo),
    Objects(Vec<Outcome<ObjectInfo>>),
    Flags(Vec<Outcome<bool>>),
    Count(i64),
}
