//! Host-side bindings for the `adapter` world of `homeward:adapter@0.1.0`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "homeward:adapter/adapter",
    imports: { default: tracing },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    require_store_data_send: true,
});

pub use exports::homeward::adapter::{compute, disks, inventory, site};
pub use homeward::adapter::types;
pub use types::AdapterError;

impl AdapterError {
    /// The contract's name for this error case, such as `not-found`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            AdapterError::NotFound(_) => "not-found",
            AdapterError::AlreadyExists(_) => "already-exists",
            AdapterError::InvalidArgument(_) => "invalid-argument",
            AdapterError::PermissionDenied(_) => "permission-denied",
            AdapterError::Unavailable(_) => "unavailable",
            AdapterError::Unsupported(_) => "unsupported",
            AdapterError::Conflict(_) => "conflict",
            AdapterError::Internal(_) => "internal",
        }
    }

    /// `kind: message`, with the retry hint of `unavailable`.
    pub fn summary(&self) -> String {
        match self {
            AdapterError::Unavailable(types::Unavailable { message, retry_after_ms: Some(ms) }) => {
                format!("unavailable: {message} (retry after {ms} ms)")
            }
            other => format!("{}: {}", other.kind_name(), other.message()),
        }
    }

    /// The adapter's message for the operator.
    pub fn message(&self) -> &str {
        match self {
            AdapterError::NotFound(m)
            | AdapterError::AlreadyExists(m)
            | AdapterError::InvalidArgument(m)
            | AdapterError::PermissionDenied(m)
            | AdapterError::Unsupported(m)
            | AdapterError::Conflict(m)
            | AdapterError::Internal(m) => m,
            AdapterError::Unavailable(u) => &u.message,
        }
    }
}
