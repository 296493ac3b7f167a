//! Disk data: changed areas from Get Page Ranges with `prevsnapshot` between two blob
//! snapshots, and page-blob SAS locators signed with the storage key.

use homeward_sdk::azure::blob::{PAGE, PageList};
use homeward_sdk::azure::{clock, encode};
use homeward_sdk::compute::Operation;
use homeward_sdk::disks::{AccessMode, ChangeSet, DiskAccess, DiskFormat, Locator, PageBlobLocator};
use homeward_sdk::error;
use homeward_sdk::types::AdapterError;

use crate::site::Site;
use crate::snapshots;

/// How long a signed SAS lives (a service SAS cannot be revoked, so keep it bounded).
const SAS_SECS: u64 = 8 * 3600;

/// `disks.enable-change-tracking`: VHDs are always tracked by blob snapshots.
pub fn enable_change_tracking(site: &Site, vm: &str, disk: &str) -> Result<Operation, AdapterError> {
    site.role(vm)?.disk(disk)?;
    homeward_sdk::azure::ops::completed(Some(disk.to_string()))
}

/// `disks.changed-areas`: the change id is the VM snapshot name; `"*"` lists every written
/// page of the snapshot.
pub fn changed_areas(site: &Site, vm: &str, disk: &str, snapshot: &str, since: &str, start: u64) -> Result<ChangeSet, AdapterError> {
    let role = site.role(vm)?;
    let d = role.disk(disk)?;
    let stamp = snapshots::stamp(&role.id(), snapshot, &d.name).ok_or_else(|| snapshots::missing(vm, snapshot))?;
    let capacity = site.vhd_bytes(&d.media, Some(&stamp))?;
    if !start.is_multiple_of(PAGE) || start >= capacity {
        return Err(error::invalid(format!("start offset {start} must be a multiple of 512 below the disk's capacity {capacity}")));
    }
    let mut url = format!("{}?comp=pagelist&snapshot={}", site.blob(&d.media)?.url(), encode(&stamp));
    if since != "*" {
        let prev = snapshots::stamp(&role.id(), since, &d.name)
            .ok_or_else(|| error::invalid(format!("change id `{since}` names no snapshot of disk {disk} any more; resync the disk with change id \"*\"")))?;
        url.push_str(&format!("&prevsnapshot={}", encode(&prev)));
    }
    let headers = vec![("x-ms-range".to_string(), format!("bytes={start}-{}", capacity - 1))];
    let resp = site.storage.send(&format!("page ranges of snapshot {snapshot} of disk {disk}"), "GET", &url, headers, Vec::new())?;
    let (changed, cleared) = PageList::parse(&resp.body)?.extents(start, capacity);
    Ok(ChangeSet { start_offset: start, length: capacity - start, changed, cleared, change_id: snapshot.to_string() })
}

/// `disks.open`: a SAS URL to the VHD (read-write when asked) or to one of its snapshots
/// (always read-only).
pub fn open(site: &Site, vm: &str, disk: &str, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
    if vm.is_empty() {
        return open_standalone(site, disk, snapshot, mode);
    }
    let role = site.role(vm)?;
    let d = role.disk(disk)?;
    let blob = site.blob(&d.media)?;
    let expiry = clock::unix_now() + SAS_SECS;
    let (url, capacity, read_only) = match &snapshot {
        Some(name) => {
            let stamp = snapshots::stamp(&role.id(), name, &d.name).ok_or_else(|| snapshots::missing(vm, name))?;
            (site.storage.sas_url(&blob, "r", expiry, Some(&stamp)), site.vhd_bytes(&d.media, Some(&stamp))?, true)
        }
        None => {
            let read_only = mode == AccessMode::ReadOnly;
            (site.storage.sas_url(&blob, if read_only { "r" } else { "rw" }, expiry, None), site.vhd_bytes(&d.media, None)?, read_only)
        }
    };
    let handle = format!("{}#{}", role.id(), homeward_sdk::azure::ops::new_id()?);
    Ok(DiskAccess { handle, locator: Locator::PageBlob(PageBlobLocator { url, format: DiskFormat::VhdFixed }), capacity_bytes: capacity, read_only })
}

/// Where standalone replica VHDs live in the storage account.
const REPLICA_CONTAINER: &str = "homeward-replicas";

