//! What exists on the site: `describe` and the read-only inventory.

use std::fs;
use std::path::Path;

use homeward_sdk::AdapterError;
use homeward_sdk::inventory::{
    DatastoreInfo, DiskInfo, HostInfo, NetworkInfo, NicInfo, SnapshotInfo, VmInfo,
};
use homeward_sdk::site::{Capabilities, SiteInfo, TransportKind};
use homeward_sdk::types::{DeploymentModel, KeyValue, PowerState, SiteKind};

use crate::layout::{DATASTORE_ID, HOST_ID, Site, Transport};
use crate::snapshots;
use crate::util::{io_error, mac_for};
use crate::vm_file::{Power, VmFile};

/// The adapter's name and version, as `describe` reports them.
pub const ADAPTER: &str = concat!("adapter-template ", env!("CARGO_PKG_VERSION"));

/// The version of the on-disk layout this adapter reads and writes.
pub const LAYOUT_VERSION: &str = "1";

/// Describes the site and what the adapter can do there.
pub fn describe(site: &Site) -> Result<SiteInfo, AdapterError> {
    let site_file = site.site_file()?;
    let transports = match site.transport {
        Transport::File => vec![TransportKind::File, TransportKind::Served],
        Transport::Served => vec![TransportKind::Served, TransportKind::File],
    };
    Ok(SiteInfo {
        kind: SiteKind::Directory,
        adapter: ADAPTER.to_string(),
        api_version: LAYOUT_VERSION.to_string(),
        product: match site_file.name {
            Some(name) => format!("Homeward directory site `{name}`"),
            None => "Homeward directory site".to_string(),
        },
        product_version: LAYOUT_VERSION.to_string(),
        licence: None,
        deployment_model: DeploymentModel::OnPremises,
        capabilities: Capabilities {
            change_tracking: true,
            // No guest to quiesce: the flag is recorded on the snapshot.
            quiesced_snapshots: true,
            create_vm: true,
            clone_vm: false,
            managed_inventory: false,
            deploy_process_server: false,
            privileges: false,
            transports,
        },
    })
}

/// The one host.
pub fn hosts(site: &Site) -> Result<Vec<HostInfo>, AdapterError> {
    let site_file = site.site_file()?;
    Ok(vec![HostInfo {
        id: HOST_ID.to_string(),
        name: site_file.host.unwrap_or_else(|| HOST_ID.to_string()),
        connected: true,
        in_maintenance: false,
        product_version: LAYOUT_VERSION.to_string(),
    }])
}

/// The one datastore: the root directory.
pub fn datastores(site: &Site) -> Result<Vec<DatastoreInfo>, AdapterError> {
    let site_file = site.site_file()?;
    Ok(vec![DatastoreInfo {
        id: DATASTORE_ID.to_string(),
        name: site_file
            .datastore
            .unwrap_or_else(|| DATASTORE_ID.to_string()),
        capacity_bytes: site.capacity_bytes,
        free_bytes: free_bytes(site)?,
        filesystem: "directory".to_string(),
        accessible_from: vec![HOST_ID.to_string()],
    }])
}

/// The configured capacity minus the length of every file under the root. WASI cannot ask
/// the file system for free space or allocated blocks, so sparse files count at full length:
/// the figure errs on the safe side.
pub fn free_bytes(site: &Site) -> Result<u64, AdapterError> {
    Ok(site.capacity_bytes.saturating_sub(used_bytes(&site.root)?))
}

fn used_bytes(dir: &Path) -> Result<u64, AdapterError> {
    let mut total = 0u64;
    for entry in fs::read_dir(dir).map_err(|e| io_error("measuring the datastore", dir, e))? {
        let entry = entry.map_err(|e| io_error("measuring the datastore", dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| io_error("measuring the datastore", &entry.path(), e))?;
        total = total.saturating_add(if meta.is_dir() {
            used_bytes(&entry.path())?
        } else {
            meta.len()
        });
    }
    Ok(total)
}

/// The networks named in `site.toml`.
pub fn networks(site: &Site) -> Result<Vec<NetworkInfo>, AdapterError> {
    let site_file = site.site_file()?;
    Ok(site_file
        .networks
        .into_iter()
        .map(|name| NetworkInfo {
            id: name.clone(),
            name,
            deployment_model: DeploymentModel::OnPremises,
            subnets: Vec::new(),
        })
        .collect())
}

/// Every VM, sorted by id.
pub fn list_vms(site: &Site) -> Result<Vec<VmInfo>, AdapterError> {
    site.vm_ids()?.iter().map(|id| vm_info(site, id)).collect()
}

/// One VM with its disks, NICs, snapshots and extra-config.
pub fn vm_info(site: &Site, vm: &str) -> Result<VmInfo, AdapterError> {
    let file = VmFile::load(site, vm)?;
    let snapshots = snapshots::list(site, vm)?
        .into_iter()
        .map(|(id, s)| SnapshotInfo {
            id,
            name: s.name,
            created: s.created,
            quiesced: s.quiesced,
            parent: s.parent,
        })
        .collect();
    Ok(VmInfo {
        id: vm.to_string(),
        name: file.name.clone(),
        uuid: file.uuid.clone(),
        power_state: match file.power_state {
            Power::PoweredOn => PowerState::PoweredOn,
            Power::PoweredOff => PowerState::PoweredOff,
            Power::Suspended => PowerState::Suspended,
        },
        guest_os: file.guest_os.clone(),
        cpu_count: file.cpu_count,
        memory_mib: file.memory_mib,
        host: Some(HOST_ID.to_string()),
        disks: file
            .disks
            .iter()
            .map(|(label, d)| DiskInfo {
                id: label.clone(),
                label: label.clone(),
                capacity_bytes: d.capacity_bytes,
                uuid: d.uuid.clone(),
                datastore: Some(DATASTORE_ID.to_string()),
                path: site.disk_file(vm, label).display().to_string(),
                change_tracking: d.change_tracking,
            })
            .collect(),
        nics: file
            .networks
            .iter()
            .enumerate()
            .map(|(i, net)| NicInfo {
                id: format!("nic-{i}"),
                network: net.clone(),
                mac: mac_for(&file.uuid, i),
            })
            .collect(),
        snapshots,
        extra_config: file
            .extra_config
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        deployment_model: DeploymentModel::OnPremises,
    })
}
