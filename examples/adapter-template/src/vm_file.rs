//! `vm.toml`: a VM's description, the one file the adapter rewrites on every change.
//!
//! ```toml
//! name = "web01"
//! uuid = "…"
//! guest_os = "ubuntu64Guest"
//! cpu_count = 2
//! memory_mib = 2048
//! power_state = "powered-off"
//! networks = ["lan"]
//!
//! [extra_config]
//! "disk.EnableUUID" = "TRUE"
//!
//! [disks.disk0]
//! capacity_bytes = 1073741824
//! change_tracking = true
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use homeward_sdk::{AdapterError, error};
use serde::{Deserialize, Serialize};

use crate::layout::{Site, check_name, write_atomic};
use crate::util::{io_error, stable_uuid};

/// A VM's power state as the file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Power {
    /// Running.
    PoweredOn,
    /// Stopped.
    #[default]
    PoweredOff,
    /// Suspended (only ever written by hand; the adapter powers such a VM on or off).
    Suspended,
}

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskEntry {
    /// The disk's size; the raw file has exactly this length.
    pub capacity_bytes: u64,
    /// Stable UUID; generated from the VM and label when written by hand without one.
    #[serde(default)]
    pub uuid: String,
    /// Thin (the default) or thick; thick disks are refused when they exceed the free
    /// space the datastore reports. Every raw file is sparse either way.
    #[serde(default = "yes")]
    pub thin: bool,
    /// Whether snapshots record block hashes for `changed-areas`.
    #[serde(default)]
    pub change_tracking: bool,
}

fn yes() -> bool {
    true
}

/// The contents of `vm.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmFile {
    /// The VM's name: always its folder's name, which is also its id.
    #[serde(default)]
    pub name: String,
    /// Stable UUID; generated from the name when written by hand without one.
    #[serde(default)]
    pub uuid: String,
    /// Guest OS identifier, such as `ubuntu64Guest`.
    pub guest_os: String,
    /// Virtual CPUs.
    pub cpu_count: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The recorded power state.
    #[serde(default)]
    pub power_state: Power,
    /// Network ids, one NIC each.
    #[serde(default)]
    pub networks: Vec<String>,
    /// The number of the last snapshot taken, so snapshot ids are never reused.
    #[serde(default)]
    pub snapshot_seq: u64,
    /// Advanced configuration such as `disk.EnableUUID`.
    #[serde(default)]
    pub extra_config: BTreeMap<String, String>,
    /// Disks by label; the label is the disk's id.
    #[serde(default)]
    pub disks: BTreeMap<String, DiskEntry>,
}

impl VmFile {
    /// Reads VM `vm`; `not-found` when there is no such VM.
    pub fn load(site: &Site, vm: &str) -> Result<VmFile, AdapterError> {
        if check_name("VM", vm).is_err() {
            return Err(not_found(vm));
        }
        let path = site.vm_file(vm);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                site.check_root()?;
                return Err(not_found(vm));
            }
            Err(e) => return Err(io_error("reading the VM description", &path, e)),
        };
        let mut file: VmFile = toml::from_str(&text).map_err(|e| {
            error::internal(format!(
                "{} is not a valid VM description: {e}",
                path.display()
            ))
        })?;
        file.name = vm.to_string();
        if file.uuid.is_empty() {
            file.uuid = stable_uuid(&format!("vm:{vm}"));
        }
        for (label, disk) in &mut file.disks {
            if disk.uuid.is_empty() {
                disk.uuid = stable_uuid(&format!("vm:{vm}/disk:{label}"));
            }
        }
        Ok(file)
    }

    /// Writes the description back, atomically.
    pub fn save(&self, site: &Site) -> Result<(), AdapterError> {
        self.save_to(&site.vm_file(&self.name))
    }

    /// Writes the description to `path`, atomically.
    pub fn save_to(&self, path: &Path) -> Result<(), AdapterError> {
        let text = toml::to_string(self)
            .map_err(|e| error::internal(format!("encoding VM {}: {e}", self.name)))?;
        write_atomic(path, &text)
    }

    /// The disk `label` for changing, or `not-found` naming the VM.
    pub fn disk_mut(&mut self, label: &str) -> Result<&mut DiskEntry, AdapterError> {
        let vm = self.name.clone();
        self.disks
            .get_mut(label)
            .ok_or_else(|| error::not_found(format!("VM {vm} has no disk `{label}`")))
    }

    /// The disk `label`, or `not-found` naming the VM.
    pub fn disk(&self, label: &str) -> Result<&DiskEntry, AdapterError> {
        self.disks
            .get(label)
            .ok_or_else(|| error::not_found(format!("VM {} has no disk `{label}`", self.name)))
    }
}

/// The `not-found` error for VM `vm`.
pub fn not_found(vm: &str) -> AdapterError {
    error::not_found(format!("VM `{vm}` does not exist on this directory site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_descriptions_get_defaults_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::from_values(Some(dir.path().display().to_string()), None, None).unwrap();
        fs::create_dir(dir.path().join("vm1")).unwrap();
        fs::write(
            dir.path().join("vm1/vm.toml"),
            "guest_os = \"otherGuest\"\ncpu_count = 1\nmemory_mib = 512\n[disks.d0]\ncapacity_bytes = 4096\n",
        )
        .unwrap();
        let vm = VmFile::load(&site, "vm1").unwrap();
        assert_eq!(vm.name, "vm1");
        assert_eq!(vm.power_state, Power::PoweredOff);
        assert!(vm.disks["d0"].thin);
        assert_eq!(vm.uuid, VmFile::load(&site, "vm1").unwrap().uuid);
        vm.save(&site).unwrap();
        assert_eq!(VmFile::load(&site, "vm1").unwrap(), vm);
        assert!(matches!(
            VmFile::load(&site, "vm2"),
            Err(AdapterError::NotFound(_))
        ));
        assert!(matches!(
            VmFile::load(&site, ".."),
            Err(AdapterError::NotFound(_))
        ));
    }
}
