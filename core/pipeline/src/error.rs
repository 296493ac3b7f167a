//! Errors a caller branches on. Each names the object and the fix.

use std::path::PathBuf;

use homeward_plugin_host::CallError;

/// Why a pipeline operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration database could not be read or written.
    #[error("configuration database {}: {message}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// The database was written by a newer Homeward.
    #[error("configuration database {}: schema version {found} is newer than this build's {supported}; run the Homeward that wrote it, or restore an older backup", path.display())]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// This build's version.
        supported: u32,
    },
    /// A restore source is not a Homeward database.
    #[error("{} is not a Homeward configuration backup ({message}); pass a file made by `homeward backup`", path.display())]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file system operation failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A named object does not exist.
    #[error("{what} `{name}` does not exist; {fix}")]
    NotFound {
        /// What kind of object.
        what: &'static str,
        /// Its name.
        name: String,
        /// What to do.
        fix: String,
    },
    /// The operation is not allowed in the object's state.
    #[error("{object}: {message}; {fix}")]
    Refused {
        /// The object.
        object: String,
        /// Why.
        message: String,
        /// What to do.
        fix: String,
    },
    /// Prerequisites failed; nothing was changed.
    #[error("{0}")]
    Prerequisites(crate::prereq::PrereqError),
    /// An adapter call failed.
    #[error("site {site}, {call} on {object}: {error}")]
    Adapter {
        /// The site.
        site: String,
        /// The contract call.
        call: String,
        /// The object it was about.
        object: String,
        /// The call error (its text is part of this error's, so it is not a `source`).
        error: CallError,
    },
    /// The data path failed.
    #[error("{object}: {error}")]
    Replication {
        /// The disk or group.
        object: String,
        /// What failed.
        error: homeward_replication::ReplicationError,
    },
    /// A verification found the two sides different.
    #[error("{object}: verification failed: {message}")]
    Verification {
        /// The disk.
        object: String,
        /// What differed.
        message: String,
    },
}

impl PipelineError {
    /// Wraps an adapter call error with the site, call and object.
    pub fn adapter(site: &str, call: &str, object: &str) -> impl FnOnce(CallError) -> PipelineError {
        let (site, call, object) = (site.to_string(), call.to_string(), object.to_string());
        move |error| PipelineError::Adapter { site, call, object, error }
    }

    /// Wraps a data-path error with the object it concerns.
    pub fn replication(object: impl Into<String>) -> impl FnOnce(homeward_replication::ReplicationError) -> PipelineError {
        let object = object.into();
        move |error| PipelineError::Replication { object, error }
    }
}
