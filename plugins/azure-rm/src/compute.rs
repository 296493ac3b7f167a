//! Changing the site: VMs (create, power, delete, disks, tags), snapshots, and the
//! failback process server.

use homeward_sdk::azure::arm::Pending;
use homeward_sdk::compute::{DiskSpec, Operation, PowerOffMode, ProcessServerSpec, VmSpec};
use homeward_sdk::types::{AdapterError, DeploymentModel, KeyValue, PowerState};
use homeward_sdk::{error, host};
use serde_json::{Value, json};

use crate::inventory::{self, disk_ids, fetch, nic_ids, power_state, vm_networks};
use crate::operations;
use crate::site::{Site, check_name, require_type, same_id};
use crate::sizes;
use crate::snapshots::{self, SNAPSHOT, TAG_DISK, TAG_NAME, TAG_VM};

const VM: &str = "Microsoft.Compute/virtualMachines";
const VNET: &str = "Microsoft.Network/virtualNetworks";
const NIC: &str = "Microsoft.Network/networkInterfaces";
const GIB: u64 = 1 << 30;

fn gib(bytes: u64) -> u64 {
    bytes.div_ceil(GIB).max(1)
}

fn image(guest_os: &str) -> (Value, &'static str) {
    if guest_os.to_ascii_lowercase().contains("win") {
        (json!({"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2019-Datacenter", "version": "latest"}), "Windows")
    } else {
        (json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}), "Linux")
    }
}

/// What a new VM needs: its NICs' subnets, disks and shape.
struct NewVm<'a> {
    name: &'a str,
    guest_os: &'a str,
    size: String,
    subnets: Vec<String>,
    os_disk_gb: Option<u64>,
    data_disks_gb: Vec<(String, u64)>,
    /// Existing disks to attach (first: the OS disk), for a failover from replicas.
    attach: Vec<String>,
    tags: Value,
}

/// The subnet id of `subnet` (or the first subnet) in virtual network `vnet`.
fn subnet_id(site: &Site, vnet: &str, subnet: Option<&str>) -> Result<String, AdapterError> {
    require_type(vnet, VNET, "network")?;
    let v = site.arm.get(&format!("reading network {vnet}"), vnet)?;
    let names: Vec<String> = v["properties"]["subnets"].as_array().map(|a| a.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect()).unwrap_or_default();
    let name = match subnet {
        Some(s) => names.iter().find(|n| n.eq_ignore_ascii_case(s)).cloned().ok_or_else(|| error::not_found(format!("network {vnet} has no subnet `{s}` (it has: {})", names.join(", "))))?,
        None => names.first().cloned().ok_or_else(|| error::conflict(format!("network {vnet} has no subnet; add one before placing a VM in it")))?,
    };
    Ok(format!("{}/subnets/{name}", v["id"].as_str().unwrap_or(vnet)))
}

fn vm_exists(site: &Site, name: &str) -> Result<Option<String>, AdapterError> {
    let id = site.resource(VM, name);
    Ok(site.arm.get_opt(&format!("reading VM {name}"), &id)?.map(|_| id))
}

