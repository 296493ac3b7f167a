//! The configured Resource Manager site: subscription, resource group for new objects,
//! and the paths of what lives there.

use homeward_sdk::azure::arm::{Arm, parse_id};
use homeward_sdk::types::AdapterError;
use homeward_sdk::{error, host};
use serde_json::Value;

/// The adapter's view of its configuration.
pub struct Site {
    pub arm: Arm,
    pub subscription: String,
    /// Where new VMs, NICs and disks go.
    pub resource_group: String,
}

impl Site {
    /// Reads the config (see the crate docs for the keys).
    pub fn load() -> Result<Site, AdapterError> {
        Ok(Site { arm: Arm::from_config()?, subscription: host::require("subscription_id")?, resource_group: host::require("resource_group")? })
    }

    /// `/subscriptions/{sub}`.
    pub fn sub_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ty}/{name}` in the configured group.
    pub fn resource(&self, ty: &str, name: &str) -> String {
        format!("{}/resourceGroups/{}/providers/{ty}/{name}", self.sub_path(), self.resource_group)
    }

    /// Every resource of a type in the subscription.
    pub fn list_all(&self, ty: &str) -> Result<Vec<Value>, AdapterError> {
        self.arm.list(&format!("listing {ty} in subscription {}", self.subscription), &format!("{}/providers/{ty}", self.sub_path()))
    }

    /// The region new objects go to: config `location`, else the group's.
    pub fn location(&self) -> Result<String, AdapterError> {
        if let Some(l) = homeward_sdk::bindings::homeward::adapter::config::get("location") {
            return Ok(l);
        }
        let path = format!("{}/resourceGroups/{}", self.sub_path(), self.resource_group);
        let g = self.arm.get(&format!("reading resource group {}", self.resource_group), &path)?;
        g["location"].as_str().map(str::to_string).ok_or_else(|| error::internal(format!("resource group {} has no location", self.resource_group)))
    }
}

/// Checks that `id` is a Resource Manager id of type `ty`, naming `what` otherwise.
pub fn require_type(id: &str, ty: &str, what: &str) -> Result<(String, String, String), AdapterError> {
    match parse_id(id) {
        Some((s, g, t, n)) if t.eq_ignore_ascii_case(ty) => Ok((s, g, n)),
        _ => Err(error::not_found(format!("{what} `{id}` is not a Resource Manager {ty} id on this site"))),
    }
}

/// Resource names Azure accepts for what this adapter creates.
pub fn check_name(name: &str, what: &str) -> Result<(), AdapterError> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(error::invalid(format!("{what} `{name}` must be 1-64 letters, digits, '-', '_' or '.'"))) }
}

/// Same id, compared as Azure does (case-insensitively).
pub fn same_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}
