//! Changing the site: create and delete VMs, power, disks, extra-config and snapshots,
//! each started as a vim25 Task and returned as an operation.

use super::collector::{self, ObjectContent};
use super::inventory::{self, Controller, VirtualDisk, snapshot_ref, vm_ref};
use super::session::Client;
use super::tasks;
use crate::compute::{DiskSpec, Operation, PowerOffMode, VmSpec};
use crate::error;
use crate::soap::{Element, MoRef, Node};
use crate::types::{AdapterError, KeyValue};

/// Units a SCSI controller offers (unit 7 is the controller itself).
const SCSI_UNITS: std::ops::Range<i32> = 0..16;
const SCSI_CONTROLLER_UNIT: i32 = 7;

fn power_state(o: &ObjectContent) -> String {
    o.text("runtime.powerState")
}

fn device_list(o: &ObjectContent) -> Element {
    o.get("config.hardware.device").cloned().unwrap_or_default()
}

fn extra_config_node(kv: &KeyValue) -> Node {
    Node::new("extraConfig").child_text("key", kv.key.clone()).child(Node::text("value", kv.value.clone()).xsi_type("xsd:string"))
}

/// A `VirtualDeviceConfigSpec` creating a disk of `spec` on `controller_key`/`unit`.
fn new_disk_change(key: i32, controller_key: i32, unit: i32, spec: &DiskSpec, datastore: Option<(&MoRef, &str)>) -> Node {
    let mut backing = Node::new("backing").xsi_type("VirtualDiskFlatVer2BackingInfo");
    backing = match datastore {
        // `[ds]` alone lets the server name the file after the VM, on that datastore.
        Some((ds, name)) => backing.child_text("fileName", format!("[{name}]")).child(Node::moref("datastore", ds)),
        None => backing.child_text("fileName", ""),
    };
    backing = backing.child_text("diskMode", "persistent").child_text("thinProvisioned", spec.thin.to_string());
    let device = Node::new("device")
        .xsi_type("VirtualDisk")
        .child_text("key", key.to_string())
        .child(backing)
        .child_text("controllerKey", controller_key.to_string())
        .child_text("unitNumber", unit.to_string())
        .child_text("capacityInKB", spec.capacity_bytes.div_ceil(1024).to_string())
        .child_text("capacityInBytes", spec.capacity_bytes.to_string());
    Node::new("deviceChange").child_text("operation", "add").child_text("fileOperation", "create").child(device)
}

fn controller_change(key: i32, bus: i32) -> Node {
    Node::new("deviceChange").child_text("operation", "add").child(
        Node::new("device")
            .xsi_type("VirtualLsiLogicController")
            .child_text("key", key.to_string())
            .child_text("busNumber", bus.to_string())
            .child_text("sharedBus", "noSharing"),
    )
}

fn check_disk_spec(spec: &DiskSpec) -> Result<(), AdapterError> {
    if spec.capacity_bytes == 0 {
        return Err(error::invalid(format!("disk `{}` has a capacity of 0 bytes", spec.label)));
    }
    Ok(())
}

