//! The inventory as the contract's records: hosts, datastores with the hosts that mount
//! them, networks, and VMs with their devices, snapshots and extra-config.

use super::collector::{self, ObjectContent};
use super::session::Client;
use crate::error;
use crate::inventory::{DatastoreInfo, DiskInfo, HostInfo, NetworkInfo, NicInfo, SnapshotInfo, VmInfo};
use crate::soap::{Element, MoRef};
use crate::types::{AdapterError, DeploymentModel, KeyValue, PowerState};

/// The VM properties [`vm_info`] needs.
pub const VM_PATHS: &[&str] = &[
    "name",
    "config.uuid",
    "config.guestId",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "config.extraConfig",
    "config.changeTrackingEnabled",
    "runtime.powerState",
    "runtime.host",
    "guest.toolsRunningStatus",
    "snapshot",
];

/// A VM's moref from its id.
pub fn vm_ref(id: &str) -> MoRef {
    MoRef::new("VirtualMachine", id)
}

/// A snapshot's moref from its id.
pub fn snapshot_ref(id: &str) -> MoRef {
    MoRef::new("VirtualMachineSnapshot", id)
}

/// A virtual disk as `config.hardware.device` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDisk {
    /// The device key, which is the contract's disk id.
    pub key: i32,
    /// `deviceInfo.label`, such as `Hard disk 1`.
    pub label: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// The SCSI controller's device key.
    pub controller_key: i32,
    /// The unit on that controller.
    pub unit: i32,
    /// `backing.fileName`, such as `[datastore1] web01/web01.vmdk`.
    pub file_name: String,
    /// `backing.datastore`.
    pub datastore: Option<MoRef>,
    /// `backing.uuid`.
    pub uuid: String,
    /// `backing.changeId`, present while change tracking is on.
    pub change_id: Option<String>,
}

/// A SCSI controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// Device key.
    pub key: i32,
    /// SCSI bus number.
    pub bus: i32,
}

fn devices(list: &Element) -> impl Iterator<Item = &Element> {
    list.children.iter()
}

/// The virtual disks in a `config.hardware.device` value.
pub fn virtual_disks(list: &Element) -> Vec<VirtualDisk> {
    devices(list)
        .filter(|d| d.xsi_type.as_deref() == Some("VirtualDisk"))
        .filter_map(|d| {
            let backing = d.child("backing");
            let capacity = match d.child_i64("capacityInBytes") {
                Some(b) if b > 0 => b as u64,
                _ => d.child_i64("capacityInKB").unwrap_or(0).max(0) as u64 * 1024,
            };
            Some(VirtualDisk {
                key: d.child_i64("key")? as i32,
                label: d.path(&["deviceInfo", "label"]).map(|l| l.text.trim().to_string()).unwrap_or_default(),
                capacity,
                controller_key: d.child_i64("controllerKey").unwrap_or(0) as i32,
                unit: d.child_i64("unitNumber").unwrap_or(0) as i32,
                file_name: backing.and_then(|b| b.child_text("fileName")).unwrap_or_default().to_string(),
                datastore: backing.and_then(|b| b.child("datastore")).and_then(Element::as_moref),
                uuid: backing.and_then(|b| b.child_text("uuid")).unwrap_or_default().to_string(),
                change_id: backing.and_then(|b| b.child_text("changeId")).filter(|c| !c.is_empty()).map(str::to_string),
            })
        })
        .collect()
}

/// The SCSI controllers in a `config.hardware.device` value.
pub fn scsi_controllers(list: &Element) -> Vec<Controller> {
    devices(list)
        .filter(|d| {
            matches!(
                d.xsi_type.as_deref(),
                Some("VirtualLsiLogicController" | "VirtualLsiLogicSASController" | "ParaVirtualSCSIController" | "VirtualBusLogicController")
            )
        })
        .filter_map(|d| Some(Controller { key: d.child_i64("key")? as i32, bus: d.child_i64("busNumber").unwrap_or(0) as i32 }))
        .collect()
}

