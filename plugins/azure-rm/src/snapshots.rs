//! VM snapshots as incremental managed-disk snapshots: one Azure snapshot per disk, tagged
//! with the VM, the disk and the VM-level snapshot name, which is also its id.

use homeward_sdk::inventory::SnapshotInfo;
use homeward_sdk::types::AdapterError;
use serde_json::Value;

use crate::site::{Site, require_type, same_id};

/// The snapshot resource type.
pub const SNAPSHOT: &str = "Microsoft.Compute/snapshots";
/// Tag naming the VM a snapshot belongs to.
pub const TAG_VM: &str = "homeward-vm";
/// Tag naming the VM-level snapshot (its id).
pub const TAG_NAME: &str = "homeward-snapshot";
/// Tag naming the disk a snapshot copies.
pub const TAG_DISK: &str = "homeward-disk";

/// Every snapshot in the subscription.
pub fn all(site: &Site) -> Result<Vec<Value>, AdapterError> {
    site.list_all(SNAPSHOT)
}

fn tag<'a>(s: &'a Value, key: &str) -> &'a str {
    s["tags"][key].as_str().unwrap_or_default()
}

/// The Azure snapshots that make up VM snapshot `name` of `vm`.
pub fn parts<'a>(snaps: &'a [Value], vm: &str, name: &str) -> Vec<&'a Value> {
    snaps.iter().filter(|s| same_id(tag(s, TAG_VM), vm) && tag(s, TAG_NAME) == name).collect()
}

/// The VM-level snapshots of `vm`, oldest first, each the parent of the next.
pub fn of_vm(snaps: &[Value], vm: &str) -> Vec<SnapshotInfo> {
    let mut by_name: Vec<(String, String)> = Vec::new();
    for s in snaps.iter().filter(|s| same_id(tag(s, TAG_VM), vm)) {
        let name = tag(s, TAG_NAME).to_string();
        let created = s["properties"]["timeCreated"].as_str().unwrap_or_default().to_string();
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) if created < *c => *c = created,
            Some(_) => {}
            None => by_name.push((name, created)),
        }
    }
    by_name.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let mut out: Vec<SnapshotInfo> = Vec::new();
    for (name, created) in by_name {
        let parent = out.last().map(|p| p.id.clone());
        out.push(SnapshotInfo { id: name.clone(), name, created, quiesced: false, parent });
    }
    out
}

/// The Azure snapshot name for VM snapshot `name` of a disk.
pub fn resource_name(disk_name: &str, name: &str) -> String {
    format!("{disk_name}-{name}")
}

/// The Azure snapshot of `disk` for VM snapshot `name`, if it exists.
pub fn of_disk(site: &Site, disk: &str, name: &str) -> Result<Option<Value>, AdapterError> {
    let (sub, rg, disk_name) = require_type(disk, "Microsoft.Compute/disks", "disk")?;
    let path = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{SNAPSHOT}/{}", resource_name(&disk_name, name));
    let found = site.arm.get_opt(&format!("reading snapshot {name} of disk {disk}"), &path)?;
    Ok(found.filter(|s| same_id(tag(s, TAG_DISK), disk)))
}