/// Starts `CreateVM_Task`. Refuses a name in use with `already-exists` before creating
/// anything, since vSphere only refuses duplicates within one folder.
pub fn create_vm(client: &Client, spec: &VmSpec) -> Result<Operation, AdapterError> {
    if spec.name.trim().is_empty() {
        return Err(error::invalid("the VM name is empty"));
    }
    for d in &spec.disks {
        check_disk_spec(d)?;
    }
    if spec.disks.len() > (SCSI_UNITS.len() - 1) {
        return Err(error::invalid(format!("{} disks requested; one SCSI controller holds at most 15", spec.disks.len())));
    }
    if spec.cpu_count == 0 || spec.memory_mib == 0 {
        return Err(error::invalid(format!("VM `{}` needs at least one CPU and some memory (got {} CPUs, {} MiB)", spec.name, spec.cpu_count, spec.memory_mib)));
    }
    if spec.extra_config.iter().any(|kv| kv.key.is_empty()) {
        return Err(error::invalid("an extra-config key is empty"));
    }
    if collector::all_of_type(client, "VirtualMachine", &["name"])?.iter().any(|o| o.text("name") == spec.name) {
        return Err(error::already_exists(format!("a VM named `{}` already exists; nothing was created", spec.name)));
    }
    let hosts = collector::all_of_type(client, "HostSystem", &["name", "parent", "runtime.connectionState"])?;
    let stores = inventory::datastores(client)?;
    let host = match &spec.host {
        Some(h) => hosts.iter().find(|o| &o.obj.value == h).ok_or_else(|| error::not_found(format!("host `{h}` does not exist")))?,
        None => hosts
            .iter()
            .filter(|o| o.text("runtime.connectionState") == "connected")
            .find(|o| spec.datastore.as_ref().is_none_or(|ds| stores.iter().any(|(r, d)| &r.value == ds && d.accessible_from.contains(&o.obj.value))))
            .ok_or_else(|| error::conflict("no connected host can reach the requested datastore"))?,
    };
    let datastore = match &spec.datastore {
        Some(ds) => stores.iter().find(|(r, _)| &r.value == ds).ok_or_else(|| error::not_found(format!("datastore `{ds}` does not exist")))?,
        None => stores
            .iter()
            .filter(|(_, d)| d.accessible_from.contains(&host.obj.value))
            .max_by_key(|(_, d)| d.free_bytes)
            .ok_or_else(|| error::conflict(format!("host `{}` mounts no datastore", host.text("name"))))?,
    };
    let compute = host.moref("parent").ok_or_else(|| error::internal(format!("host {} has no parent compute resource", host.obj)))?;
    let pool = collector::of_object(client, &compute, &["resourcePool"])?
        .moref("resourcePool")
        .ok_or_else(|| error::internal(format!("{compute} has no resource pool")))?;
    let datacenters = collector::all_of_type(client, "Datacenter", &["vmFolder", "datastore"])?;
    let dc = datacenters
        .iter()
        .find(|o| o.get("datastore").is_some_and(|l| l.children.iter().any(|c| c.as_moref().as_ref() == Some(&datastore.0))))
        .or(datacenters.first())
        .ok_or_else(|| error::internal("the site has no datacenter"))?;
    let vm_folder = dc.moref("vmFolder").ok_or_else(|| error::internal(format!("{} has no vmFolder", dc.obj)))?;

    let networks = collector::all_of_type(client, "Network", &["name"])?;
    let mut changes = vec![controller_change(-100, 0)];
    let units = SCSI_UNITS.filter(|u| *u != SCSI_CONTROLLER_UNIT);
    for (i, (d, unit)) in spec.disks.iter().zip(units).enumerate() {
        let ds = match &d.datastore {
            Some(id) => {
                let (r, info) = stores.iter().find(|(r, _)| &r.value == id).ok_or_else(|| error::not_found(format!("datastore `{id}` of disk `{}` does not exist", d.label)))?;
                Some((r, info.name.as_str()))
            }
            None => None,
        };
        changes.push(new_disk_change(-101 - i as i32, -100, unit, d, ds));
    }
    for (i, net) in spec.networks.iter().enumerate() {
        let n = networks.iter().find(|o| &o.obj.value == net).ok_or_else(|| error::not_found(format!("network `{net}` does not exist")))?;
        let backing = Node::new("backing")
            .xsi_type("VirtualEthernetCardNetworkBackingInfo")
            .child_text("deviceName", n.text("name"))
            .child(Node::moref("network", &n.obj));
        changes.push(Node::new("deviceChange").child_text("operation", "add").child(
            Node::new("device").xsi_type("VirtualVmxnet3").child_text("key", (-200 - i as i32).to_string()).child(backing).child_text("addressType", "generated"),
        ));
    }
    let config = Node::new("config")
        .child_text("name", spec.name.clone())
        .child_text("guestId", spec.guest_os.clone())
        .child(Node::new("files").child_text("vmPathName", format!("[{}]", datastore.1.name)))
        .child_text("numCPUs", spec.cpu_count.to_string())
        .child_text("memoryMB", spec.memory_mib.to_string())
        .children(changes)
        .children(spec.extra_config.iter().map(extra_config_node));
    let args = [config, Node::moref("pool", &pool), Node::moref("host", &host.obj)];
    let what = format!("creating VM `{}`", spec.name);
    let resp = client.invoke("CreateVM_Task", &vm_folder, &args, &what)?;
    tasks::started(client, &resp, None, &what)
}