fn nics(list: &Element) -> Vec<NicInfo> {
    devices(list)
        .filter(|d| d.child("macAddress").is_some() || d.path(&["backing", "network"]).is_some())
        .filter_map(|d| {
            let backing = d.child("backing");
            let network = backing
                .and_then(|b| b.child("network"))
                .and_then(Element::as_moref)
                .map(|m| m.value)
                .or_else(|| backing.and_then(|b| b.path(&["port", "portgroupKey"])).map(|p| p.text.trim().to_string()))
                .or_else(|| backing.and_then(|b| b.child_text("deviceName")).map(str::to_string))
                .unwrap_or_default();
            Some(NicInfo { id: d.child_text("key")?.to_string(), network, mac: d.child_text("macAddress").unwrap_or_default().to_string() })
        })
        .collect()
}

fn snapshots(tree: Option<&Element>) -> Vec<SnapshotInfo> {
    fn walk(node: &Element, parent: Option<&str>, out: &mut Vec<SnapshotInfo>) {
        let Some(id) = node.child("snapshot").and_then(Element::as_moref).map(|m| m.value) else { return };
        out.push(SnapshotInfo {
            id: id.clone(),
            name: node.child_text("name").unwrap_or_default().to_string(),
            created: node.child_text("createTime").unwrap_or_default().to_string(),
            quiesced: node.child_bool("quiesced").unwrap_or(false),
            parent: parent.map(str::to_string),
        });
        for child in node.children_named("childSnapshotList") {
            walk(child, Some(&id), out);
        }
    }
    let mut out = Vec::new();
    if let Some(t) = tree {
        for root in t.children_named("rootSnapshotList") {
            walk(root, None, &mut out);
        }
    }
    out
}

fn extra_config(list: Option<&Element>) -> Vec<KeyValue> {
    list.map(|l| {
        l.children
            .iter()
            .filter_map(|o| Some(KeyValue { key: o.child_text("key")?.to_string(), value: o.child_text("value").unwrap_or_default().to_string() }))
            .collect()
    })
    .unwrap_or_default()
}

fn power(text: &str) -> PowerState {
    match text {
        "poweredOn" => PowerState::PoweredOn,
        "poweredOff" => PowerState::PoweredOff,
        "suspended" => PowerState::Suspended,
        _ => PowerState::Unknown,
    }
}

/// A VM's properties (read with [`VM_PATHS`]) as the contract's record.
pub fn vm_info(o: &ObjectContent) -> VmInfo {
    let empty = Element::default();
    let device_list = o.get("config.hardware.device").unwrap_or(&empty);
    let tracking = o.bool("config.changeTrackingEnabled").unwrap_or(false);
    VmInfo {
        id: o.obj.value.clone(),
        name: o.text("name"),
        uuid: o.text("config.uuid"),
        power_state: power(&o.text("runtime.powerState")),
        guest_os: o.text("config.guestId"),
        cpu_count: o.int("config.hardware.numCPU").unwrap_or(0).max(0) as u32,
        memory_mib: o.int("config.hardware.memoryMB").unwrap_or(0).max(0) as u64,
        host: o.moref("runtime.host").map(|h| h.value),
        disks: virtual_disks(device_list)
            .into_iter()
            .map(|d| DiskInfo {
                id: d.key.to_string(),
                label: d.label,
                capacity_bytes: d.capacity,
                uuid: d.uuid,
                datastore: d.datastore.map(|m| m.value),
                path: d.file_name,
                change_tracking: tracking,
            })
            .collect(),
        nics: nics(device_list),
        snapshots: snapshots(o.get("snapshot")),
        extra_config: extra_config(o.get("config.extraConfig")),
        deployment_model: DeploymentModel::OnPremises,
    }
}

