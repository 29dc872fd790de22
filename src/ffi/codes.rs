//! Return codes and version constants of `mooncake.h`, and the C encodings of the core's
//! kinds: the only place where an error kind or a task state becomes a C integer.
//!
//! Mooncake's `transfer_engine_c.h` defines no codes; programs get Mooncake's from its C++
//! `error.h`. They are defined here with the same names and values.
//!
//! Mooncake has two families of the same meanings: positive `Status` codes (returned by
//! `submitTransfer`, `submitTransferWithNotify`, `getTransferStatus`, `freeBatchID`) and
//! negative `ERR_*` values (every other `int` function). [`Code`] names the meaning once;
//! [`status_code`] and [`err_code`] give the two encodings, [`store_code`] the store's and
//! [`task_state_code`] the `STATUS_*` value of a task state.

use std::ffi::c_int;

use super::engine::types::{STATUS_COMPLETED, STATUS_FAILED, STATUS_WAITING};
use crate::engine::TaskState;
use crate::error::Code;
use crate::store::ErrorCode;

/// `MOONCAKE_VERSION_MAJOR.MINOR.PATCH` equals `mooncake_version()` (checked by a test).
pub const MOONCAKE_VERSION_MAJOR: c_int = 0;
pub const MOONCAKE_VERSION_MINOR: c_int = 1;
pub const MOONCAKE_VERSION_PATCH: c_int = 0;

/// A NULL or destroyed handle, a NULL pointer, an empty name, a bad opcode, an unknown id.
pub const ERR_INVALID_ARGUMENT: c_int = -1;
/// More requests than the batch holds.
pub const ERR_TOO_MANY_REQUESTS: c_int = -2;
/// A range that is not inside one registered region.
pub const ERR_ADDRESS_NOT_REGISTERED: c_int = -3;
/// The batch has tasks in flight.
pub const ERR_BATCH_BUSY: c_int = -4;
pub const ERR_DEVICE_NOT_FOUND: c_int = -6;
/// The region overlaps a registered one.
pub const ERR_ADDRESS_OVERLAPPED: c_int = -7;
/// A peer's host name does not resolve.
pub const ERR_DNS: c_int = -101;
/// A connection to a peer failed (refused, reset, timed out).
pub const ERR_SOCKET: c_int = -102;
/// A peer sent JSON that does not parse or is not a valid descriptor.
pub const ERR_MALFORMED_JSON: c_int = -103;
/// A peer answered a handshake with the wrong type or refused it.
pub const ERR_REJECT_HANDSHAKE: c_int = -104;
pub const ERR_METADATA: c_int = -200;
pub const ERR_ENDPOINT: c_int = -201;
/// An internal failure (the runtime or a thread could not start, or a bug caught at the
/// boundary).
pub const ERR_CONTEXT: c_int = -202;
pub const ERR_NUMA: c_int = -300;
pub const ERR_CLOCK: c_int = -301;
/// Memory could not be allocated.
pub const ERR_MEMORY: c_int = -302;
/// A transport this build does not have (`"nvmeof"`, `"efa"`, …, and `"rdma"` in a build
/// without the `rdma` feature), or etcd/redis metadata in a build without that feature.
pub const ERR_NOT_IMPLEMENTED: c_int = -303;

/// Positive status codes of `submitTransfer`, `submitTransferWithNotify`,
/// `getTransferStatus` and `freeBatchID` (Mooncake's `Status::Code`).
pub const MOONCAKE_STATUS_OK: c_int = 0;
pub const MOONCAKE_STATUS_INVALID_ARGUMENT: c_int = 1;
pub const MOONCAKE_STATUS_TOO_MANY_REQUESTS: c_int = 2;
pub const MOONCAKE_STATUS_ADDRESS_NOT_REGISTERED: c_int = 3;
pub const MOONCAKE_STATUS_BATCH_BUSY: c_int = 4;
pub const MOONCAKE_STATUS_NOT_SUPPORTED_TRANSPORT: c_int = 8;
pub const MOONCAKE_STATUS_DNS: c_int = 101;
pub const MOONCAKE_STATUS_SOCKET: c_int = 102;
pub const MOONCAKE_STATUS_MALFORMED_JSON: c_int = 103;
pub const MOONCAKE_STATUS_REJECT_HANDSHAKE: c_int = 104;
pub const MOONCAKE_STATUS_METADATA: c_int = 200;
pub const MOONCAKE_STATUS_ENDPOINT: c_int = 201;
pub const MOONCAKE_STATUS_CONTEXT: c_int = 202;
pub const MOONCAKE_STATUS_NUMA: c_int = 300;
pub const MOONCAKE_STATUS_CLOCK: c_int = 301;
pub const MOONCAKE_STATUS_MEMORY: c_int = 302;
pub const MOONCAKE_STATUS_NOT_IMPLEMENTED: c_int = 999;

