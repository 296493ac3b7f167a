//! Where the workspace's built plugins are.
//!
//! The build script compiles every WASM adapter for `wasm32-wasip2` and the example native
//! transport as part of the ordinary `cargo build` / `cargo test`, so tests, the drill and
//! the test kit always load components built from the source beside them.

use std::path::Path;

/// The directory-site adapter template (`examples/adapter-template`).
pub fn adapter_template() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_ADAPTER_TEMPLATE"))
}

/// The deliberately misbehaving adapter (`tests/fixtures/misbehave`).
pub fn fixture_misbehave() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_FIXTURE_MISBEHAVE"))
}

/// The example native transport (`examples/native-transport`).
pub fn native_transport_example() -> &'static Path {
    Path::new(env!("HOMEWARD_NATIVE_NATIVE_TRANSPORT_EXAMPLE"))
}
