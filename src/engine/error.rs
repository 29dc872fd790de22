//! The engine's error: an ABI [`Code`] plus a message that names the call's subject.

use crate::error::Code;

/// A failed engine operation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::InvalidArgument, message)
    }
}

impl From<crate::metadata::Error> for Error {
    fn from(e: crate::metadata::Error) -> Error {
        Error::new(e.code(), e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
