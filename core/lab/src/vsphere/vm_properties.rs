//! VirtualMachine and VirtualMachineSnapshot properties: config with devices and disk
//! backings, runtime, guest, summary and the snapshot tree.

use super::inventory::{Disk, Inventory, Power, Snapshot, Vm};
use super::properties::{description, refs};
use super::soap::{Data, MoRef, Value};

fn guest_full_name(id: &str) -> String {
    match id {
        "rhel8_64Guest" => "Red Hat Enterprise Linux 8 (64-bit)",
        "rhel9_64Guest" => "Red Hat Enterprise Linux 9 (64-bit)",
        "centos64Guest" => "CentOS 4/5 or later (64-bit)",
        "ubuntu64Guest" => "Ubuntu Linux (64-bit)",
        "windows9Server64Guest" => "Microsoft Windows Server 2016 or later (64-bit)",
        "windows2019srv_64Guest" => "Microsoft Windows Server 2019 (64-bit)",
        "windows7Server64Guest" => "Microsoft Windows Server 2008 R2 (64-bit)",
        "otherGuest64" => "Other (64-bit)",
        other => other,
    }
    .to_string()
}

fn power(p: Power) -> Value {
    Value::Enum("VirtualMachinePowerState", p.as_str().into())
}

/// A disk's backing for the file at `chain_len - 1` of its chain, with the older files
/// as nested `parent` backings, as ESXi shows delta disks.
fn disk_backing(inv: &Inventory, d: &Disk, chain_len: usize, change_id: Option<String>) -> Data {
    let ds_name = inv
        .datastore(&d.datastore)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    let file = d.chain[chain_len - 1].clone();
    let mut b = Data::new("VirtualDiskFlatVer2BackingInfo")
        .with("fileName", format!("[{ds_name}] {file}"))
        .with("datastore", &d.datastore)
        .with("diskMode", "persistent")
        .with("split", false)
        .with("writeThrough", false)
        .with("thinProvisioned", d.thin)
        .with("eagerlyScrub", false)
        .with("uuid", d.uuid.as_str())
        .with(
            "contentId",
            format!("{:032x}", (chain_len as u128) << 64 | d.key as u128),
        )
        .with_opt("changeId", change_id);
    if chain_len > 1 {
        b = b.with("parent", disk_backing(inv, d, chain_len - 1, None));
    }
    b
}

fn devices(inv: &Inventory, vm: &Vm, snap: Option<&Snapshot>) -> Value {
    let mut out: Vec<Value> = Vec::new();
    for c in &vm.controllers {
        let members: Vec<Value> = vm
            .disks
            .iter()
            .filter(|d| d.controller_key == c.key)
            .map(|d| Value::Int(d.key))
            .collect();
        out.push(
            Data::new(match c.kind.as_str() {
                "ParaVirtualSCSIController" => "ParaVirtualSCSIController",
                "VirtualLsiLogicSASController" => "VirtualLsiLogicSASController",
                "VirtualBusLogicController" => "VirtualBusLogicController",
                _ => "VirtualLsiLogicController",
            })
            .with("key", Value::Int(c.key))
            .with(
                "deviceInfo",
                description(
                    format!("SCSI controller {}", c.bus),
                    match c.kind.as_str() {
                        "ParaVirtualSCSIController" => "VMware paravirtual SCSI",
                        "VirtualLsiLogicSASController" => "LSI Logic SAS",
                        "VirtualBusLogicController" => "BusLogic",
                        _ => "LSI Logic",
                    }
                    .to_string(),
                ),
            )
            .with("controllerKey", Value::Int(100))
            .with("unitNumber", Value::Int(3 + c.bus))
            .with("busNumber", Value::Int(c.bus))
            .with("device", Value::Array("xsd:int", members))
            .with("hotAddRemove", true)
            .with(
                "sharedBus",
                Value::Enum("VirtualSCSISharing", "noSharing".into()),
            )
            .with("scsiCtlrUnitNumber", Value::Int(7))
            .into(),
        );
    }
    for (i, d) in vm.disks.iter().enumerate() {
        let backing = match snap {
            Some(s) => {
                let Some(sd) = s.disks.iter().find(|x| x.key == d.key) else {
                    continue;
                };
                let Some(pos) = d.chain.iter().position(|f| f == &sd.file) else {
                    continue;
                };
                disk_backing(inv, d, pos + 1, sd.change_id.clone())
            }
            None => disk_backing(
                inv,
                d,
                d.chain.len(),
                d.cbt.as_ref().map(|t| t.latest_change_id()),
            ),
        };
        out.push(
            Data::new("VirtualDisk")
                .with("key", Value::Int(d.key))
                .with(
                    "deviceInfo",
                    description(
                        format!("Hard disk {}", i + 1),
                        format!("{} KB", thousands(d.capacity / 1024)),
                    ),
                )
                .with("backing", backing)
                .with("controllerKey", Value::Int(d.controller_key))
                .with("unitNumber", Value::Int(d.unit))
                .with("capacityInKB", Value::Long((d.capacity / 1024) as i64))
                .with("capacityInBytes", Value::Long(d.capacity as i64))
                .with("diskObjectId", format!("{}-{}", vm.moref.value, d.key))
                .into(),
        );
    }
    for (i, n) in vm.nics.iter().enumerate() {
        let net_name = inv
            .networks
            .iter()
            .find(|x| x.moref == n.network)
            .map(|x| x.name.clone())
            .unwrap_or_default();
        let kind: &'static str = match n.kind.as_str() {
            "VirtualE1000" => "VirtualE1000",
            "VirtualE1000e" => "VirtualE1000e",
            "VirtualVmxnet2" => "VirtualVmxnet2",
            _ => "VirtualVmxnet3",
        };
        out.push(
            Data::new(kind)
                .with("key", Value::Int(n.key))
                .with(
                    "deviceInfo",
                    description(format!("Network adapter {}", i + 1), net_name.clone()),
                )
                .with(
                    "backing",
                    Data::new("VirtualEthernetCardNetworkBackingInfo")
                        .with("deviceName", net_name)
                        .with("useAutoDetect", false)
                        .with("network", &n.network),
                )
                .with(
                    "connectable",
                    Data::new("VirtualDeviceConnectInfo")
                        .with("startConnected", true)
                        .with("allowGuestControl", true)
                        .with("connected", vm.power == Power::On)
                        .with("status", "ok"),
                )
                .with("controllerKey", Value::Int(100))
                .with("unitNumber", Value::Int(7 + i as i32))
                .with("addressType", "assigned")
                .with("macAddress", n.mac.as_str())
                .with("wakeOnLanEnabled", true)
                .into(),
        );
    }
    Value::Array("VirtualDevice", out)
}

