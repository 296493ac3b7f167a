//! VM lifecycle on the inventory and its files: create, devices, power, snapshots, writes.
//! Both the SOAP methods and the lab API go through these, so they behave identically.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::LabError;
use super::cbt::ChangeTracker;
use super::faults::Fault;
use super::inventory::{
    Controller, Disk, Inventory, Nic, Power, SnapDisk, Snapshot, Vm, flat_of, new_disk_uuid,
    new_mac,
};
use super::soap::{MoRef, now};
use super::spec::{Mode, VmSpec};
use crate::vmdk;

/// What a new VM starts with.
#[derive(Debug, Clone)]
pub struct NewVm {
    /// Name.
    pub name: String,
    /// Guest OS id.
    pub guest_id: String,
    /// vCPUs.
    pub cpus: i32,
    /// Memory in MiB.
    pub memory_mb: i64,
    /// Host.
    pub host: MoRef,
    /// Datastore for the `.vmx` and default disk location.
    pub datastore: MoRef,
}

/// Where a disk's files are, or should be created.
#[derive(Debug, Clone)]
pub struct NewDisk {
    /// Controller device key.
    pub controller_key: i32,
    /// Unit; the next free one when `None`.
    pub unit: Option<i32>,
    /// Capacity in bytes (ignored when attaching an existing disk).
    pub capacity: u64,
    /// Datastore; the VM's when `None`.
    pub datastore: Option<MoRef>,
    /// Descriptor path relative to the datastore; generated in the VM's directory when `None`.
    pub path: Option<String>,
    /// Create the files (`fileOperation` `create`) rather than attach existing ones.
    pub create: bool,
    /// Thin provisioned.
    pub thin: bool,
}

fn io_fault(file: &str, e: impl std::fmt::Display) -> Fault {
    Fault::file_fault(file, &e.to_string())
}

fn vmdk_fault(file: &str, e: vmdk::VmdkError) -> Fault {
    match e {
        vmdk::VmdkError::Io { ref source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Fault::file_already_exists(file)
        }
        vmdk::VmdkError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Fault::file_not_found(file)
        }
        other => io_fault(file, other),
    }
}

/// Creates a VM: its directory and `.vmx` on the datastore, no devices yet.
pub fn create_vm(inv: &mut Inventory, new: NewVm) -> Result<MoRef, Fault> {
    if inv.vm_by_name(&new.name).is_some() {
        return Err(Fault::duplicate_name(
            &new.name,
            &inv.datacenter.vm_folder.clone(),
        ));
    }
    let host = inv
        .host(&new.host)
        .ok_or_else(|| Fault::not_found(&new.host))?
        .moref
        .clone();
    let ds = inv
        .datastore(&new.datastore)
        .ok_or_else(|| Fault::not_found(&new.datastore))?
        .clone();
    if !ds.hosts.contains(&host) {
        return Err(Fault::invalid_datastore(&ds.moref, &ds.name));
    }
    let vmx_rel = format!("{0}/{0}.vmx", new.name);
    let vmx = Inventory::local_path(&ds, &vmx_rel)
        .ok_or_else(|| Fault::invalid_argument("config.name"))?;
    if vmx.exists() {
        return Err(Fault::file_already_exists(&ds.ds_path(&vmx_rel)));
    }
    Inventory::check_space(&ds, &ds.ds_path(&vmx_rel), 4096)?;
    if let Some(parent) = vmx.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_fault(&ds.ds_path(&new.name), e))?;
    }
    let n = inv.next();
    let id = match inv.mode {
        Mode::Vcenter => format!("vm-{n}"),
        Mode::Esxi => n.to_string(),
    };
    let vm = Vm {
        moref: MoRef::new("VirtualMachine", id.clone()),
        name: new.name.clone(),
        uuid: uuid::Uuid::new_v4().to_string(),
        instance_uuid: uuid::Uuid::new_v4().to_string(),
        guest_id: new.guest_id,
        cpus: new.cpus,
        memory_mb: new.memory_mb,
        host,
        datastore: ds.moref.clone(),
        dir: new.name.clone(),
        power: Power::Off,
        boot_time: None,
        extra_config: BTreeMap::new(),
        change_tracking: false,
        controllers: Vec::new(),
        disks: Vec::new(),
        nics: Vec::new(),
        snapshots: Vec::new(),
        current_snapshot: None,
        next_snapshot_id: 1,
        change_version: 1,
        modified: now(),
    };
    let moref = vm.moref.clone();
    inv.vms.insert(id, vm);
    write_vmx(inv, &moref)?;
    Ok(moref)
}

