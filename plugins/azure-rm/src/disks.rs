//! Disk data: changed areas from incremental-snapshot page diffs, and page-blob SAS
//! locators granted with `beginGetAccess` and revoked with `endGetAccess`.

use homeward_sdk::azure::blob::{PAGE, page_ranges_by_sas};
use homeward_sdk::compute::Operation;
use homeward_sdk::disks::{AccessMode, ChangeSet, DiskAccess, DiskFormat, Locator, PageBlobLocator};
use homeward_sdk::error;
use homeward_sdk::types::AdapterError;
use serde_json::{Value, json};

use crate::compute::vm_with_disk;
use crate::inventory::disk_bytes;
use crate::site::Site;
use crate::snapshots;

/// How long a granted SAS lives; `close` revokes it sooner.
const ACCESS_SECS: u64 = 8 * 3600;

/// Grants SAS access to a disk or snapshot and returns the URL.
fn grant(site: &Site, resource: &str, write: bool) -> Result<String, AdapterError> {
    let what = format!("granting {} access to {resource}", if write { "write" } else { "read" });
    let body = json!({"access": if write { "Write" } else { "Read" }, "durationInSeconds": ACCESS_SECS});
    let (resp, pending) = site.arm.start(&what, "POST", &format!("{resource}/beginGetAccess"), Some(&body))?;
    let output = match pending {
        Some(p) => site.arm.wait(&what, &p)?,
        None => serde_json::from_slice(&resp.body).ok(),
    };
    output
        .and_then(|o| o["accessSAS"].as_str().map(str::to_string))
        .ok_or_else(|| error::internal(format!("{what}: Resource Manager finished beginGetAccess without an accessSAS")))
}

/// Revokes SAS access; a resource that is gone has nothing to revoke.
fn revoke(site: &Site, resource: &str) -> Result<(), AdapterError> {
    let what = format!("revoking access to {resource}");
    match site.arm.start(&what, "POST", &format!("{resource}/endGetAccess"), None) {
        Ok((_, Some(p))) => site.arm.wait(&what, &p).map(|_| ()),
        Ok((_, None)) | Err(AdapterError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn snapshot_of(site: &Site, vm: &str, disk: &str, name: &str) -> Result<Value, AdapterError> {
    snapshots::of_disk(site, disk, name)?.ok_or_else(|| error::not_found(format!("VM {vm} has no snapshot `{name}` of disk {disk}")))
}

/// `disks.enable-change-tracking`: managed disks are always tracked by incremental
/// snapshots, so this only checks the disk.
pub fn enable_change_tracking(site: &Site, vm: &str, disk: &str) -> Result<Operation, AdapterError> {
    vm_with_disk(site, vm, disk)?;
    homeward_sdk::azure::ops::completed(Some(disk.to_string()))
}

/// `disks.changed-areas`: the page diff between the snapshot of `since` (the change id is
/// the VM snapshot name) and `snapshot`; `"*"` lists every written page.
pub fn changed_areas(site: &Site, vm: &str, disk: &str, snapshot: &str, since: &str, start: u64) -> Result<ChangeSet, AdapterError> {
    vm_with_disk(site, vm, disk)?;
    let snap = snapshot_of(site, vm, disk, snapshot)?;
    let capacity = disk_bytes(&snap);
    if !start.is_multiple_of(PAGE) || start >= capacity {
        return Err(error::invalid(format!("start offset {start} must be a multiple of 512 below the disk's capacity {capacity}")));
    }
    let previous = match since {
        "*" => None,
        id => Some(snapshots::of_disk(site, disk, id)?.ok_or_else(|| {
            error::invalid(format!("change id `{id}` names no snapshot of disk {disk} any more; resync the disk with change id \"*\""))
        })?),
    };
    let snap_id = snap["id"].as_str().unwrap_or_default().to_string();
    let prev_id = previous.as_ref().map(|p| p["id"].as_str().unwrap_or_default().to_string());
    let sas = grant(site, &snap_id, false)?;
    let result = (|| {
        let prev_sas = match &prev_id {
            Some(id) => Some(grant(site, id, false)?),
            None => None,
        };
        let list = page_ranges_by_sas(&format!("page ranges of snapshot {snapshot} of disk {disk}"), &sas, prev_sas.as_deref(), Some((start, capacity)));
        if let Some(id) = &prev_id {
            revoke(site, id)?;
        }
        list
    })();
    revoke(site, &snap_id)?;
    let (changed, cleared) = result?.extents(start, capacity);
    Ok(ChangeSet { start_offset: start, length: capacity - start, changed, cleared, change_id: snapshot.to_string() })
}

/// `disks.open`: a page-blob SAS locator for the disk or one of its snapshots. The handle
/// is the resource id the grant was made on, plus a unique suffix.
pub fn open(site: &Site, vm: &str, disk: &str, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
    vm_with_disk(site, vm, disk)?;
    let (resource, capacity, read_only) = match &snapshot {
        Some(name) => {
            let s = snapshot_of(site, vm, disk, name)?;
            (s["id"].as_str().unwrap_or_default().to_string(), disk_bytes(&s), true)
        }
        None => {
            let d = site.arm.get(&format!("reading disk {disk}"), disk)?;
            (d["id"].as_str().unwrap_or(disk).to_string(), disk_bytes(&d), mode == AccessMode::ReadOnly)
        }
    };
    let url = grant(site, &resource, !read_only)?;
    // A fresh suffix per call: each open is its own handle, as the contract wants.
    let handle = format!("{resource}#{}", homeward_sdk::azure::ops::new_id()?);
    Ok(DiskAccess { handle, locator: Locator::PageBlob(PageBlobLocator { url, format: DiskFormat::VhdFixed }), capacity_bytes: capacity, read_only })
}

/// `disks.close`: ends the SAS grant.
pub fn close(site: &Site, handle: &str) -> Result<(), AdapterError> {
    let resource = handle.split('#').next().unwrap_or_default();
    if homeward_sdk::azure::arm::parse_id(resource).is_none() {
        return Ok(());
    }
    revoke(site, resource)
}
