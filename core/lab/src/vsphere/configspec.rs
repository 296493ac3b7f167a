//! `VirtualMachineConfigSpec` as CreateVM_Task and ReconfigVM_Task receive it, and its
//! application to a VM.

use std::collections::BTreeMap;

use super::faults::Fault;
use super::inventory::{Inventory, Power};
use super::soap::{Element, MoRef};
use super::vmops::{self, NewDisk};

/// `VirtualDeviceConfigSpecOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `add`.
    Add,
    /// `remove`.
    Remove,
    /// `edit`.
    Edit,
}

/// A device from a device change.
#[derive(Debug, Clone)]
pub enum Device {
    /// A SCSI controller.
    Controller {
        /// Key (negative for a new device).
        key: i32,
        /// Bus number.
        bus: Option<i32>,
        /// vim25 type.
        kind: String,
    },
    /// A virtual disk.
    Disk {
        /// Key (negative for a new device).
        key: i32,
        /// Controller key (may be a new controller's negative key).
        controller_key: Option<i32>,
        /// Unit number.
        unit: Option<i32>,
        /// Capacity in bytes.
        capacity: u64,
        /// `backing.fileName`: empty, `[ds]`, or `[ds] path.vmdk`.
        file_name: String,
        /// `backing.datastore`.
        datastore: Option<MoRef>,
        /// `backing.thinProvisioned`.
        thin: bool,
    },
    /// A network adapter.
    Nic {
        /// Key.
        key: i32,
        /// vim25 type.
        kind: String,
        /// `backing.network`.
        network: Option<MoRef>,
        /// `backing.deviceName` (the port group name).
        device_name: Option<String>,
    },
}

/// One entry of `deviceChange`.
#[derive(Debug, Clone)]
pub struct DeviceChange {
    /// Operation.
    pub op: Operation,
    /// `fileOperation`: `create`, `destroy` or `replace`.
    pub file_op: Option<String>,
    /// Device.
    pub device: Device,
}

/// The parts of a `VirtualMachineConfigSpec` the lab implements.
#[derive(Debug, Clone, Default)]
pub struct ConfigSpec {
    /// `name`.
    pub name: Option<String>,
    /// `guestId`.
    pub guest_id: Option<String>,
    /// `numCPUs`.
    pub num_cpus: Option<i32>,
    /// `memoryMB`.
    pub memory_mb: Option<i64>,
    /// `files.vmPathName`.
    pub vm_path_name: Option<String>,
    /// `extraConfig`, in order.
    pub extra_config: Vec<(String, String)>,
    /// `changeTrackingEnabled`.
    pub change_tracking: Option<bool>,
    /// `deviceChange`.
    pub device_changes: Vec<DeviceChange>,
}

fn int(el: &Element, name: &str) -> Option<i32> {
    el.child_i64(name).map(|v| v as i32)
}

fn parse_device(el: &Element) -> Result<Device, Fault> {
    let ty = el.xsi_type.clone().unwrap_or_default();
    let key = int(el, "key").unwrap_or(0);
    let backing = el.child("backing");
    Ok(match ty.as_str() {
        "VirtualLsiLogicController"
        | "VirtualLsiLogicSASController"
        | "ParaVirtualSCSIController"
        | "VirtualBusLogicController" => Device::Controller {
            key,
            bus: int(el, "busNumber"),
            kind: ty,
        },
        "VirtualDisk" => {
            let capacity = match el.child_i64("capacityInBytes") {
                Some(b) if b > 0 => b as u64,
                _ => el.child_i64("capacityInKB").unwrap_or(0).max(0) as u64 * 1024,
            };
            if let Some(bt) = backing.and_then(|b| b.xsi_type.as_deref())
                && bt != "VirtualDiskFlatVer2BackingInfo"
            {
                return Err(Fault::not_supported(&format!("disk backing {bt}")));
            }
            Device::Disk {
                key,
                controller_key: int(el, "controllerKey"),
                unit: int(el, "unitNumber"),
                capacity,
                file_name: backing
                    .and_then(|b| b.child_text("fileName"))
                    .unwrap_or_default()
                    .to_string(),
                datastore: backing
                    .and_then(|b| b.child("datastore"))
                    .and_then(Element::as_moref),
                thin: backing
                    .and_then(|b| b.child_bool("thinProvisioned"))
                    .unwrap_or(false),
            }
        }
        "VirtualVmxnet3" | "VirtualVmxnet2" | "VirtualE1000" | "VirtualE1000e" => Device::Nic {
            key,
            kind: ty,
            network: backing
                .and_then(|b| b.child("network"))
                .and_then(Element::as_moref),
            device_name: backing
                .and_then(|b| b.child_text("deviceName"))
                .map(str::to_string),
        },
        other => return Err(Fault::not_supported(&format!("device type {other}"))),
    })
}