/// Adds a SCSI controller and returns its device key.
pub fn add_controller(vm: &mut Vm, kind: &str, bus: Option<i32>) -> Result<i32, Fault> {
    let bus = match bus {
        Some(b) if vm.controllers.iter().any(|c| c.bus == b) => {
            return Err(Fault::invalid_argument("deviceChange.device.busNumber"));
        }
        Some(b) if !(0..4).contains(&b) => {
            return Err(Fault::invalid_argument("deviceChange.device.busNumber"));
        }
        Some(b) => b,
        None => (0..4)
            .find(|b| !vm.controllers.iter().any(|c| c.bus == *b))
            .ok_or_else(|| Fault::invalid_argument("deviceChange (no free SCSI bus)"))?,
    };
    let key = 1000 + bus;
    vm.controllers.push(Controller {
        key,
        bus,
        kind: kind.to_string(),
    });
    vm.touch();
    Ok(key)
}

/// Creates or attaches a disk; returns its device key.
pub fn add_disk(inv: &mut Inventory, vm_ref: &MoRef, d: NewDisk) -> Result<i32, Fault> {
    let vm = inv.vm(vm_ref)?;
    let controller = vm
        .controllers
        .iter()
        .find(|c| c.key == d.controller_key)
        .ok_or_else(|| Fault::invalid_argument("deviceChange.device.controllerKey"))?
        .clone();
    let taken: Vec<i32> = vm
        .disks
        .iter()
        .filter(|x| x.controller_key == controller.key)
        .map(|x| x.unit)
        .collect();
    let unit = match d.unit {
        Some(u) if u == 7 || !(0..16).contains(&u) || taken.contains(&u) => {
            return Err(Fault::invalid_argument("deviceChange.device.unitNumber"));
        }
        Some(u) => u,
        None => (0..16)
            .find(|u| *u != 7 && !taken.contains(u))
            .ok_or_else(|| Fault::invalid_argument("deviceChange (controller full)"))?,
    };
    let ds_ref = d.datastore.clone().unwrap_or_else(|| vm.datastore.clone());
    let ds = inv
        .datastore(&ds_ref)
        .ok_or_else(|| Fault::not_found(&ds_ref))?
        .clone();
    if !ds.hosts.contains(&vm.host) {
        return Err(Fault::invalid_datastore(&ds.moref, &ds.name));
    }
    let rel = match d.path.clone() {
        Some(p) => p,
        None => {
            let used: Vec<String> = inv
                .vms
                .values()
                .flat_map(|v| v.disks.iter().flat_map(|x| x.chain.clone()))
                .collect();
            (0..)
                .map(|i| {
                    if i == 0 {
                        format!("{0}/{0}.vmdk", vm.dir)
                    } else {
                        format!("{0}/{0}_{i}.vmdk", vm.dir)
                    }
                })
                .find(|p| {
                    !used.contains(p) && Inventory::local_path(&ds, p).is_some_and(|l| !l.exists())
                })
                .unwrap_or_default()
        }
    };
    let file = ds.ds_path(&rel);
    let local = Inventory::local_path(&ds, &rel)
        .ok_or_else(|| Fault::invalid_argument("deviceChange.device.backing.fileName"))?;
    if d.create
        && (local.exists()
            || local
                .with_file_name(vmdk::flat_name_for(
                    local
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default(),
                ))
                .exists())
    {
        return Err(Fault::file_already_exists(&file));
    }
    if inv.vms.values().any(|v| {
        v.disks
            .iter()
            .any(|x| x.datastore == ds.moref && x.chain.contains(&rel))
    }) {
        return Err(Fault::file_fault(
            &file,
            "the disk is in use by a virtual machine",
        ));
    }
    let (capacity, uuid, thin) = if d.create {
        if d.capacity == 0 {
            return Err(Fault::invalid_argument("deviceChange.device.capacityInKB"));
        }
        Inventory::check_space(&ds, &file, if d.thin { 4096 } else { d.capacity })?;
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_fault(&file, e))?;
        }
        let uuid = new_disk_uuid();
        vmdk::create(&local, d.capacity, &uuid, d.thin).map_err(|e| vmdk_fault(&file, e))?;
        (
            d.capacity.div_ceil(vmdk::SECTOR) * vmdk::SECTOR,
            uuid,
            d.thin,
        )
    } else {
        let desc = vmdk::read_descriptor(&local).map_err(|e| vmdk_fault(&file, e))?;
        // The lab finds a disk's data by ESXi's naming convention (`x.vmdk` → `x-flat.vmdk`),
        // so it refuses descriptors pointing elsewhere rather than misplace writes.
        if Some(desc.extent_file.as_str())
            != Path::new(&flat_of(&rel))
                .file_name()
                .and_then(|n| n.to_str())
        {
            return Err(Fault::not_supported(&format!(
                "attaching {file}: its extent '{}' is not named after the descriptor ('{}')",
                desc.extent_file,
                flat_of(&rel)
            )));
        }
        let flat = local.with_file_name(&desc.extent_file);
        if !flat.exists() {
            return Err(Fault::file_not_found(&ds.ds_path(&flat_of(&rel))));
        }
        (
            desc.capacity_bytes,
            desc.uuid.unwrap_or_else(new_disk_uuid),
            desc.thin,
        )
    };
    let vm = inv.vm_mut(vm_ref)?;
    let key = 2000 + controller.bus * 16 + unit;
    let cbt = vm.change_tracking.then(ChangeTracker::new);
    if vm.change_tracking {
        vm.extra_config.insert(
            format!("scsi{}:{unit}.ctkEnabled", controller.bus),
            "TRUE".into(),
        );
    }
    vm.disks.push(Disk {
        key,
        controller_key: controller.key,
        unit,
        capacity,
        uuid,
        datastore: ds.moref.clone(),
        thin,
        chain: vec![rel],
        cbt,
    });
    vm.touch();
    write_vmx(inv, vm_ref)?;
    Ok(key)
}

