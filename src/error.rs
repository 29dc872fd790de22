//! The kinds of failure of the Transfer Engine, shared by every layer: one per failure meaning
//! of Mooncake's ABI. Their C integers (the positive `Status` and the negative `ERR_*`
//! encodings) belong to the C layer above (`src/ffi/codes.rs`).

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
    /// Every kind, for tables and tests.
    pub const ALL: [Code; 18] = [
        Code::InvalidArgument,
        Code::TooManyRequests,
        Code::AddressNotRegistered,
        Code::BatchBusy,
        Code::DeviceNotFound,
        Code::AddressOverlapped,
        Code::NotSupportedTransport,
        Code::Dns,
        Code::Socket,
        Code::MalformedJson,
        Code::RejectHandshake,
        Code::Metadata,
        Code::Endpoint,
        Code::Context,
        Code::Numa,
        Code::Clock,
        Code::Memory,
        Code::NotImplemented,
    ];
}
