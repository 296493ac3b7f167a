//! Changing the site: VMs, disks, power, extra-config and change-tracking flags. Each
//! function finishes its work before returning and gives the id of the object it created or
//! changed; `lib.rs` wraps that in a succeeded operation.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;

use homeward_sdk::compute::{DiskSpec, VmSpec};
use homeward_sdk::{AdapterError, error};

use crate::change_tracking;
use crate::inventory;
use crate::layout::{DATASTORE_ID, HOST_ID, Site, check_name, disk_file_name};
use crate::store::Store;
use crate::util::{io_error, new_uuid};
use crate::vm_file::{DiskEntry, Power, VmFile};

const TMP_CREATE: &str = ".tmp-create-";
const TMP_DELETE: &str = ".tmp-delete-";

fn check_datastore(datastore: Option<&str>) -> Result<(), AdapterError> {
    match datastore {
        None | Some(DATASTORE_ID) => Ok(()),
        Some(other) => Err(error::not_found(format!(
            "datastore `{other}` does not exist: a directory site has one, `{DATASTORE_ID}`"
        ))),
    }
}

fn check_disk_spec(disk: &DiskSpec) -> Result<(), AdapterError> {
    check_name("disk label", &disk.label)?;
    if disk.capacity_bytes == 0 {
        return Err(error::invalid(format!(
            "disk `{}` has capacity 0: give its size in bytes",
            disk.label
        )));
    }
    check_datastore(disk.datastore.as_deref())
}

/// Refuses thick disks that do not fit in the free space the datastore reports.
fn check_space<'a>(
    site: &Site,
    disks: impl Iterator<Item = &'a DiskSpec>,
) -> Result<(), AdapterError> {
    let thick: u64 = disks.filter(|d| !d.thin).map(|d| d.capacity_bytes).sum();
    if thick == 0 {
        return Ok(());
    }
    let free = inventory::free_bytes(site)?;
    if thick > free {
        return Err(error::conflict(format!(
            "datastore `{DATASTORE_ID}` has {free} bytes free, the thick disks need {thick}: free space, raise `capacity_bytes`, or use thin disks"
        )));
    }
    Ok(())
}

fn create_disk_file(path: &std::path::Path, capacity: u64) -> Result<(), AdapterError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_error("creating the disk", path, e))?;
    // set_len makes a sparse file: no blocks are written.
    file.set_len(capacity)
        .and_then(|_| file.sync_all())
        .map_err(|e| io_error("sizing the disk", path, e))
}

/// Creates a VM folder with its disks and description; returns the VM id (its name).
pub fn create_vm(site: &Site, spec: &VmSpec) -> Result<String, AdapterError> {
    check_name("VM", &spec.name)?;
    let site_file = site.site_file()?;
    let dir = site.vm_dir(&spec.name);
    if dir.join("vm.toml").exists() {
        return Err(error::already_exists(format!(
            "VM `{}` already exists; nothing was created",
            spec.name
        )));
    }
    if dir.exists() {
        return Err(error::conflict(format!(
            "{} exists but holds no vm.toml: remove it or choose another VM name",
            dir.display()
        )));
    }
    if spec.cpu_count == 0 || spec.memory_mib == 0 {
        return Err(error::invalid(format!(
            "VM `{}` needs at least 1 CPU and 1 MiB of memory",
            spec.name
        )));
    }
    if let Some(host) = spec.host.as_deref().filter(|h| *h != HOST_ID) {
        return Err(error::not_found(format!(
            "host `{host}` does not exist: a directory site has one, `{HOST_ID}`"
        )));
    }
    check_datastore(spec.datastore.as_deref())?;
    if let Some(net) = spec
        .networks
        .iter()
        .find(|n| !site_file.networks.contains(n))
    {
        return Err(error::not_found(format!(
            "network `{net}` does not exist: add it to site.toml's `networks`, or pick one of {:?}",
            site_file.networks
        )));
    }
    let mut labels = BTreeSet::new();
    for disk in &spec.disks {
        check_disk_spec(disk)?;
        if !labels.insert(disk.label.as_str()) {
            return Err(error::invalid(format!(
                "disk label `{}` is given twice",
                disk.label
            )));
        }
    }
    if let Some(kv) = spec.extra_config.iter().find(|kv| kv.key.is_empty()) {
        return Err(error::invalid(format!(
            "extra-config entry with value `{}` has an empty key",
            kv.value
        )));
    }
    check_space(site, spec.disks.iter())?;

    let uuid = new_uuid(&spec.name);
    let file = VmFile {
        name: spec.name.clone(),
        uuid: uuid.clone(),
        guest_os: spec.guest_os.clone(),
        cpu_count: spec.cpu_count,
        memory_mib: spec.memory_mib,
        power_state: Power::PoweredOff,
        networks: spec.networks.clone(),
        snapshot_seq: 0,
        extra_config: spec
            .extra_config
            .iter()
            .filter(|kv| !kv.value.is_empty())
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
        disks: spec
            .disks
            .iter()
            .map(|d| {
                let entry = DiskEntry {
                    capacity_bytes: d.capacity_bytes,
                    uuid: new_uuid(&format!("{uuid}/{}", d.label)),
                    thin: d.thin,
                    change_tracking: false,
                };
                (d.label.clone(), entry)
            })
            .collect(),
    };

    // Build the folder aside and rename it into place, so the VM appears whole or not at all.
    let tmp = site.root.join(format!("{TMP_CREATE}{}", spec.name));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_error("removing a half-created VM", &tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| io_error("creating the VM folder", &tmp, e))?;
    let build = || -> Result<(), AdapterError> {
        for (label, disk) in &file.disks {
            create_disk_file(&tmp.join(disk_file_name(label)), disk.capacity_bytes)?;
        }
        file.save_to(&tmp.join("vm.toml"))
    };
    if let Err(e) = build() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(match e.kind() {
            ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty => error::already_exists(
                format!("VM `{}` was created by another caller meanwhile", spec.name),
            ),
            _ => io_error("publishing the VM folder", &dir, e),
        });
    }
    Ok(spec.name.clone())
}