/// Detaches a disk, deleting its files when `destroy` (`fileOperation` `destroy`).
pub fn remove_disk(
    inv: &mut Inventory,
    vm_ref: &MoRef,
    key: i32,
    destroy: bool,
) -> Result<(), Fault> {
    let vm = inv.vm(vm_ref)?;
    let disk = vm
        .disk(key)
        .ok_or_else(|| Fault::invalid_argument("deviceChange.device.key"))?
        .clone();
    if !vm.snapshots.is_empty() {
        return Err(Fault::new(
            "InvalidDeviceOperation",
            format!(
                "Invalid operation for device '{key}': the virtual machine has snapshots; remove them first."
            ),
        ));
    }
    let ctl_bus = vm
        .controllers
        .iter()
        .find(|c| c.key == disk.controller_key)
        .map(|c| c.bus)
        .unwrap_or(0);
    if destroy {
        let ds = inv
            .datastore(&disk.datastore)
            .ok_or_else(|| Fault::not_found(&disk.datastore))?
            .clone();
        for rel in &disk.chain {
            for f in [rel.clone(), flat_of(rel)] {
                if let Some(p) = Inventory::local_path(&ds, &f) {
                    std::fs::remove_file(&p).map_err(|e| io_fault(&ds.ds_path(&f), e))?;
                }
            }
        }
    }
    let vm = inv.vm_mut(vm_ref)?;
    vm.disks.retain(|d| d.key != key);
    vm.extra_config
        .remove(&format!("scsi{ctl_bus}:{}.ctkEnabled", disk.unit));
    vm.touch();
    write_vmx(inv, vm_ref)
}

/// Adds a NIC on a port group; returns its device key.
pub fn add_nic(
    inv: &mut Inventory,
    vm_ref: &MoRef,
    kind: &str,
    network: &MoRef,
) -> Result<i32, Fault> {
    let net = inv
        .networks
        .iter()
        .find(|n| &n.moref == network)
        .ok_or_else(|| Fault::not_found(network))?
        .clone();
    let vm = inv.vm_mut(vm_ref)?;
    if !net.hosts.contains(&vm.host) {
        return Err(Fault::invalid_argument(
            "deviceChange.device.backing.network",
        ));
    }
    let key = (4000..)
        .find(|k| !vm.nics.iter().any(|n| n.key == *k))
        .unwrap_or(4000);
    vm.nics.push(Nic {
        key,
        kind: kind.to_string(),
        network: net.moref,
        mac: new_mac(),
    });
    vm.touch();
    write_vmx(inv, vm_ref)?;
    Ok(key)
}

/// Removes a NIC.
pub fn remove_nic(inv: &mut Inventory, vm_ref: &MoRef, key: i32) -> Result<(), Fault> {
    let vm = inv.vm_mut(vm_ref)?;
    let before = vm.nics.len();
    vm.nics.retain(|n| n.key != key);
    if vm.nics.len() == before {
        return Err(Fault::invalid_argument("deviceChange.device.key"));
    }
    vm.touch();
    write_vmx(inv, vm_ref)
}

/// Sets (or, with an empty value, removes) an extraConfig key. `ctkEnabled` switches
/// change tracking, as it does on ESXi.
pub fn set_extra_config(vm: &mut Vm, key: &str, value: &str) {
    if key == "ctkEnabled" {
        set_change_tracking(vm, value.eq_ignore_ascii_case("true"));
        return;
    }
    if value.is_empty() {
        vm.extra_config.remove(key);
    } else {
        vm.extra_config.insert(key.to_string(), value.to_string());
    }
    vm.touch();
}

