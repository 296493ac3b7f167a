//! Checks a plugin file against its spec without compiling or instantiating it: the pin,
//! that it is a component, its WIT version, and that it exports the adapter interfaces.

use crate::error::LoadError;
use crate::hash::{normalise_pin, sha256_bytes};
use crate::inspect::{ComponentInfo, InspectError, SUPPORTED_WIT_VERSION, inspect};
use crate::outbound::OutboundPolicy;
use crate::plugin::PluginSpec;

/// A plugin file that passed every static check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub info: ComponentInfo,
}

/// Reads and checks the file a spec names.
pub fn verify(spec: &PluginSpec) -> Result<Verified, LoadError> {
    let name = spec.name.clone();
    let bytes = std::fs::read(&spec.path).map_err(|source| LoadError::Read { name: name.clone(), path: spec.path.clone(), source })?;
    let sha256 = sha256_bytes(&bytes);
    let expected = normalise_pin(&spec.sha256);
    if expected != sha256 {
        return Err(LoadError::HashMismatch { name, path: spec.path.clone(), expected, actual: sha256 });
    }
    let info = inspect(&bytes).map_err(|e| match e {
        InspectError::NotAComponent(message) => LoadError::NotAComponent { name: name.clone(), path: spec.path.clone(), message },
        InspectError::BadManifest(message) => LoadError::BadManifest { name: name.clone(), message },
    })?;
    if let Some(found) = &info.wit_version
        && found != SUPPORTED_WIT_VERSION
    {
        return Err(LoadError::IncompatibleVersion { name, found: found.clone(), supported: SUPPORTED_WIT_VERSION.to_string() });
    }
    let missing = info.missing_exports(SUPPORTED_WIT_VERSION);
    if !missing.is_empty() {
        return Err(LoadError::NotAnAdapter { name, path: spec.path.clone(), missing: missing.join(", ") });
    }
    Ok(Verified { bytes, sha256, info })
}

/// The outbound policy a verified plugin would run under.
pub fn policy(spec: &PluginSpec, info: &ComponentInfo) -> Result<OutboundPolicy, LoadError> {
    let declared = info.manifest.as_ref().map(|m| m.outbound.clone()).unwrap_or_default();
    OutboundPolicy::new(&spec.name, &declared, &spec.allow_hosts, &spec.config, &spec.config_source)
        .map_err(|message| LoadError::Config { name: spec.name.clone(), message })
}