/// Our additions' results (never returned by Mooncake's functions): a waited-for transfer
/// ended with at least one task FAILED.
pub const MOONCAKE_ERR_TRANSFER_FAILED: c_int = -400;
/// A waited-for transfer still had tasks in flight when the timeout passed.
pub const MOONCAKE_ERR_TIMEOUT: c_int = -401;

/// The positive status code (`Status::Code` in Mooncake's C++).
pub fn status_code(code: Code) -> c_int {
    match code {
        Code::InvalidArgument => 1,
        Code::TooManyRequests => 2,
        Code::AddressNotRegistered => 3,
        Code::BatchBusy => 4,
        // Mooncake's Status has no DeviceNotFound/AddressOverlapped members; the closest
        // meanings are used so that the positive family stays within Mooncake's values.
        Code::DeviceNotFound => 202,
        Code::AddressOverlapped => 1,
        Code::NotSupportedTransport => 8,
        Code::Dns => 101,
        Code::Socket => 102,
        Code::MalformedJson => 103,
        Code::RejectHandshake => 104,
        Code::Metadata => 200,
        Code::Endpoint => 201,
        Code::Context => 202,
        Code::Numa => 300,
        Code::Clock => 301,
        Code::Memory => 302,
        Code::NotImplemented => 999,
    }
}

/// The negative `ERR_*` value of Mooncake's `error.h`.
pub fn err_code(code: Code) -> c_int {
    match code {
        Code::InvalidArgument => ERR_INVALID_ARGUMENT,
        Code::TooManyRequests => ERR_TOO_MANY_REQUESTS,
        Code::AddressNotRegistered => ERR_ADDRESS_NOT_REGISTERED,
        Code::BatchBusy => ERR_BATCH_BUSY,
        Code::DeviceNotFound => ERR_DEVICE_NOT_FOUND,
        Code::AddressOverlapped => ERR_ADDRESS_OVERLAPPED,
        // `ERR_*` has no "transport not installed" value; Mooncake returns -1 there.
        Code::NotSupportedTransport => ERR_INVALID_ARGUMENT,
        Code::Dns => ERR_DNS,
        Code::Socket => ERR_SOCKET,
        Code::MalformedJson => ERR_MALFORMED_JSON,
        Code::RejectHandshake => ERR_REJECT_HANDSHAKE,
        Code::Metadata => ERR_METADATA,
        Code::Endpoint => ERR_ENDPOINT,
        Code::Context => ERR_CONTEXT,
        Code::Numa => ERR_NUMA,
        Code::Clock => ERR_CLOCK,
        Code::Memory => ERR_MEMORY,
        Code::NotImplemented => ERR_NOT_IMPLEMENTED,
    }
}

/// The store code a C or Python caller gets: Mooncake's store `ErrorCode` value, which is
/// also its wire value.
pub fn store_code(code: ErrorCode) -> c_int {
    code.code()
}

