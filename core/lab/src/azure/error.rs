//! Errors of the lab's Rust API (not the wire errors, which each service renders itself).

use thiserror::Error;

/// What went wrong when starting, describing or driving the simulated Azure site.
#[derive(Debug, Error)]
pub enum LabError {
    /// A listener could not be bound or the lab's runtime could not start.
    #[error("cannot start the Azure lab: {0}")]
    Start(#[source] std::io::Error),
    /// The TOML site description is malformed.
    #[error("invalid Azure lab description: {0}")]
    Spec(String),
    /// A named object (subscription, group, VM, disk, service, role…) does not exist.
    #[error("{kind} '{name}' does not exist in the Azure lab")]
    NotFound {
        /// Kind of object, e.g. "virtual machine".
        kind: &'static str,
        /// The name that was looked up.
        name: String,
    },
    /// A guest write or clear is outside the disk or not 512-byte aligned.
    #[error("invalid disk range at offset {offset} length {len}: {reason}")]
    InvalidRange {
        /// Byte offset requested.
        offset: u64,
        /// Length requested.
        len: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The underlying page-blob store refused the operation.
    #[error("storage error {code}: {message}")]
    Storage {
        /// Blob service error code.
        code: String,
        /// Message.
        message: String,
    },
}