/// Switches changed block tracking. Turning it on starts a fresh epoch per disk, so change
/// ids from before a reset are refused, as on ESXi.
pub fn set_change_tracking(vm: &mut Vm, on: bool) {
    let flag = if on { "TRUE" } else { "FALSE" };
    if on != vm.change_tracking {
        for d in &mut vm.disks {
            d.cbt = on.then(ChangeTracker::new);
        }
    }
    vm.change_tracking = on;
    vm.extra_config.insert("ctkEnabled".into(), flag.into());
    let keys: Vec<String> = vm
        .disks
        .iter()
        .map(|d| {
            let bus = vm
                .controllers
                .iter()
                .find(|c| c.key == d.controller_key)
                .map(|c| c.bus)
                .unwrap_or(0);
            format!("scsi{bus}:{}.ctkEnabled", d.unit)
        })
        .collect();
    for k in keys {
        vm.extra_config.insert(k, flag.into());
    }
    vm.touch();
}

/// Powers on.
pub fn power_on(vm: &mut Vm) -> Result<(), Fault> {
    if vm.power == Power::On {
        return Err(Fault::invalid_power_state(Some("poweredOn"), "poweredOn"));
    }
    vm.power = Power::On;
    vm.boot_time = Some(now());
    vm.touch();
    Ok(())
}

/// Powers off (hard).
pub fn power_off(vm: &mut Vm) -> Result<(), Fault> {
    if vm.power == Power::Off {
        return Err(Fault::invalid_power_state(Some("poweredOff"), "poweredOff"));
    }
    vm.power = Power::Off;
    vm.boot_time = None;
    vm.touch();
    Ok(())
}

/// Grows a disk (ReconfigVM_Task with an `edit` of `capacityInKB`). vSphere cannot shrink
/// disks nor grow one that has snapshots, and neither can the lab.
pub fn grow_disk(
    inv: &mut Inventory,
    vm_ref: &MoRef,
    key: i32,
    capacity: u64,
) -> Result<(), Fault> {
    let vm = inv.vm(vm_ref)?;
    let d = vm
        .disk(key)
        .ok_or_else(|| Fault::invalid_argument("deviceChange.device.key"))?
        .clone();
    let capacity = capacity.div_ceil(vmdk::SECTOR) * vmdk::SECTOR;
    if capacity == d.capacity {
        return Ok(());
    }
    if capacity < d.capacity {
        return Err(Fault::invalid_argument("deviceChange.device.capacityInKB"));
    }
    if !vm.snapshots.is_empty() {
        return Err(Fault::new(
            "InvalidDeviceOperation",
            format!(
                "Invalid operation for device '{key}': a disk with snapshots cannot be extended."
            ),
        ));
    }
    let ds = inv
        .datastore(&d.datastore)
        .ok_or_else(|| Fault::not_found(&d.datastore))?
        .clone();
    let top = d.chain.last().cloned().unwrap_or_default();
    let file = ds.ds_path(&top);
    if !d.thin {
        Inventory::check_space(&ds, &file, capacity - d.capacity)?;
    }
    let desc_path =
        Inventory::local_path(&ds, &top).ok_or_else(|| Fault::invalid_argument("disk"))?;
    let desc = vmdk::read_descriptor(&desc_path).map_err(|e| vmdk_fault(&file, e))?;
    let flat = desc_path.with_file_name(&desc.extent_file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&flat)
        .and_then(|f| f.set_len(capacity))
        .map_err(|e| io_fault(&file, e))?;
    std::fs::write(
        &desc_path,
        vmdk::render_descriptor(capacity, &desc.extent_file, &d.uuid, d.thin),
    )
    .map_err(|e| io_fault(&file, e))?;
    let vm = inv.vm_mut(vm_ref)?;
    if let Some(x) = vm.disks.iter_mut().find(|x| x.key == key) {
        x.capacity = capacity;
    }
    vm.touch();
    Ok(())
}

/// Clones a VM's running state (not its snapshots) into a new VM, as vCenter's
/// CloneVM_Task does; disks are copied sparsely. A failed clone leaves nothing behind.
pub fn clone_vm(
    inv: &mut Inventory,
    src_ref: &MoRef,
    name: &str,
    datastore: Option<MoRef>,
    host: Option<MoRef>,
    power: bool,
) -> Result<MoRef, Fault> {
    let src = inv.vm(src_ref)?.clone();
    let ds = datastore.unwrap_or_else(|| src.datastore.clone());
    let new = create_vm(
        inv,
        NewVm {
            name: name.to_string(),
            guest_id: src.guest_id.clone(),
            cpus: src.cpus,
            memory_mb: src.memory_mb,
            host: host.unwrap_or_else(|| src.host.clone()),
            datastore: ds.clone(),
        },
    )?;
    match fill_clone(inv, &src, &new, &ds, power) {
        Ok(()) => Ok(new),
        Err(f) => {
            let _ = destroy(inv, &new);
            Err(f)
        }
    }
}

