//! Typed errors at the plugin host's boundary: callers branch on them.

use std::path::PathBuf;
use std::time::Duration;

use crate::bindings::AdapterError;
use crate::outbound::Denial;

/// Why a plugin could not be loaded. Nothing was instantiated.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin `{name}`: cannot read {path}: {source}. Check plugins.{name}.path in the config")]
    Read { name: String, path: PathBuf, source: std::io::Error },

    #[error(
        "plugin `{name}`: {path} has sha256 {actual}, but the config pins {expected}. \
         If you replaced the file on purpose, set plugins.{name}.sha256 = \"{actual}\"; otherwise the file was tampered with"
    )]
    HashMismatch { name: String, path: PathBuf, expected: String, actual: String },

    #[error("plugin `{name}`: {path} is not a WASM component: {message}")]
    NotAComponent { name: String, path: PathBuf, message: String },

    #[error(
        "plugin `{name}`: built against homeward:adapter@{found}, but this host serves homeward:adapter@{supported}. \
         Rebuild the adapter against {supported} or use a host that serves {found}"
    )]
    IncompatibleVersion { name: String, found: String, supported: String },

    #[error("plugin `{name}`: {path} does not export the adapter interfaces ({missing}); it is not a Homeward adapter")]
    NotAnAdapter { name: String, path: PathBuf, missing: String },

    #[error("plugin `{name}`: its manifest (custom section `homeward-manifest`) is invalid: {message}")]
    BadManifest { name: String, message: String },

    #[error("plugin `{name}`: preopen {host} cannot be opened: {message}. Check plugins.{name}.preopens")]
    Preopen { name: String, host: PathBuf, message: String },

    #[error("plugin `{name}`: compiling failed: {message}")]
    Compile { name: String, message: String },

    #[error("plugin `{name}`: {message}")]
    Config { name: String, message: String },
}

/// Why one call into an adapter failed. Only [`CallError::Adapter`] leaves the instance
/// alive; every other case discards it and the next call gets a fresh instance.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The adapter answered with the contract's error variant.
    #[error("plugin `{plugin}`: {call}: {}", error.summary())]
    Adapter { plugin: String, call: String, error: AdapterError },

    /// The adapter trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("plugin `{plugin}`: {call} trapped: {message}. The adapter instance was discarded; report this to the adapter's vendor")]
    Trap { plugin: String, call: String, message: String },

    /// The call ran past its wall-clock deadline (an endless loop or a backend that hangs).
    #[error(
        "plugin `{plugin}`: {call} did not finish within {timeout:?} and was cut off. \
         If the backend is only slow, raise plugins.{plugin}.limits.call_timeout_secs"
    )]
    Timeout { plugin: String, call: String, timeout: Duration },

    /// The adapter tried to grow its memory past the cap.
    #[error(
        "plugin `{plugin}`: {call} tried to use more than its memory cap of {limit_mib} MiB and was stopped. \
         Raise plugins.{plugin}.limits.memory_mib if the adapter legitimately needs more"
    )]
    MemoryLimit { plugin: String, call: String, limit_mib: u64 },

    /// The call used up its fuel budget (test kit only).
    #[error("plugin `{plugin}`: {call} used up its fuel budget of {fuel} units")]
    FuelExhausted { plugin: String, call: String, fuel: u64 },

    /// The adapter tried an outbound request the sandbox does not allow.
    #[error("plugin `{plugin}`: {call} was denied: {denial}")]
    Denied { plugin: String, call: String, denial: Denial },

    /// A fresh instance could not be created.
    #[error("plugin `{plugin}`: cannot instantiate: {message}")]
    Instantiate { plugin: String, message: String },
}

impl CallError {
    /// The adapter's own error, when the call failed with one.
    pub fn adapter_error(&self) -> Option<&AdapterError> {
        match self {
            CallError::Adapter { error, .. } => Some(error),
            _ => None,
        }
    }

    /// A short name of the failure kind, stable for scripts (`--json`).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Adapter { error, .. } => error.kind_name(),
            CallError::Trap { .. } => "trap",
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::FuelExhausted { .. } => "fuel-exhausted",
            CallError::Denied { .. } => "sandbox-denied",
            CallError::Instantiate { .. } => "instantiate",
        }
    }
}
