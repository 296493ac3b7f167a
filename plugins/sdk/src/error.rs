//! Terse constructors for the contract's closed error variant.

use crate::types::{AdapterError, Unavailable};

/// `not-found`: the named object does not exist.
pub fn not_found(msg: impl Into<String>) -> AdapterError {
    AdapterError::NotFound(msg.into())
}

/// `already-exists`: an object with that name exists; nothing was created.
pub fn already_exists(msg: impl Into<String>) -> AdapterError {
    AdapterError::AlreadyExists(msg.into())
}

/// `invalid-argument`: malformed input; nothing was changed.
pub fn invalid(msg: impl Into<String>) -> AdapterError {
    AdapterError::InvalidArgument(msg.into())
}

/// `permission-denied`: credentials wrong, expired or lacking a privilege.
pub fn denied(msg: impl Into<String>) -> AdapterError {
    AdapterError::PermissionDenied(msg.into())
}

/// `unavailable`: temporary; retry after `retry_after_ms` when given.
pub fn unavailable(msg: impl Into<String>, retry_after_ms: Option<u64>) -> AdapterError {
    AdapterError::Unavailable(Unavailable { message: msg.into(), retry_after_ms })
}

/// `unsupported`: the backend or adapter cannot do this at all.
pub fn unsupported(msg: impl Into<String>) -> AdapterError {
    AdapterError::Unsupported(msg.into())
}

/// `conflict`: the object's state forbids the call.
pub fn conflict(msg: impl Into<String>) -> AdapterError {
    AdapterError::Conflict(msg.into())
}

/// `internal`: anything else; quote what the backend said.
pub fn internal(msg: impl Into<String>) -> AdapterError {
    AdapterError::Internal(msg.into())
}