fn fill_clone(
    inv: &mut Inventory,
    src: &Vm,
    new: &MoRef,
    ds: &MoRef,
    power: bool,
) -> Result<(), Fault> {
    for c in &src.controllers {
        add_controller(inv.vm_mut(new)?, &c.kind, Some(c.bus))?;
    }
    for d in &src.disks {
        let key = add_disk(
            inv,
            new,
            NewDisk {
                controller_key: d.controller_key,
                unit: Some(d.unit),
                capacity: d.capacity,
                datastore: Some(ds.clone()),
                path: None,
                create: true,
                thin: d.thin,
            },
        )?;
        let src_ds = inv
            .datastore(&d.datastore)
            .ok_or_else(|| Fault::not_found(&d.datastore))?
            .clone();
        let dst_ds = inv
            .datastore(ds)
            .ok_or_else(|| Fault::not_found(ds))?
            .clone();
        let src_top = d.chain.last().cloned().unwrap_or_default();
        let dst_top = inv
            .vm(new)?
            .disk(key)
            .and_then(|x| x.chain.last().cloned())
            .unwrap_or_default();
        let file = dst_ds.ds_path(&dst_top);
        let (Some(from), Some(to)) = (
            Inventory::local_path(&src_ds, &flat_of(&src_top)),
            Inventory::local_path(&dst_ds, &flat_of(&dst_top)),
        ) else {
            return Err(Fault::invalid_argument("disk"));
        };
        let used: u64 = vmdk::allocated_ranges(&from)
            .map_err(|e| vmdk_fault(&file, e))?
            .iter()
            .map(|r| r.1)
            .sum();
        Inventory::check_space(&dst_ds, &file, used)?;
        vmdk::copy_allocated(&from, &to).map_err(|e| vmdk_fault(&file, e))?;
    }
    for n in &src.nics {
        add_nic(inv, new, &n.kind, &n.network)?;
    }
    let vm = inv.vm_mut(new)?;
    for (k, v) in &src.extra_config {
        // Change tracking belongs to the source's disks; a clone starts untracked.
        if !k.ends_with("ctkEnabled") {
            set_extra_config(vm, k, v);
        }
    }
    if power {
        power_on(vm)?;
    }
    write_vmx(inv, new)
}