/// Starts `PowerOnVM_Task`, or reports a VM already on as done.
pub fn power_on(client: &Client, vm: &str) -> Result<Operation, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    if power_state(&o) == "poweredOn" {
        return Ok(tasks::done(vm));
    }
    let what = format!("powering on VM {vm}");
    let resp = client.invoke("PowerOnVM_Task", &vm_ref(vm), &[], &what)?;
    tasks::started(client, &resp, None, &what)
}

/// Powers a VM off: `PowerOffVM_Task`, or `ShutdownGuest` for a guest shutdown (which
/// needs running guest tools). A VM already off is done.
pub fn power_off(client: &Client, vm: &str, mode: PowerOffMode) -> Result<Operation, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    if power_state(&o) == "poweredOff" {
        return Ok(tasks::done(vm));
    }
    match mode {
        PowerOffMode::GuestShutdown => {
            if o.text("guest.toolsRunningStatus") != "guestToolsRunning" {
                return Err(error::conflict(format!("VM {vm} has no running guest tools, so it cannot shut down through the guest; power it off hard")));
            }
            client.invoke("ShutdownGuest", &vm_ref(vm), &[], &format!("shutting down the guest of VM {vm}"))?;
            tasks::shutdown(client, vm)
        }
        PowerOffMode::Hard | PowerOffMode::Deallocate => {
            let what = format!("powering off VM {vm}");
            let resp = client.invoke("PowerOffVM_Task", &vm_ref(vm), &[], &what)?;
            tasks::started(client, &resp, None, &what)
        }
    }
}

/// Starts `Destroy_Task`; a powered-on VM is `conflict`.
pub fn delete_vm(client: &Client, vm: &str) -> Result<Operation, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    if power_state(&o) != "poweredOff" {
        return Err(error::conflict(format!("VM {vm} is {}; power it off before deleting it", power_state(&o))));
    }
    let what = format!("deleting VM {vm}");
    let resp = client.invoke("Destroy_Task", &vm_ref(vm), &[], &what)?;
    tasks::started(client, &resp, None, &what)
}

fn reconfig(client: &Client, vm: &str, spec: Node, context: Option<String>, what: &str) -> Result<Operation, AdapterError> {
    let resp = client.invoke("ReconfigVM_Task", &vm_ref(vm), &[spec], what)?;
    tasks::started(client, &resp, context, what)
}

/// Creates a disk and attaches it on a free SCSI unit. Labels are the server's
/// (`Hard disk N`); a spec naming a label in use is `already-exists`.
pub fn attach_disk(client: &Client, vm: &str, spec: &DiskSpec) -> Result<Operation, AdapterError> {
    check_disk_spec(spec)?;
    let o = inventory::vm_object(client, vm)?;
    let list = device_list(&o);
    let disks: Vec<VirtualDisk> = inventory::virtual_disks(&list);
    if disks.iter().any(|d| d.label == spec.label) {
        return Err(error::already_exists(format!("VM {vm} already has a disk labelled `{}`", spec.label)));
    }
    let controllers: Vec<Controller> = inventory::scsi_controllers(&list);
    let free = controllers.iter().find_map(|c| {
        SCSI_UNITS.filter(|u| *u != SCSI_CONTROLLER_UNIT).find(|u| !disks.iter().any(|d| d.controller_key == c.key && d.unit == *u)).map(|u| (c.key, u))
    });
    let datastore = match &spec.datastore {
        Some(id) => {
            let name = collector::of_object(client, &MoRef::new("Datastore", id.clone()), &["name"])?.text("name");
            Some((MoRef::new("Datastore", id.clone()), name))
        }
        None => None,
    };
    let ds = datastore.as_ref().map(|(r, n)| (r, n.as_str()));
    let (controller_key, unit) = free.ok_or_else(|| error::conflict(format!("VM {vm} has no free unit on its SCSI controllers; add a controller first")))?;
    let changes = vec![new_disk_change(-1, controller_key, unit, spec, ds)];
    let what = format!("attaching disk `{}` to VM {vm}", spec.label);
    reconfig(client, vm, Node::new("spec").children(changes), Some(format!("disk|{vm}|{controller_key}|{unit}")), &what)
}