/// `16777216` → `16,777,216`, as vSphere writes disk summaries.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn extra_config(map: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Array(
        "OptionValue",
        map.iter()
            .map(|(k, v)| {
                Data::new("OptionValue")
                    .with("key", k.as_str())
                    .with("value", Value::Any(Box::new(v.as_str().into())))
                    .into()
            })
            .collect(),
    )
}

/// `VirtualMachineConfigInfo`, of the running VM or as a snapshot froze it.
pub fn vm_config(inv: &Inventory, vm: &Vm, snap: Option<&Snapshot>) -> Value {
    let ds_name = inv
        .datastore(&vm.datastore)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    let (cpus, mem, extra) = match snap {
        Some(s) => (s.cpus, s.memory_mb, &s.extra_config),
        None => (vm.cpus, vm.memory_mb, &vm.extra_config),
    };
    Data::new("VirtualMachineConfigInfo")
        .with("changeVersion", vm.change_version.to_string())
        .with("modified", Value::DateTime(vm.modified.clone()))
        .with("name", vm.name.as_str())
        .with("guestFullName", guest_full_name(&vm.guest_id))
        .with("version", "vmx-19")
        .with("uuid", vm.uuid.as_str())
        .with("instanceUuid", vm.instance_uuid.as_str())
        .with("template", false)
        .with("guestId", vm.guest_id.as_str())
        .with("alternateGuestName", "")
        .with(
            "files",
            Data::new("VirtualMachineFileInfo")
                .with(
                    "vmPathName",
                    format!("[{ds_name}] {}/{}.vmx", vm.dir, vm.name),
                )
                .with("snapshotDirectory", format!("[{ds_name}] {}/", vm.dir))
                .with("suspendDirectory", format!("[{ds_name}] {}/", vm.dir))
                .with("logDirectory", format!("[{ds_name}] {}/", vm.dir)),
        )
        .with(
            "hardware",
            Data::new("VirtualHardware")
                .with("numCPU", Value::Int(cpus))
                .with("numCoresPerSocket", Value::Int(1))
                .with("memoryMB", Value::Int(mem as i32))
                .with("device", devices(inv, vm, snap)),
        )
        .with("extraConfig", extra_config(extra))
        .with("changeTrackingEnabled", vm.change_tracking)
        .with("firmware", "bios")
        .into()
}

fn guest(vm: &Vm) -> Data {
    let on = vm.power == Power::On;
    Data::new("GuestInfo")
        .with(
            "toolsStatus",
            Value::Enum(
                "VirtualMachineToolsStatus",
                if on { "toolsOk" } else { "toolsNotRunning" }.into(),
            ),
        )
        .with("toolsVersionStatus2", "guestToolsCurrent")
        .with(
            "toolsRunningStatus",
            if on {
                "guestToolsRunning"
            } else {
                "guestToolsNotRunning"
            },
        )
        .with("toolsVersion", "12352")
        .with("guestId", vm.guest_id.as_str())
        .with("guestFullName", guest_full_name(&vm.guest_id))
        .with("guestState", if on { "running" } else { "notRunning" })
}

