//! A failed store call: one of Mooncake's store codes and the text `mooncake_last_error()`
//! gives for it. (The integer the C and Python layers return is made in `src/ffi/codes.rs`.)

use crate::proto::ErrorCode;
use crate::sys::mapping::MapError;

/// What every fallible store method returns on failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct StoreError {
    pub code: ErrorCode,
    pub message: String,
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> StoreError {
        StoreError { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> StoreError {
        StoreError::new(ErrorCode::InvalidParams, message)
    }

    /// The master's answer `code` to `what`.
    pub fn from_master(code: ErrorCode, what: &str) -> StoreError {
        StoreError::new(code, format!("{what}: the master answered {}", code.name()))
    }
}

/// A mapping the store wanted and could not have: a request no mapping can satisfy is the
/// caller's `INVALID_PARAMS`, a refusal by the kernel is `INTERNAL_ERROR`; the text is the
/// mapping's own.
impl From<MapError> for StoreError {
    fn from(e: MapError) -> StoreError {
        match e {
            MapError::Request(message) => StoreError::invalid(message),
            MapError::Os(e) => StoreError::new(ErrorCode::InternalError, e.to_string()),
        }
    }
}

impl From<crate::engine::Error> for StoreError {
    fn from(e: crate::engine::Error) -> StoreError {
        StoreError::new(ErrorCode::TransferFail, format!("transfer engine: {}", e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::mapping::{Mapping, SharedMapping};

    #[test]
    fn mapping_failures_keep_their_codes_and_text() {
        let e = StoreError::from(Mapping::new(0).err().unwrap());
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::InvalidParams, "cannot map 0 bytes"));
        let short = SharedMapping::create(4096).unwrap();
        let e = StoreError::from(SharedMapping::map(short.fd().try_clone_to_owned().unwrap(), 8192).err().unwrap());
        assert_eq!(e.code, ErrorCode::InvalidParams);
        let os = std::io::Error::new(std::io::ErrorKind::OutOfMemory, "cannot map 8 bytes of memory: ENOMEM: x");
        let e = StoreError::from(MapError::Os(os));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::InternalError, "cannot map 8 bytes of memory: ENOMEM: x"));
    }
}