/// Deletes a powered-off VM and all its files.
pub fn destroy(inv: &mut Inventory, vm_ref: &MoRef) -> Result<(), Fault> {
    let vm = inv.vm(vm_ref)?.clone();
    if vm.power == Power::On {
        return Err(Fault::invalid_power_state(None, "poweredOn"));
    }
    for d in &vm.disks {
        if let Some(ds) = inv.datastore(&d.datastore) {
            for rel in &d.chain {
                for f in [rel.clone(), flat_of(rel)] {
                    if let Some(p) = Inventory::local_path(ds, &f) {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
    }
    if let Some(ds) = inv.datastore(&vm.datastore)
        && let Some(dir) = Inventory::local_path(ds, &vm.dir)
    {
        std::fs::remove_dir_all(&dir).map_err(|e| io_fault(&ds.ds_path(&vm.dir), e))?;
    }
    inv.vms.remove(&vm_ref.value);
    Ok(())
}

/// Takes a snapshot: every disk's running file is frozen and a new running file (a sparse
/// copy) takes its place; tracked disks cut a new change id.
pub fn create_snapshot(
    inv: &mut Inventory,
    vm_ref: &MoRef,
    name: &str,
    description: &str,
    memory: bool,
    quiesce: bool,
) -> Result<MoRef, Fault> {
    let vm = inv.vm(vm_ref)?.clone();
    let mut plans = Vec::new();
    for d in &vm.disks {
        let ds = inv
            .datastore(&d.datastore)
            .ok_or_else(|| Fault::not_found(&d.datastore))?
            .clone();
        let frozen = d.chain.last().cloned().unwrap_or_default();
        let base = d.chain.first().cloned().unwrap_or_default();
        let stem = base.strip_suffix(".vmdk").unwrap_or(&base).to_string();
        let next = (d.chain.len()..)
            .map(|i| format!("{stem}-{i:06}.vmdk"))
            .find(|p| Inventory::local_path(&ds, p).is_some_and(|l| !l.exists()))
            .unwrap_or_default();
        Inventory::check_space(&ds, &ds.ds_path(&next), 4096)?;
        plans.push((d.key, ds, frozen, next));
    }
    for (key, ds, frozen, next) in &plans {
        let disk = vm
            .disk(*key)
            .cloned()
            .ok_or_else(|| Fault::invalid_argument("disk"))?;
        let file = ds.ds_path(next);
        let src = Inventory::local_path(ds, &flat_of(frozen))
            .ok_or_else(|| Fault::invalid_argument("disk"))?;
        let dst_desc =
            Inventory::local_path(ds, next).ok_or_else(|| Fault::invalid_argument("disk"))?;
        let dst_flat = Inventory::local_path(ds, &flat_of(next))
            .ok_or_else(|| Fault::invalid_argument("disk"))?;
        let ranges = vmdk::allocated_ranges(&src).map_err(|e| vmdk_fault(&file, e))?;
        vmdk::sparse_copy(&src, &dst_flat, disk.capacity, &ranges)
            .map_err(|e| vmdk_fault(&file, e))?;
        let flat_name = dst_flat
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        std::fs::write(
            &dst_desc,
            vmdk::render_descriptor(disk.capacity, &flat_name, &disk.uuid, disk.thin),
        )
        .map_err(|e| io_fault(&file, e))?;
    }
    let n = inv.next();
    let esxi = inv.mode == Mode::Esxi;
    let vm = inv.vm_mut(vm_ref)?;
    let id = vm.next_snapshot_id;
    vm.next_snapshot_id += 1;
    let moref = MoRef::new(
        "VirtualMachineSnapshot",
        if esxi {
            format!("{}-snapshot-{id}", vm.moref.value)
        } else {
            format!("snapshot-{n}")
        },
    );
    let mut disks = Vec::new();
    for (key, _, frozen, next) in plans {
        let Some(d) = vm.disks.iter_mut().find(|d| d.key == key) else {
            continue;
        };
        d.chain.push(next);
        let change_id = d.cbt.as_mut().map(|t| {
            let p = t.cut();
            t.change_id(p)
        });
        disks.push(SnapDisk {
            key,
            file: frozen,
            change_id,
        });
    }
    let on = vm.power == Power::On;
    vm.snapshots.push(Snapshot {
        moref: moref.clone(),
        id,
        name: name.to_string(),
        description: description.to_string(),
        create_time: now(),
        state: if memory && on { Power::On } else { Power::Off },
        quiesced: quiesce && on,
        parent: vm.current_snapshot.clone(),
        disks,
        cpus: vm.cpus,
        memory_mb: vm.memory_mb,
        extra_config: vm.extra_config.clone(),
    });
    vm.current_snapshot = Some(moref.clone());
    vm.touch();
    write_vmx(inv, vm_ref)?;
    Ok(moref)
}

/// Removes a snapshot (and its subtree when `children`), consolidating each disk: the file
/// after the snapshot's frozen one takes its name, as ESXi consolidates deltas into parents.
pub fn remove_snapshot(inv: &mut Inventory, snap: &MoRef, children: bool) -> Result<(), Fault> {
    let vm_ref = inv
        .snapshot(snap)
        .map(|(vm, _)| vm.moref.clone())
        .ok_or_else(|| Fault::not_found(snap))?;
    let mut order = vec![snap.clone()];
    if children {
        let vm = inv.vm(&vm_ref)?;
        let mut i = 0;
        while i < order.len() {
            let kids: Vec<MoRef> = vm
                .snapshots
                .iter()
                .filter(|s| s.parent.as_ref() == Some(&order[i]))
                .map(|s| s.moref.clone())
                .collect();
            order.extend(kids);
            i += 1;
        }
        order.reverse();
    }
    for s in order {
        remove_one_snapshot(inv, &vm_ref, &s)?;
    }
    write_vmx(inv, &vm_ref)
}

fn remove_one_snapshot(inv: &mut Inventory, vm_ref: &MoRef, snap: &MoRef) -> Result<(), Fault> {
    let vm = inv.vm(vm_ref)?.clone();
    let s = vm
        .snapshot(snap)
        .ok_or_else(|| Fault::not_found(snap))?
        .clone();
    let mut renames = Vec::new();
    for sd in &s.disks {
        let Some(d) = vm.disk(sd.key) else { continue };
        let Some(i) = d.chain.iter().position(|f| f == &sd.file) else {
            continue;
        };
        let Some(child) = d.chain.get(i + 1).cloned() else {
            continue;
        };
        let ds = inv
            .datastore(&d.datastore)
            .ok_or_else(|| Fault::not_found(&d.datastore))?
            .clone();
        let from = Inventory::local_path(&ds, &flat_of(&child))
            .ok_or_else(|| Fault::invalid_argument("snapshot"))?;
        let to = Inventory::local_path(&ds, &flat_of(&sd.file))
            .ok_or_else(|| Fault::invalid_argument("snapshot"))?;
        let child_desc = Inventory::local_path(&ds, &child)
            .ok_or_else(|| Fault::invalid_argument("snapshot"))?;
        std::fs::rename(&from, &to).map_err(|e| io_fault(&ds.ds_path(&child), e))?;
        std::fs::remove_file(&child_desc).map_err(|e| io_fault(&ds.ds_path(&child), e))?;
        renames.push((sd.key, i, child, sd.file.clone()));
    }
    let vm = inv.vm_mut(vm_ref)?;
    for (key, i, child, parent_file) in renames {
        if let Some(d) = vm.disks.iter_mut().find(|d| d.key == key) {
            d.chain.remove(i + 1);
        }
        for other in &mut vm.snapshots {
            for od in &mut other.disks {
                if od.key == key && od.file == child {
                    od.file = parent_file.clone();
                }
            }
        }
    }
    for other in &mut vm.snapshots {
        if other.parent.as_ref() == Some(snap) {
            other.parent = s.parent.clone();
        }
    }
    if vm.current_snapshot.as_ref() == Some(snap) {
        vm.current_snapshot = s.parent.clone();
    }
    vm.snapshots.retain(|x| &x.moref != snap);
    vm.touch();
    Ok(())
}

/// Bytes to write to a disk.
#[derive(Debug, Clone, Copy)]
pub enum WriteData<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// This many zero bytes (a guest zeroing blocks, which still allocates and counts as changed).
    Zeros(u64),
}

impl WriteData<'_> {
    fn len(&self) -> u64 {
        match self {
            WriteData::Bytes(b) => b.len() as u64,
            WriteData::Zeros(n) => *n,
        }
    }
}

/// Writes to a disk's running file and records the extent for change tracking.
pub fn write_disk(
    inv: &mut Inventory,
    vm_ref: &MoRef,
    key: i32,
    offset: u64,
    data: WriteData<'_>,
) -> Result<(), Fault> {
    let vm = inv.vm(vm_ref)?;
    let d = vm
        .disk(key)
        .ok_or_else(|| Fault::invalid_argument("deviceKey"))?
        .clone();
    let len = data.len();
    if offset.checked_add(len).is_none_or(|end| end > d.capacity) {
        return Err(Fault::invalid_argument("offset"));
    }
    let ds = inv
        .datastore(&d.datastore)
        .ok_or_else(|| Fault::not_found(&d.datastore))?
        .clone();
    let top = d.chain.last().cloned().unwrap_or_default();
    let flat_rel = flat_of(&top);
    let file = ds.ds_path(&top);
    Inventory::check_space(&ds, &file, len)?;
    let flat =
        Inventory::local_path(&ds, &flat_rel).ok_or_else(|| Fault::invalid_argument("disk"))?;
    write_flat(&flat, offset, data).map_err(|e| vmdk_fault(&file, e))?;
    record_write(inv, vm_ref, key, offset, len);
    Ok(())
}

/// Writes bytes or zeros to a flat extent.
pub fn write_flat(flat: &Path, offset: u64, data: WriteData<'_>) -> Result<(), vmdk::VmdkError> {
    match data {
        WriteData::Bytes(b) => vmdk::write_at(flat, offset, b),
        WriteData::Zeros(n) => {
            const CHUNK: u64 = 1 << 20;
            let zeros = vec![0u8; CHUNK.min(n) as usize];
            let mut done = 0;
            while done < n {
                let k = (n - done).min(CHUNK) as usize;
                vmdk::write_at(flat, offset + done, &zeros[..k])?;
                done += k as u64;
            }
            Ok(())
        }
    }
}

/// Records a write to a disk's running file in its change tracker.
pub fn record_write(inv: &mut Inventory, vm_ref: &MoRef, key: i32, offset: u64, len: u64) {
    if let Ok(vm) = inv.vm_mut(vm_ref)
        && let Some(t) = vm
            .disks
            .iter_mut()
            .find(|d| d.key == key)
            .and_then(|d| d.cbt.as_mut())
    {
        t.record(offset, len);
    }
}

/// Rewrites the VM's `.vmx`, so the datastore holds what ESXi would keep there.
pub fn write_vmx(inv: &Inventory, vm_ref: &MoRef) -> Result<(), Fault> {
    let vm = inv.vm(vm_ref)?;
    let Some(ds) = inv.datastore(&vm.datastore) else {
        return Ok(());
    };
    let rel = format!("{0}/{1}.vmx", vm.dir, vm.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"19\""
    );
    let _ = writeln!(
        s,
        "displayName = \"{}\"\nguestOS = \"{}\"",
        vm.name,
        vm.guest_id.trim_end_matches("Guest")
    );
    let _ = writeln!(
        s,
        "numvcpus = \"{}\"\nmemSize = \"{}\"\nuuid.bios = \"{}\"",
        vm.cpus, vm.memory_mb, vm.uuid
    );
    for c in &vm.controllers {
        let _ = writeln!(s, "scsi{}.present = \"TRUE\"", c.bus);
    }
    for d in &vm.disks {
        let bus = vm
            .controllers
            .iter()
            .find(|c| c.key == d.controller_key)
            .map(|c| c.bus)
            .unwrap_or(0);
        let top = d.chain.last().cloned().unwrap_or_default();
        let name = if d.datastore == vm.datastore && top.starts_with(&format!("{}/", vm.dir)) {
            top[vm.dir.len() + 1..].to_string()
        } else {
            inv.datastore(&d.datastore)
                .map(|x| x.dir.join(&top).display().to_string())
                .unwrap_or(top)
        };
        let _ = writeln!(
            s,
            "scsi{bus}:{}.present = \"TRUE\"\nscsi{bus}:{}.fileName = \"{name}\"",
            d.unit, d.unit
        );
    }
    for (i, n) in vm.nics.iter().enumerate() {
        let net = inv
            .networks
            .iter()
            .find(|x| x.moref == n.network)
            .map(|x| x.name.clone())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "ethernet{i}.present = \"TRUE\"\nethernet{i}.networkName = \"{net}\"\nethernet{i}.address = \"{}\"",
            n.mac
        );
    }
    for (k, v) in &vm.extra_config {
        let _ = writeln!(s, "{k} = \"{v}\"");
    }
    let path =
        Inventory::local_path(ds, &rel).ok_or_else(|| Fault::invalid_argument("config.name"))?;
    std::fs::write(&path, s).map_err(|e| io_fault(&ds.ds_path(&rel), e))
}

/// Builds a VM described in the site's TOML.
pub fn add_vm_from_spec(inv: &mut Inventory, v: &VmSpec) -> Result<(), LabError> {
    let invalid = |m: String| LabError::InvalidSpec(m);
    let host = match &v.host {
        Some(h) => inv
            .host_by_name(h)
            .ok_or_else(|| invalid(format!("VM '{}' names unknown host '{h}'", v.name)))?
            .moref
            .clone(),
        None => inv.hosts[0].moref.clone(),
    };
    let ds = match &v.datastore {
        Some(d) => inv
            .datastore_by_name(d)
            .ok_or_else(|| invalid(format!("VM '{}' names unknown datastore '{d}'", v.name)))?
            .moref
            .clone(),
        None => inv
            .datastores
            .first()
            .ok_or_else(|| {
                invalid(format!(
                    "VM '{}' needs a datastore and the site has none",
                    v.name
                ))
            })?
            .moref
            .clone(),
    };
    let vm_ref = create_vm(
        inv,
        NewVm {
            name: v.name.clone(),
            guest_id: v.guest_id.clone(),
            cpus: v.cpus,
            memory_mb: v.memory_mb,
            host,
            datastore: ds,
        },
    )?;
    let ctl = add_controller(inv.vm_mut(&vm_ref)?, "VirtualLsiLogicController", Some(0))?;
    for disk in &v.disks {
        let datastore = match &disk.datastore {
            Some(d) => Some(
                inv.datastore_by_name(d)
                    .ok_or_else(|| {
                        invalid(format!(
                            "a disk of VM '{}' names unknown datastore '{d}'",
                            v.name
                        ))
                    })?
                    .moref
                    .clone(),
            ),
            None => None,
        };
        add_disk(
            inv,
            &vm_ref,
            NewDisk {
                controller_key: ctl,
                unit: None,
                capacity: disk.capacity_mib << 20,
                datastore,
                path: None,
                create: true,
                thin: true,
            },
        )?;
    }
    for n in &v.networks {
        let net = inv
            .network_by_name(n)
            .ok_or_else(|| invalid(format!("VM '{}' names unknown network '{n}'", v.name)))?
            .moref
            .clone();
        add_nic(inv, &vm_ref, "VirtualVmxnet3", &net)?;
    }
    let vm = inv.vm_mut(&vm_ref)?;
    for (k, val) in &v.extra_config {
        set_extra_config(vm, k, val);
    }
    if v.change_tracking {
        set_change_tracking(vm, true);
    }
    for name in &v.snapshots {
        create_snapshot(inv, &vm_ref, name, "", false, false)?;
    }
    let vm = inv.vm_mut(&vm_ref)?;
    match v.power.as_deref() {
        None | Some("poweredOff") => {}
        Some("poweredOn") => power_on(vm)?,
        Some(other) => {
            return Err(invalid(format!(
                "VM '{}' has unknown power state '{other}' (poweredOn or poweredOff)",
                v.name
            )));
        }
    }
    write_vmx(inv, &vm_ref)?;
    Ok(())
}