/// Creates the NICs, then starts the VM PUT; the operation's target is the VM id.
fn create(site: &Site, spec: NewVm) -> Result<Operation, AdapterError> {
    check_name(spec.name, "VM name")?;
    if let Some(id) = vm_exists(site, spec.name)? {
        return Err(error::already_exists(format!("VM {} already exists ({id}); nothing was created", spec.name)));
    }
    let location = site.location()?;
    let mut nics = Vec::new();
    for (i, subnet) in spec.subnets.iter().enumerate() {
        let nic_name = format!("{}-nic{i}", spec.name);
        let nic_path = site.resource(NIC, &nic_name);
        let body = json!({"location": location, "tags": spec.tags, "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet}, "privateIPAllocationMethod": "Dynamic"}}]}});
        let (_, pending) = site.arm.start(&format!("creating NIC {nic_name}"), "PUT", &nic_path, Some(&body))?;
        if let Some(p) = pending {
            site.arm.wait(&format!("creating NIC {nic_name}"), &p)?;
        }
        nics.push(json!({"id": nic_path, "properties": {"primary": i == 0}}));
    }
    let (image_ref, os_type) = image(spec.guest_os);
    let new_data = |first_lun: usize| -> Vec<Value> {
        spec.data_disks_gb
            .iter()
            .enumerate()
            .map(|(i, (label, gb))| json!({"lun": first_lun + i, "name": format!("{}-{label}", spec.name), "createOption": "Empty", "diskSizeGB": gb, "managedDisk": {"storageAccountType": "Premium_LRS"}}))
            .collect()
    };
    let storage = match spec.attach.split_first() {
        // Booting from replicas: Azure takes no image and no OS profile for an attached
        // OS disk; the guest keeps its own identity.
        Some((os, rest)) => {
            let mut data: Vec<Value> = rest.iter().enumerate().map(|(lun, id)| json!({"lun": lun, "createOption": "Attach", "managedDisk": {"id": id}})).collect();
            data.extend(new_data(rest.len()));
            json!({"osDisk": {"createOption": "Attach", "osType": os_type, "caching": "ReadWrite", "managedDisk": {"id": os}}, "dataDisks": data})
        }
        None => {
            let mut os_disk = json!({"name": format!("{}-osdisk", spec.name), "createOption": "FromImage", "osType": os_type, "caching": "ReadWrite", "managedDisk": {"storageAccountType": "Premium_LRS"}});
            if let Some(gb) = spec.os_disk_gb {
                os_disk["diskSizeGB"] = json!(gb);
            }
            json!({"imageReference": image_ref, "osDisk": os_disk, "dataDisks": new_data(0)})
        }
    };
    let mut os_profile = json!({"computerName": spec.name, "adminUsername": host::config_or("admin_username", "homeward")});
    if let Some(key) = homeward_sdk::bindings::homeward::adapter::config::get("admin_ssh_public_key") {
        os_profile["linuxConfiguration"] = json!({"disablePasswordAuthentication": true, "ssh": {"publicKeys": [{"path": format!("/home/{}/.ssh/authorized_keys", host::config_or("admin_username", "homeward")), "keyData": key}]}});
    }
    let mut properties = json!({
        "hardwareProfile": {"vmSize": spec.size},
        "storageProfile": storage,
        "networkProfile": {"networkInterfaces": nics},
    });
    if spec.attach.is_empty() {
        properties["osProfile"] = os_profile;
    }
    let id = site.resource(VM, spec.name);
    let body = json!({"location": location, "tags": spec.tags, "properties": properties});
    let (_, pending) = site.arm.start(&format!("creating VM {}", spec.name), "PUT", &id, Some(&body))?;
    operations::start(pending.into_iter().collect(), Vec::new(), Some(id))
}

/// `compute.create-vm`.
pub fn create_vm(site: &Site, spec: VmSpec) -> Result<Operation, AdapterError> {
    if spec.networks.is_empty() {
        return Err(error::invalid(format!("VM {} needs at least one network: Azure VMs cannot exist without a NIC", spec.name)));
    }
    let subnets = spec.networks.iter().map(|n| subnet_id(site, n, None)).collect::<Result<Vec<_>, _>>()?;
    let mut disks = spec.disks.iter();
    let os_disk_gb = disks.next().map(|d| gib(d.capacity_bytes));
    let data_disks_gb = disks.map(|d| (d.label.clone(), gib(d.capacity_bytes))).collect();
    let tags: serde_json::Map<String, Value> = spec.extra_config.iter().filter(|kv| !kv.value.is_empty()).map(|kv| (kv.key.clone(), json!(kv.value))).collect();
    create(site, NewVm { name: &spec.name, guest_os: &spec.guest_os, size: sizes::fit(spec.cpu_count, spec.memory_mib).to_string(), subnets, os_disk_gb, data_disks_gb, attach: Vec::new(), tags: Value::Object(tags) })
}

/// `compute.create-vm-from-disks`: a VM that boots from replica disks (the first is the
/// OS disk); `spec.disks` become new empty data disks after them.
pub fn create_vm_from_disks(site: &Site, spec: VmSpec, attach: Vec<String>) -> Result<Operation, AdapterError> {
    if attach.is_empty() {
        return Err(error::invalid(format!("VM {}: create-vm-from-disks needs at least the OS disk in `attach`", spec.name)));
    }
    if spec.networks.is_empty() {
        return Err(error::invalid(format!("VM {} needs at least one network: Azure VMs cannot exist without a NIC", spec.name)));
    }
    for id in &attach {
        require_type(id, crate::disks::DISK, "disk")?;
    }
    let subnets = spec.networks.iter().map(|n| subnet_id(site, n, None)).collect::<Result<Vec<_>, _>>()?;
    let data_disks_gb = spec.disks.iter().map(|d| (d.label.clone(), gib(d.capacity_bytes))).collect();
    let tags: serde_json::Map<String, Value> = spec.extra_config.iter().filter(|kv| !kv.value.is_empty()).map(|kv| (kv.key.clone(), json!(kv.value))).collect();
    create(site, NewVm { name: &spec.name, guest_os: &spec.guest_os, size: sizes::fit(spec.cpu_count, spec.memory_mib).to_string(), subnets, os_disk_gb: None, data_disks_gb, attach, tags: Value::Object(tags) })
}

/// `compute.deploy-process-server`: only for Resource Manager VMs, in their network.
pub fn deploy_process_server(site: &Site, spec: ProcessServerSpec) -> Result<Operation, AdapterError> {
    if spec.deployment_model != DeploymentModel::AzureResourceManager {
        return Err(error::conflict(format!(
            "process server {} was asked for the {:?} deployment model, but this Resource Manager site only serves Resource Manager VMs; deploy it with the adapter of that model",
            spec.name, spec.deployment_model
        )));
    }
    if homeward_sdk::azure::arm::parse_id(&spec.network).is_none_or(|(_, _, t, _)| !t.eq_ignore_ascii_case(VNET)) {
        return Err(error::conflict(format!("network `{}` is not a Resource Manager virtual network; a Resource Manager process server must join the failed-over VMs' Resource Manager network", spec.network)));
    }
    for vm in &spec.for_vms {
        if homeward_sdk::azure::arm::parse_id(vm).is_none_or(|(_, _, t, _)| !t.eq_ignore_ascii_case(VM)) {
            return Err(error::conflict(format!("VM `{vm}` is not a Resource Manager VM (a classic VM?); the process server's deployment model must match the VM's")));
        }
        let v = fetch(site, vm)?;
        if !vm_networks(site, &v)?.iter().any(|n| same_id(n, &spec.network)) {
            return Err(error::conflict(format!("VM {vm} is not in network {}; the process server must be in the failed-over VM's network", spec.network)));
        }
    }
    let subnet = subnet_id(site, &spec.network, spec.subnet.as_deref())?;
    create(site, NewVm {
        name: &spec.name,
        guest_os: "windows2019srv_64Guest",
        size: host::config_or("process_server_size", "Standard_D4s_v3"),
        subnets: vec![subnet],
        os_disk_gb: None,
        data_disks_gb: vec![("retention".into(), 128)],
        attach: Vec::new(),
        tags: json!({"homeward-role": "process-server"}),
    })
}

/// `compute.power-on`.
pub fn power_on(site: &Site, vm: &str) -> Result<Operation, AdapterError> {
    let v = fetch(site, vm)?;
    if power_state(&v) == PowerState::PoweredOn {
        return homeward_sdk::azure::ops::completed(Some(vm.to_string()));
    }
    action(site, vm, "start")
}

/// `compute.power-off`: `hard` skips the guest shutdown, `deallocate` releases compute.
pub fn power_off(site: &Site, vm: &str, mode: PowerOffMode) -> Result<Operation, AdapterError> {
    let state = power_state(&fetch(site, vm)?);
    let done = match mode {
        PowerOffMode::Deallocate => state == PowerState::Deallocated,
        PowerOffMode::Hard | PowerOffMode::GuestShutdown => matches!(state, PowerState::PoweredOff | PowerState::Deallocated),
    };
    if done {
        return homeward_sdk::azure::ops::completed(Some(vm.to_string()));
    }
    match mode {
        PowerOffMode::Hard => action(site, vm, "powerOff?skipShutdown=true"),
        PowerOffMode::GuestShutdown => action(site, vm, "powerOff"),
        PowerOffMode::Deallocate => action(site, vm, "deallocate"),
    }
}

fn action(site: &Site, vm: &str, verb: &str) -> Result<Operation, AdapterError> {
    let (_, pending) = site.arm.start(&format!("{verb} on VM {vm}"), "POST", &format!("{vm}/{verb}"), None)?;
    operations::start(pending.into_iter().collect(), Vec::new(), Some(vm.to_string()))
}

/// `compute.delete-vm`: the VM, then its disks and NICs.
pub fn delete_vm(site: &Site, vm: &str) -> Result<Operation, AdapterError> {
    let v = fetch(site, vm)?;
    if power_state(&v) == PowerState::PoweredOn {
        return Err(error::conflict(format!("VM {vm} is running; power it off before deleting it")));
    }
    let mut then: Vec<String> = disk_ids(&v);
    then.extend(nic_ids(&v));
    let (_, pending) = site.arm.start(&format!("deleting VM {vm}"), "DELETE", vm, None)?;
    operations::start(pending.into_iter().collect(), then, Some(vm.to_string()))
}

/// Sends the VM back with a changed storage profile or tags.
fn update(site: &Site, vm: &str, change: impl FnOnce(&mut Value) -> Result<(), AdapterError>) -> Result<Option<Pending>, AdapterError> {
    let v = fetch(site, vm)?;
    let props = &v["properties"];
    let mut body = json!({
        "location": v["location"],
        "tags": v["tags"],
        "properties": {
            "hardwareProfile": props["hardwareProfile"],
            "storageProfile": {"osDisk": props["storageProfile"]["osDisk"], "dataDisks": props["storageProfile"]["dataDisks"]},
            "networkProfile": props["networkProfile"],
        }
    });
    change(&mut body)?;
    let (_, pending) = site.arm.start(&format!("updating VM {vm}"), "PUT", vm, Some(&body))?;
    Ok(pending)
}

/// `compute.attach-disk`: a new empty managed disk at the next free LUN.
pub fn attach_disk(site: &Site, vm: &str, disk: DiskSpec) -> Result<Operation, AdapterError> {
    check_name(&disk.label, "disk label")?;
    let vm_name = require_type(vm, VM, "VM")?.2;
    let disk_name = format!("{vm_name}-{}", disk.label);
    let disk_id = site.resource("Microsoft.Compute/disks", &disk_name);
    let pending = update(site, vm, |body| {
        let list = body["properties"]["storageProfile"]["dataDisks"].as_array_mut().ok_or_else(|| error::internal(format!("VM {vm} has no dataDisks list")))?;
        if list.iter().any(|d| d["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&disk_name) || n.eq_ignore_ascii_case(&disk.label))) {
            return Err(error::already_exists(format!("VM {vm} already has a disk labelled `{}`", disk.label)));
        }
        let lun = (0..64).find(|l| !list.iter().any(|d| d["lun"].as_u64() == Some(*l))).unwrap_or(63);
        list.push(json!({"lun": lun, "name": disk_name, "createOption": "Empty", "diskSizeGB": gib(disk.capacity_bytes), "managedDisk": {"storageAccountType": "Premium_LRS"}}));
        Ok(())
    })?;
    operations::start(pending.into_iter().collect(), Vec::new(), Some(disk_id))
}

/// `compute.detach-disk`, deleting the managed disk afterwards with `delete_backing`.
pub fn detach_disk(site: &Site, vm: &str, disk: &str, delete_backing: bool) -> Result<Operation, AdapterError> {
    let pending = update(site, vm, |body| {
        let list = body["properties"]["storageProfile"]["dataDisks"].as_array_mut().ok_or_else(|| error::internal(format!("VM {vm} has no dataDisks list")))?;
        let before = list.len();
        list.retain(|d| !d["managedDisk"]["id"].as_str().is_some_and(|id| same_id(id, disk)));
        if list.len() == before {
            return Err(error::not_found(format!("disk {disk} is not attached to VM {vm} as a data disk")));
        }
        Ok(())
    })?;
    let then = if delete_backing { vec![disk.to_string()] } else { Vec::new() };
    operations::start(pending.into_iter().collect(), then, Some(disk.to_string()))
}

/// `compute.reconfigure`: Azure has no extra-config; the keys become tags.
pub fn reconfigure(site: &Site, vm: &str, changes: Vec<KeyValue>) -> Result<Operation, AdapterError> {
    if let Some(bad) = changes.iter().find(|kv| kv.key.is_empty() || kv.key.len() > 512) {
        return Err(error::invalid(format!("tag name `{}` must be 1-512 characters", bad.key)));
    }
    let pending = update(site, vm, |body| {
        if !body["tags"].is_object() {
            body["tags"] = json!({});
        }
        let tags = body["tags"].as_object_mut().expect("made an object above");
        for kv in &changes {
            if kv.value.is_empty() {
                tags.remove(&kv.key);
            } else {
                tags.insert(kv.key.clone(), json!(kv.value));
            }
        }
        Ok(())
    })?;
    operations::start(pending.into_iter().collect(), Vec::new(), Some(vm.to_string()))
}

/// `compute.create-snapshot`: an incremental snapshot of every disk of the VM.
pub fn create_snapshot(site: &Site, vm: &str, name: &str, quiesce: bool) -> Result<Operation, AdapterError> {
    if quiesce {
        return Err(error::unsupported(format!("VM {vm}: Azure managed-disk snapshots are crash-consistent; this adapter cannot quiesce the guest")));
    }
    check_name(name, "snapshot name")?;
    let v = fetch(site, vm)?;
    let vm_id = v["id"].as_str().unwrap_or(vm).to_string();
    if !snapshots::parts(&snapshots::all(site)?, &vm_id, name).is_empty() {
        return Err(error::already_exists(format!("VM {vm} already has a snapshot named `{name}`; nothing was created")));
    }
    let mut pending = Vec::new();
    for disk in disk_ids(&v) {
        let (sub, rg, disk_name) = require_type(&disk, "Microsoft.Compute/disks", "disk")?;
        let path = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{SNAPSHOT}/{}", snapshots::resource_name(&disk_name, name));
        let body = json!({
            "location": v["location"],
            "tags": {TAG_VM: vm_id, TAG_NAME: name, TAG_DISK: disk},
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk}, "incremental": true},
        });
        let (_, p) = site.arm.start(&format!("snapshotting disk {disk} of VM {vm}"), "PUT", &path, Some(&body))?;
        pending.extend(p);
    }
    operations::start(pending, Vec::new(), Some(name.to_string()))
}

/// `compute.remove-snapshot`: deletes every disk's part of the VM snapshot.
pub fn remove_snapshot(site: &Site, vm: &str, snapshot: &str) -> Result<Operation, AdapterError> {
    let all = snapshots::all(site)?;
    let parts = snapshots::parts(&all, vm, snapshot);
    if parts.is_empty() {
        return Err(error::not_found(format!("VM {vm} has no snapshot `{snapshot}`")));
    }
    let mut pending = Vec::new();
    for s in parts {
        let id = s["id"].as_str().unwrap_or_default();
        let (_, p) = site.arm.start(&format!("deleting snapshot {id}"), "DELETE", id, None)?;
        pending.extend(p);
    }
    operations::start(pending, Vec::new(), Some(snapshot.to_string()))
}

/// Checks a VM exists and has `disk`; returns the VM.
pub fn vm_with_disk(site: &Site, vm: &str, disk: &str) -> Result<Value, AdapterError> {
    let v = fetch(site, vm)?;
    if !inventory::has_disk(&v, disk) {
        return Err(error::not_found(format!("disk {disk} is not attached to VM {vm}")));
    }
    Ok(v)
}