/// The role using a VHD, if any.
fn user_of(site: &Site, media: &str) -> Result<Option<String>, AdapterError> {
    Ok(site.all_roles()?.into_iter().find(|r| r.disks.iter().any(|d| d.media.eq_ignore_ascii_case(media))).map(|r| r.id()))
}

/// `open` of a standalone VHD (a replica): a SAS URL, read-write while no role uses it.
fn open_standalone(site: &Site, disk: &str, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
    if let Some(s) = snapshot {
        return Err(error::invalid(format!("disk {disk}: snapshots of standalone disks are not kept; open it without snapshot `{s}`")));
    }
    let blob = site.blob(disk)?;
    let capacity = match site.vhd_bytes(disk, None) {
        Err(AdapterError::NotFound(_)) => return Err(error::not_found(format!("disk {disk} does not exist"))),
        other => other?,
    };
    let read_only = mode == AccessMode::ReadOnly;
    if !read_only && let Some(role) = user_of(site, disk)? {
        return Err(error::conflict(format!("disk {disk} is the disk of VM {role}; it opens read-write only through that VM")));
    }
    let url = site.storage.sas_url(&blob, if read_only { "r" } else { "rw" }, clock::unix_now() + SAS_SECS, None);
    let handle = format!("{disk}#{}", homeward_sdk::azure::ops::new_id()?);
    Ok(DiskAccess { handle, locator: Locator::PageBlob(PageBlobLocator { url, format: DiskFormat::VhdFixed }), capacity_bytes: capacity, read_only })
}

/// `disks.create-disk`: a page blob of the capacity plus the VHD footer in the replica
/// container; the id is its URL. Idempotent for the same name and capacity.
pub fn create_disk(site: &Site, spec: homeward_sdk::disks::NewDisk) -> Result<Operation, AdapterError> {
    let ok_name = !spec.name.is_empty() && spec.name.len() <= 200 && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok_name {
        return Err(error::invalid(format!("disk name `{}` must be letters, digits, '-' or '_'", spec.name)));
    }
    if spec.capacity_bytes == 0 || !spec.capacity_bytes.is_multiple_of(PAGE) {
        return Err(error::invalid(format!("disk {}: capacity {} must be a non-zero multiple of 512 bytes", spec.name, spec.capacity_bytes)));
    }
    let url = format!("{}/{REPLICA_CONTAINER}/{}.vhd", site.blob_endpoint.trim_end_matches('/'), spec.name);
    match site.vhd_bytes(&url, None) {
        Ok(size) if size == spec.capacity_bytes && user_of(site, &url)?.is_none() => return homeward_sdk::azure::ops::completed(Some(url)),
        Ok(size) => return Err(error::already_exists(format!("disk {} already exists ({url}) with {size} bytes or in use; nothing was created", spec.name))),
        Err(AdapterError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let container = format!("{}/{REPLICA_CONTAINER}?restype=container", site.blob_endpoint.trim_end_matches('/'));
    match site.storage.send(&format!("creating container {REPLICA_CONTAINER}"), "PUT", &container, Vec::new(), Vec::new()) {
        Ok(_) | Err(AdapterError::AlreadyExists(_)) | Err(AdapterError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    let headers = vec![("x-ms-blob-type".to_string(), "PageBlob".to_string()), ("x-ms-blob-content-length".to_string(), (spec.capacity_bytes + PAGE).to_string())];
    site.storage.send(&format!("creating disk {}", spec.name), "PUT", &url, headers, Vec::new())?;
    homeward_sdk::azure::ops::completed(Some(url))
}

/// `disks.delete-disk`: a standalone VHD no role uses.
pub fn delete_disk(site: &Site, disk: &str) -> Result<Operation, AdapterError> {
    if let Some(role) = user_of(site, disk)? {
        return Err(error::conflict(format!("disk {disk} is the disk of VM {role}; delete the VM first")));
    }
    match site.storage.send(&format!("deleting disk {disk}"), "DELETE", &site.blob(disk)?.url(), Vec::new(), Vec::new()) {
        Ok(_) => homeward_sdk::azure::ops::completed(Some(disk.to_string())),
        Err(AdapterError::NotFound(_)) => Err(error::not_found(format!("disk {disk} does not exist"))),
        Err(e) => Err(e),
    }
}
