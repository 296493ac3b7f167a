//! Reads what a component is before anything is compiled or instantiated: its WIT package
//! version (from its export names), its exports and imports, and its manifest (a custom
//! section the adapter embeds with `homeward_sdk::manifest!`).

use serde::{Deserialize, Serialize};
use wasmparser::{Encoding, Parser, Payload};

/// The `homeward:adapter` version this host serves.
pub const SUPPORTED_WIT_VERSION: &str = "0.1.0";

/// The interfaces every adapter must export.
pub const REQUIRED_EXPORTS: [&str; 4] = ["site", "inventory", "compute", "disks"];

const PACKAGE: &str = "homeward:adapter/";
const MANIFEST_SECTION: &str = "homeward-manifest";

/// What an adapter's author declares about it, embedded in the component.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The adapter's name, such as `vmware-vcenter`.
    pub name: String,
    /// The adapter's own version.
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Outbound origins the adapter may need, templated from its config
    /// (`https://{{endpoint}}`). Empty means the adapter needs no network.
    #[serde(default)]
    pub outbound: Vec<String>,
}

/// What a component file is, read without instantiating it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// The `homeward:adapter` version its exports were built against, if any.
    pub wit_version: Option<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// Top-level import names.
    pub imports: Vec<String>,
    /// The embedded manifest, or none if the author embedded none.
    pub manifest: Option<Manifest>,
}

/// Why a file could not be read as an adapter component.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not a WASM component: {0}")]
    NotAComponent(String),
    #[error("invalid manifest: {0}")]
    BadManifest(String),
}

/// Parses a component's top-level exports, imports and manifest.
pub fn inspect(bytes: &[u8]) -> Result<ComponentInfo, InspectError> {
    let mut depth = 0usize;
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut saw_component = false;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InspectError::NotAComponent(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    saw_component = encoding == Encoding::Component;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| InspectError::NotAComponent(e.to_string()))?;
                    exports.push(export.name.name.to_string());
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| InspectError::NotAComponent(e.to_string()))?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::CustomSection(section) if section.name() == MANIFEST_SECTION => {
                manifest_bytes = Some(section.data().to_vec());
            }
            _ => {}
        }
    }
    if !saw_component {
        return Err(InspectError::NotAComponent(
            "it is a core module, not a component; build it for wasm32-wasip2".into(),
        ));
    }
    let manifest = match manifest_bytes {
        None => None,
        Some(raw) => {
            let text = std::str::from_utf8(&raw).map_err(|e| InspectError::BadManifest(e.to_string()))?;
            Some(toml::from_str::<Manifest>(text).map_err(|e| InspectError::BadManifest(e.to_string()))?)
        }
    };
    let wit_version = exports.iter().find_map(|name| adapter_export_version(name).map(|(_, v)| v.to_string()));
    Ok(ComponentInfo { wit_version, exports, imports, manifest })
}

/// Splits `homeward:adapter/site@0.1.0` into (`site`, `0.1.0`).
pub fn adapter_export_version(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(PACKAGE)?.split_once('@')
}

impl ComponentInfo {
    /// The required adapter interfaces this component does not export at the given version.
    pub fn missing_exports(&self, version: &str) -> Vec<String> {
        REQUIRED_EXPORTS
            .iter()
            .filter(|iface| !self.exports.iter().any(|e| adapter_export_version(e) == Some((iface, version))))
            .map(|iface| format!("{PACKAGE}{iface}@{version}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_versioned_export_names() {
        assert_eq!(adapter_export_version("homeward:adapter/site@0.1.0"), Some(("site", "0.1.0")));
        assert_eq!(adapter_export_version("wasi:http/types@0.2.12"), None);
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let module = b"\0asm\x01\0\0\0";
        assert!(matches!(inspect(module), Err(InspectError::NotAComponent(_))));
    }

    #[test]
    fn garbage_is_not_a_component() {
        assert!(matches!(inspect(b"hello"), Err(InspectError::NotAComponent(_))));
    }
}
