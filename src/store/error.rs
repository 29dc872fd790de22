//! A failed store call: one of Mooncake's store codes and the text `mooncake_last_error()`
//! gives for it. (The integer the C and Python layers return is `crate::ffi::codes::store_code`.)

use crate::master::proto::ErrorCode;

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

impl From<crate::engine::Error> for StoreError {
    fn from(e: crate::engine::Error) -> StoreError {
        StoreError::new(ErrorCode::TransferFail, format!("transfer engine: {}", e.message))
    }
}
