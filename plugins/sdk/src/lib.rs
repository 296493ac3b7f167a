//! Guest-side helpers shared by Homeward site adapters.
//!
//! An adapter is a WASM component (`wasm32-wasip2`) that implements the `adapter` world of
//! `homeward:adapter@0.1.0` (see `wit/adapter.wit`). This crate gives it:
//! - [`bindings`]: the generated types and the `Guest` traits to implement, and
//!   [`export!`] to export an implementation;
//! - [`manifest!`]: embeds the adapter's manifest (name, declared outbound hosts) in a
//!   custom section the host reads before it instantiates anything;
//! - [`http`]: a small blocking HTTP client over `wasi:http/outgoing-handler`;
//! - [`error`] and [`host`]: terse constructors for the contract's errors and typed access
//!   to the host's config, secrets, key-value store and log.

pub mod azure;
pub mod error;
pub mod host;
pub mod http;
pub mod soap;
pub mod vsphere;

/// Generated bindings for the `adapter` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "homeward:adapter/adapter",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_adapter",
        default_bindings_module: "homeward_sdk::bindings",
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

/// Exports an implementation of the four adapter interfaces as the component's exports.
///
/// Only a `wasm32` build exports anything: the component-model export names
/// (`homeward:adapter/site@0.1.0#describe`) are not valid native symbols, and a native
/// build of an adapter crate exists only to unit-test its logic.
///
/// ```ignore
/// struct MyAdapter;
/// // impl the site, inventory, compute and disks Guest traits for MyAdapter …
/// homeward_sdk::export!(MyAdapter);
/// ```
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_adapter!($ty);
    };
}
pub use bindings::exports::homeward::adapter::{compute, disks, inventory, site};
pub use bindings::homeward::adapter::types;
pub use types::AdapterError;

/// The name of the custom section that carries an adapter's manifest.
pub const MANIFEST_SECTION: &str = "homeward-manifest";

/// Embeds a manifest file (TOML, path relative to the adapter crate's root) in the
/// component's `homeward-manifest` custom section.
///
/// The host reads it before instantiation: it names the adapter and declares the outbound
/// hosts the adapter may need (templated from its config, such as `https://{{endpoint}}`).
/// The operator's grants can narrow that list, never widen it.
///
/// ```ignore
/// homeward_sdk::manifest!("homeward-adapter.toml");
/// ```
#[macro_export]
macro_rules! manifest {
    ($path:literal) => {
        #[used]
        #[unsafe(link_section = "homeward-manifest")]
        static HOMEWARD_MANIFEST: [u8; include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)).len()] =
            *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path));
    };
}
