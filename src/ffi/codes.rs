//! Return codes and version constants of `mooncake.h`.
//!
//! Mooncake's `transfer_engine_c.h` defines no codes; programs get Mooncake's from its C++
//! `error.h`. They are defined here with the same names and values.

use std::ffi::c_int;

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
/// A feature this build does not have (RDMA, NVMe-oF, HTTP/etcd/redis metadata, topology).
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
