//! Classic virtual network sites.

use homeward_sdk::inventory::NetworkInfo;
use homeward_sdk::types::{AdapterError, DeploymentModel};
use homeward_sdk::error;

use crate::site::Site;

/// Every classic virtual network (the id is its name).
pub fn all(site: &Site) -> Result<Vec<NetworkInfo>, AdapterError> {
    let doc = site.sm.get("listing classic virtual networks", "/services/networking/virtualnetwork")?;
    Ok(doc
        .all("VirtualNetworkSite")
        .map(|v| {
            let name = v.text_at("Name").unwrap_or_default().to_string();
            NetworkInfo {
                id: name.clone(),
                name,
                deployment_model: DeploymentModel::AzureClassic,
                subnets: v.child("Subnets").map(|s| s.all("Subnet").filter_map(|n| n.text_at("Name").map(str::to_string)).collect()).unwrap_or_default(),
            }
        })
        .collect())
}

/// The classic network called `id`.
pub fn find(site: &Site, id: &str) -> Result<NetworkInfo, AdapterError> {
    all(site)?.into_iter().find(|n| n.id.eq_ignore_ascii_case(id)).ok_or_else(|| error::not_found(format!("classic virtual network `{id}` does not exist in subscription {}", site.sm.subscription)))
}