fn snapshot_tree(vm: &Vm, parent: Option<&MoRef>) -> Value {
    Value::Array(
        "VirtualMachineSnapshotTree",
        vm.snapshots
            .iter()
            .filter(|s| s.parent.as_ref() == parent)
            .map(|s| {
                Data::new("VirtualMachineSnapshotTree")
                    .with("snapshot", &s.moref)
                    .with("vm", &vm.moref)
                    .with("name", s.name.as_str())
                    .with("description", s.description.as_str())
                    .with("id", Value::Int(s.id))
                    .with("createTime", Value::DateTime(s.create_time.clone()))
                    .with("state", power(s.state))
                    .with("quiesced", s.quiesced)
                    .with("childSnapshotList", snapshot_tree(vm, Some(&s.moref)))
                    .into()
            })
            .collect(),
    )
}

fn vm_runtime(vm: &Vm) -> Data {
    Data::new("VirtualMachineRuntimeInfo")
        .with("host", &vm.host)
        .with(
            "connectionState",
            Value::Enum("VirtualMachineConnectionState", "connected".into()),
        )
        .with("powerState", power(vm.power))
        .with(
            "faultToleranceState",
            Value::Enum("VirtualMachineFaultToleranceState", "notConfigured".into()),
        )
        .with("toolsInstallerMounted", false)
        .with_opt("bootTime", vm.boot_time.clone().map(Value::DateTime))
        .with("consolidationNeeded", false)
}

/// A VM's top-level properties; `snapshot` is absent while it has none.
pub fn vm_properties(inv: &Inventory, vm: &Vm) -> Vec<(&'static str, Value)> {
    let ds_name = inv
        .datastore(&vm.datastore)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    let pool = inv
        .hosts
        .iter()
        .find(|h| h.moref == vm.host)
        .map(|h| h.pool.clone());
    let mut datastores: Vec<MoRef> = vec![vm.datastore.clone()];
    for d in &vm.disks {
        if !datastores.contains(&d.datastore) {
            datastores.push(d.datastore.clone());
        }
    }
    let mut networks: Vec<MoRef> = Vec::new();
    for n in &vm.nics {
        if !networks.contains(&n.network) {
            networks.push(n.network.clone());
        }
    }
    let mut props = vec![
        ("name", Value::Str(vm.name.clone())),
        ("parent", Value::Ref(inv.datacenter.vm_folder.clone())),
        ("config", vm_config(inv, vm, None)),
        ("runtime", vm_runtime(vm).into()),
        ("guest", guest(vm).into()),
        (
            "summary",
            Data::new("VirtualMachineSummary")
                .with("vm", &vm.moref)
                .with("runtime", vm_runtime(vm))
                .with(
                    "guest",
                    Data::new("VirtualMachineGuestSummary")
                        .with("guestId", vm.guest_id.as_str())
                        .with("guestFullName", guest_full_name(&vm.guest_id)),
                )
                .with(
                    "config",
                    Data::new("VirtualMachineConfigSummary")
                        .with("name", vm.name.as_str())
                        .with("template", false)
                        .with(
                            "vmPathName",
                            format!("[{ds_name}] {}/{}.vmx", vm.dir, vm.name),
                        )
                        .with("memorySizeMB", Value::Int(vm.memory_mb as i32))
                        .with("numCpu", Value::Int(vm.cpus))
                        .with("numEthernetCards", Value::Int(vm.nics.len() as i32))
                        .with("numVirtualDisks", Value::Int(vm.disks.len() as i32))
                        .with("uuid", vm.uuid.as_str())
                        .with("instanceUuid", vm.instance_uuid.as_str())
                        .with("guestId", vm.guest_id.as_str())
                        .with("guestFullName", guest_full_name(&vm.guest_id)),
                )
                .with(
                    "quickStats",
                    Data::new("VirtualMachineQuickStats").with(
                        "guestHeartbeatStatus",
                        Value::Enum(
                            "ManagedEntityStatus",
                            if vm.power == Power::On {
                                "green"
                            } else {
                                "gray"
                            }
                            .into(),
                        ),
                    ),
                )
                .with(
                    "overallStatus",
                    Value::Enum("ManagedEntityStatus", "green".into()),
                )
                .into(),
        ),
    ];
    if !vm.snapshots.is_empty() {
        props.push((
            "snapshot",
            Data::new("VirtualMachineSnapshotInfo")
                .with_opt("currentSnapshot", vm.current_snapshot.clone())
                .with("rootSnapshotList", snapshot_tree(vm, None))
                .into(),
        ));
    }
    props.push((
        "rootSnapshot",
        refs(
            vm.snapshots
                .iter()
                .filter(|s| s.parent.is_none())
                .map(|s| s.moref.clone()),
        ),
    ));
    if let Some(p) = pool {
        props.push(("resourcePool", Value::Ref(p)));
    }
    props.push(("datastore", refs(datastores)));
    props.push(("network", refs(networks)));
    props
}
