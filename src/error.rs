//! The codes Mooncake's C ABI returns, shared by every layer.
//!
//! Mooncake has two families of the same meanings: positive `Status` codes (returned by
//! `submitTransfer`, `submitTransferWithNotify`, `getTransferStatus`, `freeBatchID`) and
//! negative `ERR_*` values (every other `int` function). [`Code`] names the meaning once;
//! [`Code::status`] and [`Code::err`] give the two encodings.

/// One failure meaning of Mooncake's ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidArgument,
    TooManyRequests,
    AddressNotRegistered,
    BatchBusy,
    DeviceNotFound,
    AddressOverlapped,
    NotSupportedTransport,
    Dns,
    Socket,
    MalformedJson,
    RejectHandshake,
    Metadata,
    Endpoint,
    Context,
    Numa,
    Clock,
    Memory,
    NotImplemented,
}

impl Code {
    /// The positive status code (`Status::Code` in Mooncake's C++).
    pub fn status(self) -> i32 {
        match self {
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
    pub fn err(self) -> i32 {
        match self {
            Code::InvalidArgument => -1,
            Code::TooManyRequests => -2,
            Code::AddressNotRegistered => -3,
            Code::BatchBusy => -4,
            Code::DeviceNotFound => -6,
            Code::AddressOverlapped => -7,
            // `ERR_*` has no "transport not installed" value; Mooncake returns -1 there.
            Code::NotSupportedTransport => -1,
            Code::Dns => -101,
            Code::Socket => -102,
            Code::MalformedJson => -103,
            Code::RejectHandshake => -104,
            Code::Metadata => -200,
            Code::Endpoint => -201,
            Code::Context => -202,
            Code::Numa => -300,
            Code::Clock => -301,
            Code::Memory => -302,
            Code::NotImplemented => -303,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn families_agree_in_sign() {
        for c in [Code::InvalidArgument, Code::Socket, Code::Metadata, Code::NotImplemented] {
            assert!(c.status() > 0);
            assert!(c.err() < 0);
        }
    }
}
