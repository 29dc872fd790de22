//! Mooncake's store error codes, as both sides of the protocol and the C and Python layers
//! return them.

use serde::{Deserialize, Serialize};

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
    ReplicaNotFound = -710,
    ObjectHasReplicationTask = -708,
    UnavailableInCurrentStatus = -1010,
    TaskNotFound = -1400,
    TaskPendingLimitExceeded = -1401,
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
            ErrorCode::ReplicaNotFound => "REPLICA_NOT_FOUND",
            ErrorCode::ObjectHasReplicationTask => "OBJECT_HAS_REPLICATION_TASK",
            ErrorCode::UnavailableInCurrentStatus => "UNAVAILABLE_IN_CURRENT_STATUS",
            ErrorCode::TaskNotFound => "TASK_NOT_FOUND",
            ErrorCode::TaskPendingLimitExceeded => "TASK_PENDING_LIMIT_EXCEEDED",
        }
    }

    /// Every member, for tables (the header's list, the docs, the tests).
    pub const ALL: [ErrorCode; 27] = [
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
        ErrorCode::ReplicaNotFound,
        ErrorCode::ObjectHasReplicationTask,
        ErrorCode::UnavailableInCurrentStatus,
        ErrorCode::TaskNotFound,
        ErrorCode::TaskPendingLimitExceeded,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
