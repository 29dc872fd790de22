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
pub use frame::{
    Envelope, FrameError, KEEP_SCRATCH, READ_CHUNK, decode, encode, frame_len, read_body, read_frame, write_frame,
};

/// Bumped whenever a message changes shape; the master refuses other versions in `Hello`.
pub const PROTOCOL_VERSION: u32 = 3;

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
    /// Place nothing new on `segment` (its owner unmounts it when its grace period ends;
    /// Mooncake's graceful unmount). Answer: `Done`.
    DrainSegment { client: ClientId, segment: SegmentId },
    /// Copy `key` to segments `targets` (Mooncake's `CreateCopyTask`). Answer: `Task`.
    CreateCopyTask { key: String, targets: Vec<String> },
    /// Move `key`'s replica on `source` to `target` (Mooncake's `CreateMoveTask`). Answer: `Task`.
    CreateMoveTask { key: String, source: String, target: String },
    /// A task's state. Answer: `TaskInfo`.
    QueryTask { task: TaskId },
    /// Up to `max` pending tasks assigned to `client`, now processing. Answer: `Tasks`.
    FetchTasks { client: ClientId, max: u32 },
    /// A task `client` executed ended. Answer: `Done`.
    CompleteTask { client: ClientId, task: TaskId, success: bool, message: String },
    /// Reserve replicas of `key` on `targets` to be copied from its replica on `source`.
    /// Answer: `ReplicaOp`.
    ReplicaCopyStart { client: ClientId, key: String, source: String, targets: Vec<String> },
    /// Reserve a replica of `key` on `target` to replace its replica on `source`. Answer:
    /// `ReplicaOp`.
    ReplicaMoveStart { client: ClientId, key: String, source: String, target: String },
    /// The bytes of replica operation `op` are written (`revoke`: the copy failed). Answer: `Done`.
    ReplicaOpEnd { client: ClientId, key: String, op: u64, revoke: bool },
    /// Drops the replicas of each of `keys` on segment name `segment_name` (`""`: every
    /// replica, the whole object) where `client` wrote the object, no read lease holds it and
    /// no replica operation is in progress (Mooncake's `BatchReplicaClear`); other keys are
    /// skipped. Answer: `Keys`, those cleared.
    ReplicaClear { client: ClientId, keys: Vec<String>, segment_name: String },
}

/// Request kinds by name, in [`Request::kind_index`] order (messages, metrics).
pub const REQUEST_KINDS: [&str; 27] = [
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
    "DrainSegment",
    "CreateCopyTask",
    "CreateMoveTask",
    "QueryTask",
    "FetchTasks",
    "CompleteTask",
    "ReplicaCopyStart",
    "ReplicaMoveStart",
    "ReplicaOpEnd",
    "ReplicaClear",
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
            Request::DrainSegment { .. } => 17,
            Request::CreateCopyTask { .. } => 18,
            Request::CreateMoveTask { .. } => 19,
            Request::QueryTask { .. } => 20,
            Request::FetchTasks { .. } => 21,
            Request::CompleteTask { .. } => 22,
            Request::ReplicaCopyStart { .. } => 23,
            Request::ReplicaMoveStart { .. } => 24,
            Request::ReplicaOpEnd { .. } => 25,
            Request::ReplicaClear { .. } => 26,
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
    Task(TaskId),
    TaskInfo(TaskInfo),
    Tasks(Vec<TaskAssignment>),
    ReplicaOp(ReplicaOp),
    /// Keys (`ReplicaClear`: those cleared).
    Keys(Vec<String>),
}

/// A copy or move task, chosen at random by the master (Mooncake's task UUID).
pub type TaskId = u128;

/// What a task does (Mooncake's `TaskType`, same numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    ReplicaCopy = 0,
    ReplicaMove = 1,
}

/// Where a task is (Mooncake's `TaskStatus`, same numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    Pending = 0,
    Processing = 1,
    Failed = 2,
    Success = 3,
}

/// A task as `QueryTask` reports it (Mooncake's `QueryTaskResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: TaskId,
    pub kind: TaskKind,
    pub state: TaskState,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The client that executes it (the owner of the source replica).
    pub assigned_client: ClientId,
    pub message: String,
}

/// A task handed to the client that executes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAssignment {
    pub id: TaskId,
    pub kind: TaskKind,
    pub key: String,
    /// The segment name whose replica is the source.
    pub source: String,
    /// The segment names to copy to (one for a move).
    pub targets: Vec<String>,
}

/// Replicas reserved by `ReplicaCopyStart`/`ReplicaMoveStart`: copy `size` bytes from
/// `source` into each of `targets`, then `ReplicaOpEnd`. No target: every target already
/// holds a replica (end it at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaOp {
    pub op: u64,
    pub size: u64,
    pub source: Replica,
    pub targets: Vec<Replica>,
}
