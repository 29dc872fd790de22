//! What a dummy client and its `mooncake_client` say over their unix socket. Frames are the
//! master protocol's (`u32` length + postcard envelope, `crate::proto`); a `Share` request
//! carries the memfd of the shared memory as `SCM_RIGHTS`.
//!
//! Addresses in requests are the dummy's: the real client translates them through the
//! mappings the dummy shared, and refuses any range outside them.

use serde::{Deserialize, Serialize};

use crate::proto::{ErrorCode, Outcome, ReplicaConfig};

/// Bumped whenever a message changes shape.
pub const DUMMY_PROTOCOL: u32 = 1;

/// The abstract unix socket a `mooncake_client` serving `port` listens on.
pub fn socket_name(port: u16) -> String {
    format!("mooncake_client:{port}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub key: String,
    /// The dummy's address (inside memory it shared).
    pub addr: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DummyRequest {
    Hello {
        protocol: u32,
    },
    /// The fd that comes with this frame maps `size` bytes at `addr` in the dummy.
    Share {
        addr: u64,
        size: u64,
    },
    Unshare {
        addr: u64,
    },
    PutFrom {
        items: Vec<Range>,
        config: ReplicaConfig,
        upsert: bool,
    },
    /// Each item's `len` is the room at `addr` (a larger object is `INVALID_PARAMS`).
    GetInto {
        items: Vec<Range>,
    },
    /// `(dst offset from buffer, src offset in the object, len)` ranges.
    GetRanges {
        buffer: u64,
        key: String,
        ranges: Vec<(u64, u64, u64)>,
    },
    Exists {
        keys: Vec<String>,
    },
    GetSize {
        key: String,
    },
    Remove {
        key: String,
        force: bool,
    },
    RemoveByRegex {
        pattern: String,
        force: bool,
    },
    RemoveAll {
        force: bool,
    },
    Health,
    // ---- multi-buffer puts and gets ----
    /// Each key's value is the concatenation of its parts (the dummy's addresses).
    PutMulti {
        items: Vec<MultiRange>,
        config: ReplicaConfig,
        upsert: bool,
    },
    /// Answer: `Sizes`.
    GetMulti {
        items: Vec<MultiRange>,
    },
    /// The replicas of each key (`get_replica_desc`). Answer: `ReplicaDescs`.
    ReplicaDescs {
        keys: Vec<String>,
    },
}

/// A key and its parts, `(addr, len)` in the dummy's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiRange {
    pub key: String,
    pub parts: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DummyResponse {
    Error(ErrorCode, String),
    Hello { protocol: u32, hostname: String },
    Done,
    Codes(Vec<Outcome<()>>),
    Sizes(Vec<Outcome<u64>>),
    Ranges(Vec<Outcome<u64>>),
    Flags(Vec<Outcome<bool>>),
    Size(u64),
    Count(i64),
    Health(i32),
    ReplicaDescs(Vec<Outcome<Vec<crate::store::surface::ReplicaDesc>>>),
}