impl ConfigSpec {
    /// Reads a `VirtualMachineConfigSpec` element.
    pub fn parse(el: &Element) -> Result<Self, Fault> {
        let mut spec = ConfigSpec {
            name: el.child_text("name").map(str::to_string),
            guest_id: el.child_text("guestId").map(str::to_string),
            num_cpus: int(el, "numCPUs"),
            memory_mb: el.child_i64("memoryMB"),
            vm_path_name: el
                .child("files")
                .and_then(|f| f.child_text("vmPathName"))
                .map(str::to_string),
            change_tracking: el.child_bool("changeTrackingEnabled"),
            ..Default::default()
        };
        for ov in el.children_named("extraConfig") {
            let key = ov
                .child_text("key")
                .ok_or_else(|| Fault::invalid_argument("extraConfig.key"))?;
            spec.extra_config.push((
                key.to_string(),
                ov.child_text("value").unwrap_or_default().to_string(),
            ));
        }
        for dc in el.children_named("deviceChange") {
            let op = match dc.child_text("operation") {
                Some("add") => Operation::Add,
                Some("remove") => Operation::Remove,
                Some("edit") => Operation::Edit,
                _ => return Err(Fault::invalid_argument("deviceChange.operation")),
            };
            let device = parse_device(
                dc.child("device")
                    .ok_or_else(|| Fault::invalid_argument("deviceChange.device"))?,
            )?;
            spec.device_changes.push(DeviceChange {
                op,
                file_op: dc.child_text("fileOperation").map(str::to_string),
                device,
            });
        }
        Ok(spec)
    }

