//! What exists on the site: VMs with disks, NICs and snapshots, virtual networks, regions.

use homeward_sdk::inventory::{DiskInfo, HostInfo, NetworkInfo, NicInfo, SnapshotInfo, VmInfo};
use homeward_sdk::types::{AdapterError, DeploymentModel, KeyValue, PowerState};
use serde_json::Value;

use crate::site::{Site, require_type, same_id};
use crate::{sizes, snapshots};

const VM: &str = "Microsoft.Compute/virtualMachines";
const GIB: u64 = 1 << 30;

/// One host per region that holds VMs (Azure places VMs by region, not host).
pub fn hosts(site: &Site) -> Result<Vec<HostInfo>, AdapterError> {
    let mut regions: Vec<String> = site.list_all(VM)?.iter().filter_map(|v| v["location"].as_str().map(str::to_string)).collect();
    regions.push(site.location()?);
    regions.sort();
    regions.dedup();
    Ok(regions.into_iter().map(|r| HostInfo { id: r.clone(), name: r, connected: true, in_maintenance: false, product_version: site.arm.api_version.clone() }).collect())
}

/// Virtual networks with their subnets.
pub fn networks(site: &Site) -> Result<Vec<NetworkInfo>, AdapterError> {
    Ok(site
        .list_all("Microsoft.Network/virtualNetworks")?
        .iter()
        .map(|n| NetworkInfo {
            id: n["id"].as_str().unwrap_or_default().to_string(),
            name: n["name"].as_str().unwrap_or_default().to_string(),
            deployment_model: DeploymentModel::AzureResourceManager,
            subnets: n["properties"]["subnets"].as_array().map(|a| a.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect()).unwrap_or_default(),
        })
        .collect())
}

