//! The master's RPC protocol: what store clients and `mooncake_master` say to each other.
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

use serde::{Deserialize, Serialize};

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

/// Mooncake's store `ErrorCode` (mooncake-store/include/types.h), the members we return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i32)]
pub enum ErrorCode {
    InternalError = -1,
    BufferOverflow = -10,
    SegmentNotFound = -101,
    SegmentAlreadyExists = -102,
    ClientNotFound = -103,
    NoAvailableHandle = -200,
    InvalidKey = -400,
    InvalidParams = -600,
    IllegalClient = -601,
    InvalidWrite = -700,
    InvalidRead = -701,
    InvalidReplica = -702,
    ReplicaIsNotReady = -703,
    ObjectNotFound = -704,
    ObjectAlreadyExists = -705,
    ObjectHasLease = -706,
    LeaseExpired = -707,
    TransferFail = -800,
    RpcFail = -900,
    RpcTimeout = -901,
    UnavailableInCurrentMode = -1011,
    NotSupported = -1012,
}

impl ErrorCode {
    /// The integer Mooncake returns.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Mooncake's name of the code (`toString(ErrorCode)`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::BufferOverflow => "BUFFER_OVERFLOW",
            ErrorCode::SegmentNotFound => "SEGMENT_NOT_FOUND",
            ErrorCode::SegmentAlreadyExists => "SEGMENT_ALREADY_EXISTS",
            ErrorCode::ClientNotFound => "CLIENT_NOT_FOUND",
            ErrorCode::NoAvailableHandle => "NO_AVAILABLE_HANDLE",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::InvalidParams => "INVALID_PARAMS",
            ErrorCode::IllegalClient => "ILLEGAL_CLIENT",
            ErrorCode::InvalidWrite => "INVALID_WRITE",
            ErrorCode::InvalidRead => "INVALID_READ",
            ErrorCode::InvalidReplica => "INVALID_REPLICA",
            ErrorCode::ReplicaIsNotReady => "REPLICA_IS_NOT_READY",
            ErrorCode::ObjectNotFound => "OBJECT_NOT_FOUND",
            ErrorCode::ObjectAlreadyExists => "OBJECT_ALREADY_EXISTS",
            ErrorCode::ObjectHasLease => "OBJECT_HAS_LEASE",
            ErrorCode::LeaseExpired => "LEASE_EXPIRED",
            ErrorCode::TransferFail => "TRANSFER_FAIL",
            ErrorCode::RpcFail => "RPC_FAIL",
            ErrorCode::RpcTimeout => "RPC_TIMEOUT",
            ErrorCode::UnavailableInCurrentMode => "UNAVAILABLE_IN_CURRENT_MODE",
            ErrorCode::NotSupported => "NOT_SUPPORTED",
        }
    }

    /// Every member, for tables (the header's list, the docs, the tests).
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::InternalError,
        ErrorCode::BufferOverflow,
        ErrorCode::SegmentNotFound,
        ErrorCode::SegmentAlreadyExists,
        ErrorCode::ClientNotFound,
        ErrorCode::NoAvailableHandle,
        ErrorCode::InvalidKey,
        ErrorCode::InvalidParams,
        ErrorCode::IllegalClient,
        ErrorCode::InvalidWrite,
        ErrorCode::InvalidRead,
        ErrorCode::InvalidReplica,
        ErrorCode::ReplicaIsNotReady,
        ErrorCode::ObjectNotFound,
        ErrorCode::ObjectAlreadyExists,
        ErrorCode::ObjectHasLease,
        ErrorCode::LeaseExpired,
        ErrorCode::TransferFail,
        ErrorCode::RpcFail,
        ErrorCode::RpcTimeout,
        ErrorCode::UnavailableInCurrentMode,
        ErrorCode::NotSupported,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

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

/// A request or response with the id that pairs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

/// A frame that cannot be decoded or is too long.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is longer than {MAX_FRAME}")]
    TooLong(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `envelope` as one frame (length prefix included), appended to `out`.
pub fn encode<T: Serialize>(envelope: &Envelope<T>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let body = postcard::to_extend(envelope, std::mem::take(out))?;
    *out = body;
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::TooLong(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// The body length a 4-byte frame header announces, checked against [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix); trailing bytes are malformed.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<Envelope<T>, FrameError> {
    let (envelope, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(postcard::Error::DeserializeBadEncoding));
    }
    Ok(envelope)
}

/// Writes one frame to a blocking stream.
pub fn write_frame<T: Serialize>(
    stream: &mut impl std::io::Write,
    envelope: &Envelope<T>,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    scratch.clear();
    encode(envelope, scratch)?;
    stream.write_all(scratch)?;
    Ok(())
}

/// Reads one frame from a blocking stream into `scratch` and decodes it.
pub fn read_frame<T: for<'a> Deserialize<'a>>(
    stream: &mut impl std::io::Read,
    scratch: &mut Vec<u8>,
) -> Result<Envelope<T>, FrameError> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = frame_len(header)?;
    scratch.clear();
    scratch.resize(len, 0);
    stream.read_exact(scratch)?;
    decode(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_a_round_trip() {
        let req = Envelope {
            id: 7,
            body: Request::PutStart {
                client: 1 << 100,
                key: "k".into(),
                size: 4096,
                config: ReplicaConfig { replica_num: 2, preferred_segments: vec!["a:1".into()], ..Default::default() },
                upsert: false,
            },
        };
        let mut buf = Vec::new();
        encode(&req, &mut buf).unwrap();
        let len = frame_len(buf[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, buf.len() - 4);
        let back: Envelope<Request> = decode(&buf[4..]).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(frame_len(((MAX_FRAME + 1) as u32).to_le_bytes()), Err(FrameError::TooLong(_))));
        assert!(decode::<Request>(&[0xff, 0xff, 0xff]).is_err());
        let mut buf = Vec::new();
        encode(&Envelope { id: 1, body: Request::Health }, &mut buf).unwrap();
        buf.push(0);
        assert!(decode::<Request>(&buf[4..]).is_err());
    }

    #[test]
    fn codes_are_mooncakes() {
        assert_eq!(ErrorCode::ObjectNotFound.code(), -704);
        assert_eq!(ErrorCode::ObjectHasLease.code(), -706);
        assert_eq!(ErrorCode::InvalidParams.code(), -600);
        assert_eq!(ErrorCode::NoAvailableHandle.code(), -200);
        let mut seen = std::collections::HashSet::new();
        assert!(ErrorCode::ALL.iter().all(|c| seen.insert(c.code())));
    }
}
