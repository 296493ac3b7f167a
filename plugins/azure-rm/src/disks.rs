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

/// The resource type of managed disks.
pub const DISK: &str = "Microsoft.Compute/disks";

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
    // Changes of a snapshot since itself: a second grant on it would replace the SAS just
    // granted, so the one grant serves both sides.
    let prev_id = prev_id.filter(|id| *id != snap_id);
    let result = (|| {
        let prev_sas = match &prev_id {
            Some(id) => Some(grant(site, id, false)?),
            None if previous.is_some() => Some(sas.clone()),
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
    if vm.is_empty() {
        return open_standalone(site, disk, snapshot, mode);
    }
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

/// `open` of a disk attached to no VM: a replica being uploaded (read-write) or finished
/// (read-only). Azure grants write access only while the upload is open.
fn open_standalone(site: &Site, disk: &str, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
    if let Some(s) = snapshot {
        return Err(error::invalid(format!("disk {disk}: snapshots of standalone disks are not kept; open it without snapshot `{s}`")));
    }
    crate::site::require_type(disk, DISK, "disk")?;
    let d = site.arm.get_opt(&format!("reading disk {disk}"), disk)?.ok_or_else(|| error::not_found(format!("disk {disk} does not exist")))?;
    if let Some(owner) = d["managedBy"].as_str().filter(|o| !o.is_empty()) {
        return Err(error::invalid(format!("disk {disk} is attached to VM {owner}; open it with that VM's id")));
    }
    let write = mode == AccessMode::ReadWrite;
    let state = d["properties"]["diskState"].as_str().unwrap_or_default().to_string();
    let uploading = state.eq_ignore_ascii_case("ReadyToUpload") || state.eq_ignore_ascii_case("ActiveUpload");
    if write && !uploading {
        return Err(error::conflict(format!("disk {disk} is {state}: its upload was finished by closing it, so it only opens read-only now")));
    }
    let resource = d["id"].as_str().unwrap_or(disk).to_string();
    let url = grant(site, &resource, write)?;
    let handle = format!("{resource}#{}", homeward_sdk::azure::ops::new_id()?);
    Ok(DiskAccess { handle, locator: Locator::PageBlob(PageBlobLocator { url, format: DiskFormat::VhdFixed }), capacity_bytes: disk_bytes(&d), read_only: !write })
}

/// `disks.create-disk`: an upload disk of exactly the capacity plus the fixed VHD footer,
/// written through a write SAS until it is closed.
pub fn create_disk(site: &Site, spec: homeward_sdk::disks::NewDisk) -> Result<Operation, AdapterError> {
    crate::site::check_name(&spec.name, "disk name")?;
    if spec.capacity_bytes == 0 || !spec.capacity_bytes.is_multiple_of(PAGE) {
        return Err(error::invalid(format!("disk {}: capacity {} must be a non-zero multiple of 512 bytes", spec.name, spec.capacity_bytes)));
    }
    let id = site.resource(DISK, &spec.name);
    if let Some(d) = site.arm.get_opt(&format!("reading disk {}", spec.name), &id)? {
        let attached = d["managedBy"].as_str().is_some_and(|o| !o.is_empty());
        if disk_bytes(&d) == spec.capacity_bytes && !attached {
            return homeward_sdk::azure::ops::completed(Some(d["id"].as_str().unwrap_or(&id).to_string()));
        }
        return Err(error::already_exists(format!(
            "disk {} already exists ({id}) with {} bytes{}; nothing was created",
            spec.name,
            disk_bytes(&d),
            if attached { ", attached to a VM" } else { "" }
        )));
    }
    let mut properties = json!({"creationData": {"createOption": "Upload", "uploadSizeBytes": spec.capacity_bytes + PAGE}});
    if let Some(os) = &spec.guest_os {
        properties["osType"] = json!(if os.to_ascii_lowercase().contains("win") { "Windows" } else { "Linux" });
    }
    let body = json!({"location": site.location()?, "sku": {"name": "Standard_LRS"}, "properties": properties});
    let (_, pending) = site.arm.start(&format!("creating disk {}", spec.name), "PUT", &id, Some(&body))?;
    crate::operations::start(pending.into_iter().collect(), Vec::new(), Some(id))
}

/// `disks.delete-disk`: a standalone disk only; an attached one is `conflict`.
pub fn delete_disk(site: &Site, disk: &str) -> Result<Operation, AdapterError> {
    crate::site::require_type(disk, DISK, "disk")?;
    let d = site.arm.get_opt(&format!("reading disk {disk}"), disk)?.ok_or_else(|| error::not_found(format!("disk {disk} does not exist")))?;
    if let Some(owner) = d["managedBy"].as_str().filter(|o| !o.is_empty()) {
        return Err(error::conflict(format!("disk {disk} is attached to VM {owner}; delete the VM or detach the disk first")));
    }
    let (_, pending) = site.arm.start(&format!("deleting disk {disk}"), "DELETE", disk, None)?;
    crate::operations::start(pending.into_iter().collect(), Vec::new(), Some(disk.to_string()))
}