/// Every VM.
pub fn vms(site: &Site) -> Result<Vec<VmInfo>, AdapterError> {
    let snaps = snapshots::all(site)?;
    let mut out = Vec::new();
    for v in site.list_all(VM)? {
        let id = v["id"].as_str().unwrap_or_default();
        match fetch(site, id) {
            Ok(full) => out.push(describe(site, &full, &snaps)?),
            // Deleted between the list and the read: it is simply gone.
            Err(AdapterError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One VM by id.
pub fn vm(site: &Site, id: &str) -> Result<VmInfo, AdapterError> {
    let full = fetch(site, id)?;
    describe(site, &full, &snapshots::all(site)?)
}

/// The VM's JSON with its instance view.
pub fn fetch(site: &Site, id: &str) -> Result<Value, AdapterError> {
    require_type(id, VM, "VM")?;
    site.arm.get(&format!("reading VM {id}"), &format!("{id}?$expand=instanceView"))
}

/// The power state in an instance view.
pub fn power_state(vm: &Value) -> PowerState {
    let statuses = vm["properties"]["instanceView"]["statuses"].as_array().cloned().unwrap_or_default();
    let code = statuses.iter().filter_map(|s| s["code"].as_str()).find(|c| c.starts_with("PowerState/")).unwrap_or("");
    match code.trim_start_matches("PowerState/") {
        "running" | "starting" => PowerState::PoweredOn,
        "stopped" | "stopping" => PowerState::PoweredOff,
        "deallocated" | "deallocating" => PowerState::Deallocated,
        _ => PowerState::Unknown,
    }
}

/// The managed-disk ids of a VM, OS disk first.
pub fn disk_ids(vm: &Value) -> Vec<String> {
    let sp = &vm["properties"]["storageProfile"];
    std::iter::once(&sp["osDisk"])
        .chain(sp["dataDisks"].as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default())
        .filter_map(|d| d["managedDisk"]["id"].as_str().map(str::to_string))
        .collect()
}

/// The NIC ids of a VM.
pub fn nic_ids(vm: &Value) -> Vec<String> {
    vm["properties"]["networkProfile"]["networkInterfaces"].as_array().map(|a| a.iter().filter_map(|n| n["id"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The virtual network id of a subnet id (`…/virtualNetworks/{v}/subnets/{s}`).
pub fn vnet_of_subnet(subnet_id: &str) -> String {
    match subnet_id.to_ascii_lowercase().find("/subnets/") {
        Some(i) => subnet_id[..i].to_string(),
        None => subnet_id.to_string(),
    }
}

/// The virtual networks a VM's NICs are in.
pub fn vm_networks(site: &Site, vm: &Value) -> Result<Vec<String>, AdapterError> {
    let mut out = Vec::new();
    for nic in nic_ids(vm) {
        let n = site.arm.get(&format!("reading NIC {nic}"), &nic)?;
        for c in n["properties"]["ipConfigurations"].as_array().cloned().unwrap_or_default() {
            if let Some(s) = c["properties"]["subnet"]["id"].as_str() {
                out.push(vnet_of_subnet(s));
            }
        }
    }
    Ok(out)
}

/// A disk's size in bytes.
pub fn disk_bytes(d: &Value) -> u64 {
    d["properties"]["diskSizeBytes"].as_u64().unwrap_or_else(|| d["properties"]["diskSizeGB"].as_u64().unwrap_or(0) * GIB)
}

fn describe(site: &Site, vm: &Value, snaps: &[Value]) -> Result<VmInfo, AdapterError> {
    let id = vm["id"].as_str().unwrap_or_default().to_string();
    let props = &vm["properties"];
    let size = props["hardwareProfile"]["vmSize"].as_str().unwrap_or_default();
    let (cpu_count, memory_mib) = sizes::shape(size);
    let mut disks = Vec::new();
    for disk_id in disk_ids(vm) {
        let Some(d) = site.arm.get_opt(&format!("reading disk {disk_id}"), &disk_id)? else { continue };
        disks.push(DiskInfo {
            id: d["id"].as_str().unwrap_or(&disk_id).to_string(),
            label: d["name"].as_str().unwrap_or_default().to_string(),
            capacity_bytes: disk_bytes(&d),
            uuid: d["properties"]["uniqueId"].as_str().unwrap_or_default().to_string(),
            datastore: None,
            path: disk_id.clone(),
            // Incremental snapshots diff any two points of a managed disk: always tracked.
            change_tracking: true,
        });
    }
    let mut nics = Vec::new();
    for nic_id in nic_ids(vm) {
        let Some(n) = site.arm.get_opt(&format!("reading NIC {nic_id}"), &nic_id)? else { continue };
        let subnet = n["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"].as_str().unwrap_or_default();
        nics.push(NicInfo { id: nic_id.clone(), network: vnet_of_subnet(subnet), mac: n["properties"]["macAddress"].as_str().unwrap_or_default().to_string() });
    }
    let snapshots: Vec<SnapshotInfo> = snapshots::of_vm(snaps, &id);
    let extra_config = vm["tags"].as_object().map(|t| t.iter().map(|(k, v)| KeyValue { key: k.clone(), value: v.as_str().unwrap_or_default().to_string() }).collect()).unwrap_or_default();
    Ok(VmInfo {
        name: vm["name"].as_str().unwrap_or_default().to_string(),
        uuid: props["vmId"].as_str().unwrap_or_default().to_string(),
        power_state: power_state(vm),
        guest_os: props["storageProfile"]["osDisk"]["osType"].as_str().unwrap_or_default().to_string(),
        cpu_count,
        memory_mib,
        host: vm["location"].as_str().map(str::to_string),
        disks,
        nics,
        snapshots,
        extra_config,
        deployment_model: DeploymentModel::AzureResourceManager,
        id,
    })
}

/// Whether `disk` is one of the VM's disks.
pub fn has_disk(vm: &Value, disk: &str) -> bool {
    disk_ids(vm).iter().any(|d| same_id(d, disk))
}