/// Records the VM as powered on; a VM already on is left as it is.
pub fn power_on(site: &Site, vm: &str) -> Result<String, AdapterError> {
    set_power(site, vm, Power::PoweredOn)
}

/// Records the VM as powered off, for every mode: a directory site has no guest to shut
/// down and no compute to release. A VM already off is left as it is.
pub fn power_off(site: &Site, vm: &str) -> Result<String, AdapterError> {
    set_power(site, vm, Power::PoweredOff)
}

fn set_power(site: &Site, vm: &str, power: Power) -> Result<String, AdapterError> {
    let mut file = VmFile::load(site, vm)?;
    if file.power_state != power {
        file.power_state = power;
        file.save(site)?;
    }
    Ok(vm.to_string())
}

/// Deletes a powered-off VM's folder (disks and snapshots) and its change-tracking data.
pub fn delete_vm(site: &Site, store: &dyn Store, vm: &str) -> Result<String, AdapterError> {
    let file = VmFile::load(site, vm)?;
    if file.power_state == Power::PoweredOn {
        return Err(error::conflict(format!(
            "VM {vm} is powered on: power it off before deleting it"
        )));
    }
    // Rename first so the VM disappears at once even if removing its files is interrupted.
    let doomed = site.root.join(format!("{TMP_DELETE}{vm}"));
    if doomed.exists() {
        fs::remove_dir_all(&doomed)
            .map_err(|e| io_error("removing a half-deleted VM", &doomed, e))?;
    }
    let dir = site.vm_dir(vm);
    fs::rename(&dir, &doomed).map_err(|e| io_error("deleting the VM", &dir, e))?;
    change_tracking::forget_vm(store, vm)?;
    fs::remove_dir_all(&doomed)
        .map_err(|e| io_error("removing the deleted VM's files", &doomed, e))?;
    Ok(vm.to_string())
}

/// Creates a sparse disk and attaches it; returns the disk id (its label).
pub fn attach_disk(site: &Site, vm: &str, disk: &DiskSpec) -> Result<String, AdapterError> {
    let mut file = VmFile::load(site, vm)?;
    check_disk_spec(disk)?;
    if file.disks.contains_key(&disk.label) {
        return Err(error::already_exists(format!(
            "VM {vm} already has a disk `{}`",
            disk.label
        )));
    }
    let path = site.disk_file(vm, &disk.label);
    if path.exists() {
        return Err(error::conflict(format!(
            "{} holds the data of a detached disk: delete it or choose another label",
            path.display()
        )));
    }
    check_space(site, std::iter::once(disk))?;
    create_disk_file(&path, disk.capacity_bytes)?;
    let uuid = new_uuid(&format!("{}/{}", file.uuid, disk.label));
    file.disks.insert(
        disk.label.clone(),
        DiskEntry {
            capacity_bytes: disk.capacity_bytes,
            uuid,
            thin: disk.thin,
            change_tracking: false,
        },
    );
    file.save(site)?;
    Ok(disk.label.clone())
}

/// Detaches a disk, deleting its raw file with `delete_backing`; its change ids go either
/// way, because a disk attached again later is a new disk.
pub fn detach_disk(
    site: &Site,
    store: &dyn Store,
    vm: &str,
    disk: &str,
    delete_backing: bool,
) -> Result<String, AdapterError> {
    let mut file = VmFile::load(site, vm)?;
    file.disk(disk)?;
    file.disks.remove(disk);
    file.save(site)?;
    change_tracking::forget_disk(store, vm, disk)?;
    if delete_backing {
        let path = site.disk_file(vm, disk);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("deleting the detached disk", &path, e)),
        }
    }
    Ok(disk.to_string())
}

/// Applies extra-config changes; an empty value removes the key.
pub fn reconfigure(
    site: &Site,
    vm: &str,
    changes: &[(String, String)],
) -> Result<String, AdapterError> {
    let mut file = VmFile::load(site, vm)?;
    if let Some((_, value)) = changes.iter().find(|(k, _)| k.is_empty()) {
        return Err(error::invalid(format!(
            "extra-config change with value `{value}` has an empty key; nothing was changed"
        )));
    }
    for (key, value) in changes {
        if value.is_empty() {
            file.extra_config.remove(key);
        } else {
            file.extra_config.insert(key.clone(), value.clone());
        }
    }
    file.save(site)?;
    Ok(vm.to_string())
}

/// Turns change tracking on for a disk; already on is a no-op. Returns the disk id.
pub fn enable_change_tracking(site: &Site, vm: &str, disk: &str) -> Result<String, AdapterError> {
    let mut file = VmFile::load(site, vm)?;
    let entry = file.disk_mut(disk)?;
    if !entry.change_tracking {
        entry.change_tracking = true;
        file.save(site)?;
    }
    Ok(disk.to_string())
}
