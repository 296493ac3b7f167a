//! Classic roles as VMs, with their VHDs, network and snapshots.

use homeward_sdk::inventory::{DiskInfo, NicInfo, VmInfo};
use homeward_sdk::types::{AdapterError, DeploymentModel};

use crate::compute::shape;
use crate::site::{Role, Site};
use crate::snapshots;

/// Every role.
pub fn vms(site: &Site) -> Result<Vec<VmInfo>, AdapterError> {
    site.all_roles()?.iter().map(|r| describe(site, r)).collect()
}

/// One role by `{service}/{role}`.
pub fn vm(site: &Site, id: &str) -> Result<VmInfo, AdapterError> {
    describe(site, &site.role(id)?)
}

fn describe(site: &Site, r: &Role) -> Result<VmInfo, AdapterError> {
    let (cpu_count, memory_mib) = shape(&r.size);
    let mut disks = Vec::new();
    for d in &r.disks {
        disks.push(DiskInfo {
            id: d.name.clone(),
            label: d.name.clone(),
            capacity_bytes: site.vhd_bytes(&d.media, None)?,
            uuid: String::new(),
            // VHDs live in a storage account, not a datastore the site lists.
            datastore: None,
            path: d.media.clone(),
            // Blob snapshots diff any two points of a VHD: always tracked.
            change_tracking: true,
        });
    }
    let nics = vec![NicInfo { id: format!("{}/nic0", r.id()), network: r.vnet.clone().unwrap_or_default(), mac: String::new() }];
    Ok(VmInfo {
        id: r.id(),
        name: r.name.clone(),
        uuid: String::new(),
        power_state: r.power_state(),
        guest_os: r.os.clone(),
        cpu_count,
        memory_mib,
        host: Some(site.location.clone()),
        disks,
        nics,
        snapshots: snapshots::of_vm(&r.id()),
        extra_config: Vec::new(),
        deployment_model: DeploymentModel::AzureClassic,
    })
}
