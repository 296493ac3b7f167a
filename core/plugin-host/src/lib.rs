//! The Homeward plugin host.
//!
//! Site adapters are WASM components implementing `homeward:adapter@0.1.0` (see `wit/`).
//! This crate loads them from paths named in config, pins each by sha256, reads its WIT
//! version and manifest before instantiating anything, caches compiled code on disk by
//! hash, and calls it inside a sandbox:
//! - outbound HTTP only where the adapter's manifest declares it **and** the operator
//!   grants it ([`outbound`]);
//! - no filesystem unless the operator preopens a directory;
//! - a memory cap, an epoch deadline on every store, and a wall-clock timeout around every
//!   call ([`limits`]).
//!
//! An adapter that traps, spins, allocates past its cap or tries a denied host fails that
//! call with a typed [`CallError`]; its instance is discarded and the next call gets a
//! fresh one, and the host and other adapters go on serving.
//!
//! Native disk transports (trusted code, loaded with `libloading`) live in [`native`].
//! [`transports`] makes served-by-adapter disks and native disks
//! [`homeward_replication::transport::Transport`]s for the data path.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod error;
pub mod hash;
pub mod inspect;
pub mod kv;
pub mod limits;
pub mod native;
pub mod outbound;
pub mod plugin;
mod state;
pub mod transports;
pub mod verify;

pub use bindings::AdapterError;
pub use engine::{EngineOptions, PluginEngine};
pub use error::{CallError, LoadError};
pub use inspect::{ComponentInfo, Manifest, SUPPORTED_WIT_VERSION};
pub use plugin::{Plugin, PluginSpec, Preopen};
pub use transports::{NativeDiskTransport, ServedTransport, open_disk_access};
