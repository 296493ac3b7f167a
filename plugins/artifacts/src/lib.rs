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

/// The adapter template with one deliberate contract defect chosen by its config key
/// `defect` (`tests/fixtures/broken`): proves the test kit catches each defect.
pub fn fixture_broken() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_FIXTURE_BROKEN"))
}

/// The vCenter adapter (`plugins/vmware-vcenter`).
pub fn vmware_vcenter() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_VMWARE_VCENTER"))
}

/// The standalone-ESXi adapter (`plugins/vmware-esxi`).
pub fn vmware_esxi() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_VMWARE_ESXI"))
}

/// The Azure Resource Manager adapter (`plugins/azure-rm`).
pub fn azure_rm() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_AZURE_RM"))
}

/// The Azure classic adapter (`plugins/azure-classic`).
pub fn azure_classic() -> &'static Path {
    Path::new(env!("HOMEWARD_WASM_AZURE_CLASSIC"))
}

/// The example native transport (`examples/native-transport`).
pub fn native_transport_example() -> &'static Path {
    Path::new(env!("HOMEWARD_NATIVE_NATIVE_TRANSPORT_EXAMPLE"))
}