/// Detaches a disk, deleting its files with `delete_backing`.
pub fn detach_disk(client: &Client, vm: &str, disk: &str, delete_backing: bool) -> Result<Operation, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    let d = inventory::find_disk(&o, disk)?;
    let mut change = Node::new("deviceChange").child_text("operation", "remove");
    if delete_backing {
        change = change.child_text("fileOperation", "destroy");
    }
    change = change.child(
        Node::new("device")
            .xsi_type("VirtualDisk")
            .child_text("key", d.key.to_string())
            .child_text("controllerKey", d.controller_key.to_string())
            .child_text("unitNumber", d.unit.to_string())
            .child_text("capacityInKB", (d.capacity / 1024).to_string()),
    );
    reconfig(client, vm, Node::new("spec").child(change), None, &format!("detaching disk {disk} from VM {vm}"))
}

/// Sets extra-config keys (an empty value removes the key, as vSphere does).
pub fn reconfigure(client: &Client, vm: &str, changes: &[KeyValue]) -> Result<Operation, AdapterError> {
    if let Some(bad) = changes.iter().find(|kv| kv.key.trim().is_empty() || kv.key.contains(char::is_whitespace)) {
        return Err(error::invalid(format!("extra-config key `{}` is empty or contains whitespace", bad.key)));
    }
    inventory::vm_object(client, vm)?;
    let spec = Node::new("spec").children(changes.iter().map(extra_config_node));
    reconfig(client, vm, spec, None, &format!("reconfiguring VM {vm}"))
}

/// Switches change tracking on for a VM's disks; done already if it is on.
pub fn enable_change_tracking(client: &Client, vm: &str, disk: &str) -> Result<Operation, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    inventory::find_disk(&o, disk)?;
    if o.bool("config.changeTrackingEnabled") == Some(true) {
        return Ok(tasks::done(disk));
    }
    let spec = Node::new("spec").child_text("changeTrackingEnabled", "true");
    reconfig(client, vm, spec, None, &format!("enabling change tracking on VM {vm}"))
}

/// Starts `CreateSnapshot_Task`. Names are unique per VM here (vSphere allows duplicates),
/// so a repeat is `already-exists`. Quiescing needs running guest tools.
pub fn create_snapshot(client: &Client, vm: &str, name: &str, quiesce: bool) -> Result<Operation, AdapterError> {
    if name.trim().is_empty() {
        return Err(error::invalid("the snapshot name is empty"));
    }
    let o = inventory::vm_object(client, vm)?;
    let info = inventory::vm_info(&o);
    if info.snapshots.iter().any(|s| s.name == name) {
        return Err(error::already_exists(format!("VM {vm} already has a snapshot named `{name}`; nothing was created")));
    }
    if quiesce && power_state(&o) == "poweredOn" && o.text("guest.toolsRunningStatus") != "guestToolsRunning" {
        return Err(error::unsupported(format!("VM {vm} has no running guest tools, so its file systems cannot be quiesced")));
    }
    let args = [
        Node::text("name", name),
        Node::text("description", if quiesce { "homeward app-consistent point" } else { "homeward crash-consistent point" }),
        Node::text("memory", "false"),
        Node::text("quiesce", quiesce.to_string()),
    ];
    let what = format!("snapshotting VM {vm} as `{name}`");
    let resp = client.invoke("CreateSnapshot_Task", &vm_ref(vm), &args, &what)?;
    tasks::started(client, &resp, None, &what)
}

/// Starts `RemoveSnapshot_Task`, consolidating into the disk; the snapshot must belong to
/// the VM.
pub fn remove_snapshot(client: &Client, vm: &str, snapshot: &str) -> Result<Operation, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    if !inventory::vm_info(&o).snapshots.iter().any(|s| s.id == snapshot) {
        return Err(error::not_found(format!("VM {vm} has no snapshot `{snapshot}`")));
    }
    let what = format!("removing snapshot {snapshot} of VM {vm}");
    let resp = client.invoke(
        "RemoveSnapshot_Task",
        &snapshot_ref(snapshot),
        &[Node::text("removeChildren", "false"), Node::text("consolidate", "true")],
        &what,
    )?;
    tasks::started(client, &resp, None, &what)
}