/// The `transfer_status.status` value of a task state (Mooncake's numbering: WAITING 0,
/// PENDING 1, INVALID 2, CANCELED 3, COMPLETED 4, TIMEOUT 5, FAILED 6).
pub fn task_state_code(state: TaskState) -> c_int {
    match state {
        TaskState::Waiting => STATUS_WAITING,
        TaskState::Completed => STATUS_COMPLETED,
        TaskState::Failed => STATUS_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// `#define NAME VALUE` (or `(VALUE)`) of a generated header.
    fn defines(header: &str) -> HashMap<String, i64> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include").join(header);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .filter_map(|l| l.strip_prefix("#define ")?.split_once(' '))
            .filter_map(|(name, v)| Some((name.to_string(), v.trim().trim_matches(['(', ')']).parse().ok()?)))
            .collect()
    }

    /// The header names documenting each kind: its `ERR_*` and its `MOONCAKE_STATUS_*`. The
    /// match is exhaustive: a new kind does not compile until it is documented here.
    fn documented(code: Code) -> (&'static str, &'static str) {
        match code {
            Code::InvalidArgument => ("ERR_INVALID_ARGUMENT", "MOONCAKE_STATUS_INVALID_ARGUMENT"),
            Code::TooManyRequests => ("ERR_TOO_MANY_REQUESTS", "MOONCAKE_STATUS_TOO_MANY_REQUESTS"),
            Code::AddressNotRegistered => ("ERR_ADDRESS_NOT_REGISTERED", "MOONCAKE_STATUS_ADDRESS_NOT_REGISTERED"),
            Code::BatchBusy => ("ERR_BATCH_BUSY", "MOONCAKE_STATUS_BATCH_BUSY"),
            Code::DeviceNotFound => ("ERR_DEVICE_NOT_FOUND", "MOONCAKE_STATUS_CONTEXT"),
            Code::AddressOverlapped => ("ERR_ADDRESS_OVERLAPPED", "MOONCAKE_STATUS_INVALID_ARGUMENT"),
            Code::NotSupportedTransport => ("ERR_INVALID_ARGUMENT", "MOONCAKE_STATUS_NOT_SUPPORTED_TRANSPORT"),
            Code::Dns => ("ERR_DNS", "MOONCAKE_STATUS_DNS"),
            Code::Socket => ("ERR_SOCKET", "MOONCAKE_STATUS_SOCKET"),
            Code::MalformedJson => ("ERR_MALFORMED_JSON", "MOONCAKE_STATUS_MALFORMED_JSON"),
            Code::RejectHandshake => ("ERR_REJECT_HANDSHAKE", "MOONCAKE_STATUS_REJECT_HANDSHAKE"),
            Code::Metadata => ("ERR_METADATA", "MOONCAKE_STATUS_METADATA"),
            Code::Endpoint => ("ERR_ENDPOINT", "MOONCAKE_STATUS_ENDPOINT"),
            Code::Context => ("ERR_CONTEXT", "MOONCAKE_STATUS_CONTEXT"),
            Code::Numa => ("ERR_NUMA", "MOONCAKE_STATUS_NUMA"),
            Code::Clock => ("ERR_CLOCK", "MOONCAKE_STATUS_CLOCK"),
            Code::Memory => ("ERR_MEMORY", "MOONCAKE_STATUS_MEMORY"),
            Code::NotImplemented => ("ERR_NOT_IMPLEMENTED", "MOONCAKE_STATUS_NOT_IMPLEMENTED"),
        }
    }

    #[test]
    fn every_kind_maps_to_its_documented_c_code() {
        let h = defines("mooncake.h");
        let value = |name: &str| *h.get(name).unwrap_or_else(|| panic!("mooncake.h has no {name}"));
        for code in Code::ALL {
            let (err, status) = documented(code);
            assert_eq!(i64::from(err_code(code)), value(err), "{code:?} -> {err}");
            assert_eq!(i64::from(status_code(code)), value(status), "{code:?} -> {status}");
            assert!(err_code(code) < 0 && status_code(code) > 0, "{code:?}: the families differ in sign");
        }
        // Every ERR_* the header defines is some kind's code.
        for (name, v) in h.iter().filter(|(n, _)| n.starts_with("ERR_")) {
            assert!(Code::ALL.iter().any(|&c| i64::from(err_code(c)) == *v), "{name} = {v} is no kind's code");
        }
    }

    #[test]
    fn every_task_state_maps_to_the_headers_status_constant() {
        let h = defines("transfer_engine_c.h");
        let mooncake = [
            ("STATUS_WAITING", 0),
            ("STATUS_PENDING", 1),
            ("STATUS_INVALID", 2),
            ("STATUS_CANCELED", 3),
            ("STATUS_COMPLETED", 4),
            ("STATUS_TIMEOUT", 5),
            ("STATUS_FAILED", 6),
        ];
        for (name, v) in mooncake {
            assert_eq!(h.get(name), Some(&v), "transfer_engine_c.h: {name}");
        }
        for (state, name) in [
            (TaskState::Waiting, "STATUS_WAITING"),
            (TaskState::Completed, "STATUS_COMPLETED"),
            (TaskState::Failed, "STATUS_FAILED"),
        ] {
            assert_eq!(Some(&i64::from(task_state_code(state))), h.get(name), "{state:?}");
        }
    }

    #[test]
    fn every_store_code_is_its_headers_constant() {
        let h = defines("mooncake.h");
        for code in ErrorCode::ALL {
            let name = format!("MOONCAKE_STORE_{}", code.name());
            assert_eq!(h.get(&name), Some(&i64::from(store_code(code))), "{name}");
        }
        // `MOONCAKE_STORE_*_LEN` are buffer sizes, not codes.
        let in_header = h.keys().filter(|n| n.starts_with("MOONCAKE_STORE_") && !n.ends_with("_LEN")).count();
        assert_eq!(in_header, ErrorCode::ALL.len(), "a MOONCAKE_STORE_* constant with no store code");
    }
}