/// The hosts.
pub fn list_hosts(client: &Client) -> Result<Vec<HostInfo>, AdapterError> {
    let objs = collector::all_of_type(
        client,
        "HostSystem",
        &["name", "runtime.connectionState", "runtime.inMaintenanceMode", "summary.config.product.version"],
    )?;
    Ok(objs
        .iter()
        .map(|o| HostInfo {
            id: o.obj.value.clone(),
            name: o.text("name"),
            connected: o.text("runtime.connectionState") == "connected",
            in_maintenance: o.bool("runtime.inMaintenanceMode").unwrap_or(false),
            product_version: o.text("summary.config.product.version"),
        })
        .collect())
}

/// The datastores with the hosts that mount them, unchecked for browse rights.
pub fn datastores(client: &Client) -> Result<Vec<(MoRef, DatastoreInfo)>, AdapterError> {
    let objs = collector::all_of_type(client, "Datastore", &["name", "summary.capacity", "summary.freeSpace", "summary.type", "host"])?;
    Ok(objs
        .iter()
        .map(|o| {
            let accessible_from = o
                .get("host")
                .map(|h| {
                    h.children
                        .iter()
                        .filter(|m| {
                            let info = m.child("mountInfo");
                            // Unreported flags mean mounted and accessible, as vSphere omits defaults.
                            info.and_then(|i| i.child_bool("mounted")).unwrap_or(true) && info.and_then(|i| i.child_bool("accessible")).unwrap_or(true)
                        })
                        .filter_map(|m| m.child("key").and_then(Element::as_moref).map(|k| k.value))
                        .collect()
                })
                .unwrap_or_default();
            (
                o.obj.clone(),
                DatastoreInfo {
                    id: o.obj.value.clone(),
                    name: o.text("name"),
                    capacity_bytes: o.int("summary.capacity").unwrap_or(0).max(0) as u64,
                    free_bytes: o.int("summary.freeSpace").unwrap_or(0).max(0) as u64,
                    filesystem: o.text("summary.type"),
                    accessible_from,
                },
            )
        })
        .collect())
}

/// The networks (port groups).
pub fn list_networks(client: &Client) -> Result<Vec<NetworkInfo>, AdapterError> {
    let objs = collector::all_of_type(client, "Network", &["name"])?;
    Ok(objs
        .iter()
        .map(|o| NetworkInfo { id: o.obj.value.clone(), name: o.text("name"), deployment_model: DeploymentModel::OnPremises, subnets: Vec::new() })
        .collect())
}

/// Every VM.
pub fn list_vms(client: &Client) -> Result<Vec<VmInfo>, AdapterError> {
    Ok(collector::all_of_type(client, "VirtualMachine", VM_PATHS)?.iter().map(vm_info).collect())
}

/// One VM's raw properties; `not-found` when it does not exist.
pub fn vm_object(client: &Client, vm: &str) -> Result<ObjectContent, AdapterError> {
    if vm.is_empty() {
        return Err(error::invalid("the VM id is empty"));
    }
    collector::of_object(client, &vm_ref(vm), VM_PATHS)
}

/// One VM.
pub fn get_vm(client: &Client, vm: &str) -> Result<VmInfo, AdapterError> {
    Ok(vm_info(&vm_object(client, vm)?))
}

/// A VM's disk by id (the device key); `not-found` naming the VM otherwise.
pub fn find_disk(o: &ObjectContent, disk: &str) -> Result<VirtualDisk, AdapterError> {
    let empty = Element::default();
    virtual_disks(o.get("config.hardware.device").unwrap_or(&empty))
        .into_iter()
        .find(|d| d.key.to_string() == disk)
        .ok_or_else(|| error::not_found(format!("VM {} has no disk `{disk}` (disk ids are device keys such as 2000)", o.obj.value)))
}

/// Finds an object of any of `types` by id, for ids given without a type.
pub fn resolve(client: &Client, id: &str, types: &[&str]) -> Result<MoRef, AdapterError> {
    collector::all_of_types(client, types, &["name"])?
        .into_iter()
        .find(|o| o.obj.value == id)
        .map(|o| o.obj)
        .ok_or_else(|| error::not_found(format!("no {} with id `{id}` on the site", types.join(" or "))))
}
