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