    /// The privileges applying this spec needs, beyond `VirtualMachine.Config.Settings`.
    pub fn privileges(&self) -> Vec<&'static str> {
        let mut p = vec!["VirtualMachine.Config.Settings"];
        if !self.extra_config.is_empty() {
            p.push("VirtualMachine.Config.AdvancedConfig");
        }
        if self.change_tracking.is_some() {
            p.push("VirtualMachine.Config.ChangeTracking");
        }
        for dc in &self.device_changes {
            match (&dc.device, dc.op, dc.file_op.as_deref()) {
                (Device::Disk { .. }, Operation::Add, Some("create")) => {
                    p.push("VirtualMachine.Config.AddNewDisk")
                }
                (Device::Disk { .. }, Operation::Add, _) => {
                    p.push("VirtualMachine.Config.AddExistingDisk")
                }
                (Device::Disk { .. }, Operation::Remove, _) => {
                    p.push("VirtualMachine.Config.RemoveDisk")
                }
                (Device::Disk { .. }, Operation::Edit, _) => {
                    p.push("VirtualMachine.Config.DiskExtend")
                }
                _ => p.push("VirtualMachine.Config.EditDevice"),
            }
        }
        p
    }

    /// Applies the spec to an existing VM. On a fault the VM's configuration is restored;
    /// files already created stay, as after a failed reconfigure on ESXi.
    pub fn apply(&self, inv: &mut Inventory, vm_ref: &MoRef) -> Result<(), Fault> {
        let before = inv.vm(vm_ref)?.clone();
        let result = self.apply_inner(inv, vm_ref);
        if result.is_err() {
            inv.vms.insert(vm_ref.value.clone(), before);
        }
        result
    }

    fn apply_inner(&self, inv: &mut Inventory, vm_ref: &MoRef) -> Result<(), Fault> {
        let vm = inv.vm_mut(vm_ref)?;
        let hw_change = self.num_cpus.is_some_and(|c| c != vm.cpus)
            || self.memory_mb.is_some_and(|m| m != vm.memory_mb);
        if hw_change && vm.power == Power::On {
            return Err(Fault::invalid_power_state(None, "poweredOn"));
        }
        if let Some(n) = &self.name {
            vm.name = n.clone();
        }
        if let Some(g) = &self.guest_id {
            vm.guest_id = g.clone();
        }
        if let Some(c) = self.num_cpus {
            vm.cpus = c;
        }
        if let Some(m) = self.memory_mb {
            vm.memory_mb = m;
        }
        let mut keymap: BTreeMap<i32, i32> = BTreeMap::new();
        for dc in &self.device_changes {
            match (&dc.device, dc.op) {
                (Device::Controller { key, bus, kind }, Operation::Add) => {
                    let real = vmops::add_controller(inv.vm_mut(vm_ref)?, kind, *bus)?;
                    keymap.insert(*key, real);
                }
                (Device::Controller { key, .. }, Operation::Remove) => {
                    let vm = inv.vm_mut(vm_ref)?;
                    if vm.disks.iter().any(|d| d.controller_key == *key) {
                        return Err(Fault::invalid_argument(
                            "deviceChange.device (controller has disks)",
                        ));
                    }
                    vm.controllers.retain(|c| c.key != *key);
                }
                (
                    Device::Disk {
                        controller_key,
                        unit,
                        capacity,
                        file_name,
                        datastore,
                        thin,
                        ..
                    },
                    Operation::Add,
                ) => {
                    let ck = controller_key.ok_or_else(|| {
                        Fault::invalid_argument("deviceChange.device.controllerKey")
                    })?;
                    let ck = keymap.get(&ck).copied().unwrap_or(ck);
                    let (ds, path) = if file_name.trim().is_empty() {
                        (datastore.clone(), None)
                    } else {
                        let (ds, rel) = inv.resolve_ds_path(file_name).ok_or_else(|| {
                            Fault::new(
                                "InvalidDatastorePath",
                                format!("Invalid datastore path '{file_name}'."),
                            )
                        })?;
                        (Some(ds.moref.clone()), (!rel.is_empty()).then_some(rel))
                    };
                    let create = dc.file_op.as_deref() == Some("create");
                    if !create && path.is_none() {
                        return Err(Fault::invalid_argument(
                            "deviceChange.device.backing.fileName",
                        ));
                    }
                    vmops::add_disk(
                        inv,
                        vm_ref,
                        NewDisk {
                            controller_key: ck,
                            unit: *unit,
                            capacity: *capacity,
                            datastore: ds,
                            path,
                            create,
                            thin: *thin,
                        },
                    )?;
                }
                (Device::Disk { key, .. }, Operation::Remove) => {
                    vmops::remove_disk(
                        inv,
                        vm_ref,
                        *key,
                        dc.file_op.as_deref() == Some("destroy"),
                    )?;
                }
                (
                    Device::Nic {
                        kind,
                        network,
                        device_name,
                        ..
                    },
                    Operation::Add,
                ) => {
                    let net = match (network, device_name) {
                        (Some(n), _) => n.clone(),
                        (None, Some(name)) => inv
                            .network_by_name(name)
                            .map(|n| n.moref.clone())
                            .ok_or_else(|| {
                                Fault::invalid_argument("deviceChange.device.backing.deviceName")
                            })?,
                        (None, None) => {
                            return Err(Fault::invalid_argument("deviceChange.device.backing"));
                        }
                    };
                    vmops::add_nic(inv, vm_ref, kind, &net)?;
                }
                (Device::Nic { key, .. }, Operation::Remove) => {
                    vmops::remove_nic(inv, vm_ref, *key)?
                }
                (Device::Disk { key, capacity, .. }, Operation::Edit) => {
                    vmops::grow_disk(inv, vm_ref, *key, *capacity)?;
                }
                (_, Operation::Edit) => {
                    return Err(Fault::not_supported(
                        "deviceChange operation edit (only a disk's capacity can be edited)",
                    ));
                }
            }
        }
        let vm = inv.vm_mut(vm_ref)?;
        for (k, v) in &self.extra_config {
            vmops::set_extra_config(vm, k, v);
        }
        if let Some(on) = self.change_tracking {
            vmops::set_change_tracking(vm, on);
        }
        vm.touch();
        vmops::write_vmx(inv, vm_ref)
    }
}
