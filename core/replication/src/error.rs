//! Typed errors at the crate boundary: callers branch on these kinds.

use std::path::PathBuf;

/// A failure of a [`crate::transport::Transport`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A local file operation failed.
    #[error("{op} on {target} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Which disk or file.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The remote endpoint answered with an unexpected status.
    #[error("{op} on {target} returned HTTP {status}: {body}")]
    Http {
        /// What was being done.
        op: &'static str,
        /// Which URL (without its query, which may carry a SAS token).
        target: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body, for the operator.
        body: String,
    },
    /// The remote endpoint could not be reached.
    #[error("{op} on {target} could not reach the endpoint: {message}; check the network path and retry")]
    Unreachable {
        /// What was being done.
        op: &'static str,
        /// Which URL.
        target: String,
        /// The client error.
        message: String,
    },
    /// The caller asked for something the transport cannot do (range past the end, unaligned
    /// page write, ...).
    #[error("invalid request on {target}: {message}")]
    Invalid {
        /// Which disk.
        target: String,
        /// Why.
        message: String,
    },
    /// The endpoint answered with data that does not parse.
    #[error("malformed answer from {target}: {message}")]
    Malformed {
        /// Which endpoint.
        target: String,
        /// Why.
        message: String,
    },
}

/// A failure of the retention journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation on the retention volume failed.
    #[error("journal I/O ({op}) on {path} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record inside the journal (not at its tail) fails its checksum or does not parse.
    /// Points older than it cannot be trusted; restore the retention volume or start a new
    /// journal with a resync.
    #[error("journal record in segment {segment} at offset {offset} is corrupt: {reason}")]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The segment was written in journal format 1 by an older Homeward. It is left as
    /// it is: nothing is cut or rewritten.
    #[error("journal segment {segment} is in journal format 1, written by an older Homeward: finish or fail over with the version that wrote it, or move the journal directory away and resync")]
    OldFormat {
        /// The segment file.
        segment: PathBuf,
    },
    /// The requested recovery point is not retained.
    #[error("recovery point {0} is not retained in this journal")]
    UnknownPoint(u64),
    /// The journal is used out of order (e.g. a block outside a cycle).
    #[error("journal misuse: {0}")]
    Protocol(String),
    /// Reading or writing a disk failed while journaling or recovering.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A failure of the replication protocol between the process server and master target.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("connection to {peer} failed: {source}")]
    Io {
        /// The other side.
        peer: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A frame failed its checksum or does not parse.
    #[error("bad frame from {peer}: {reason}")]
    BadFrame {
        /// The other side.
        peer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The handshake failed: versions differ or the peer refused.
    #[error("handshake with {peer} refused: {reason}")]
    Refused {
        /// The other side.
        peer: String,
        /// Why, naming both versions where that is the cause.
        reason: String,
    },
    /// The peer reported an error while applying.
    #[error("master target {peer} failed: {message}")]
    Remote {
        /// The other side.
        peer: String,
        /// Its message.
        message: String,
    },
}

/// Any failure of a replication operation.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Moving blocks failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The protocol failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Verification after a resync still finds differing blocks after repair.
    #[error("disk {disk}: {blocks} blocks still differ after resync; the target is not protected")]
    VerifyFailed {
        /// Which disk.
        disk: String,
        /// How many blocks differ.
        blocks: u64,
    },
    /// The source and target disks have different sizes.
    #[error("disk {disk}: source is {source_size} bytes but target is {target_size}; resize the target first")]
    SizeMismatch {
        /// Which disk.
        disk: String,
        /// Source size.
        source_size: u64,
        /// Target size.
        target_size: u64,
    },
}
