//! Disk data: changed areas through `QueryChangedDiskAreas`, and `/folder` HTTP range
//! locators for the host's data movers.

use super::collector;
use super::inventory::{self, VirtualDisk, snapshot_ref, vm_ref};
use super::paths::{DatastorePath, folder_url};
use super::session::Client;
use super::site;
use crate::disks::{AccessMode, ChangeSet, DiskAccess, DiskFormat, HttpLocator, Locator};
use crate::error;
use crate::host;
use crate::soap::{Element, Node};
use crate::types::{AdapterError, Extent};

const HANDLE_PREFIX: &str = "vsphere/handle/";
const HANDLE_COUNTER: &str = "vsphere/handle-counter";

/// The disk as the snapshot froze it.
fn snapshot_disk(client: &Client, vm: &str, disk: &str, snapshot: &str) -> Result<VirtualDisk, AdapterError> {
    let snap = collector::of_object(client, &snapshot_ref(snapshot), &["config.hardware.device", "vm"]).map_err(|e| match e {
        AdapterError::NotFound(_) => error::not_found(format!("VM {vm} has no snapshot `{snapshot}`")),
        other => other,
    })?;
    if snap.moref("vm").is_some_and(|v| v.value != vm) {
        return Err(error::not_found(format!("snapshot `{snapshot}` does not belong to VM {vm}")));
    }
    let empty = Element::default();
    inventory::virtual_disks(snap.get("config.hardware.device").unwrap_or(&empty))
        .into_iter()
        .find(|d| d.key.to_string() == disk)
        .ok_or_else(|| error::not_found(format!("snapshot `{snapshot}` of VM {vm} has no disk `{disk}`")))
}

/// `QueryChangedDiskAreas` from `start` against the snapshot, as a change set whose next
/// change id is the snapshot's own for that disk.
pub fn changed_areas(client: &Client, vm: &str, disk: &str, snapshot: &str, since: &str, start: u64) -> Result<ChangeSet, AdapterError> {
    if snapshot.is_empty() {
        return Err(error::invalid("changed-areas needs a snapshot: vSphere reads the changes of a running disk through one"));
    }
    if since.is_empty() {
        return Err(error::invalid("the change id is empty; pass `*` for every allocated extent"));
    }
    let o = inventory::vm_object(client, vm)?;
    let running = inventory::find_disk(&o, disk)?;
    let frozen = snapshot_disk(client, vm, disk, snapshot)?;
    let tracking = o.bool("config.changeTrackingEnabled").unwrap_or(false);
    if since != "*" && !tracking {
        return Err(error::unsupported(format!("change tracking is off for VM {vm}; enable it, then resync from `*`")));
    }
    if start > frozen.capacity {
        return Err(error::invalid(format!("start offset {start} is past the end of disk {disk} ({} bytes)", frozen.capacity)));
    }
    let args = [
        Node::moref("snapshot", &snapshot_ref(snapshot)),
        Node::text("deviceKey", running.key.to_string()),
        Node::text("startOffset", start.to_string()),
        Node::text("changeId", since),
    ];
    let what = format!("reading the changed areas of disk {disk} of VM {vm} since `{since}`");
    let resp = client.call("QueryChangedDiskAreas", &vm_ref(vm), &args).map_err(|f| match f.fault_kind() {
        // A change id from another tracking epoch: the caller must resync.
        Some("InvalidArgument") | Some("FileFault") => {
            error::invalid(format!("{what}: the change id is no longer valid for this disk (tracking was reset); resync from `*`"))
        }
        _ => f.into_error(&what),
    })?;
    let rv = resp.child("returnval").ok_or_else(|| error::internal(format!("{what}: the server returned no DiskChangeInfo")))?;
    let start_offset = rv.child_i64("startOffset").unwrap_or(start as i64).max(0) as u64;
    let length = rv.child_i64("length").unwrap_or(0).max(0) as u64;
    let mut changed: Vec<Extent> = rv
        .children_named("changedArea")
        .filter_map(|a| Some(Extent { offset: a.child_i64("start")?.max(0) as u64, length: a.child_i64("length")?.max(0) as u64 }))
        .filter(|e| e.length > 0)
        .collect();
    changed.sort_by_key(|e| e.offset);
    Ok(ChangeSet {
        start_offset,
        length,
        changed,
        // vSphere CBT reports trims and zeroing as written areas, never separately.
        cleared: Vec::new(),
        // Without tracking only a full copy is possible, so the next cycle starts from `*`.
        change_id: frozen.change_id.unwrap_or_else(|| "*".to_string()),
    })
}

fn datacenter_of(client: &Client, datastore: &str) -> Result<String, AdapterError> {
    let dcs = collector::all_of_type(client, "Datacenter", &["name", "datastore"])?;
    dcs.iter()
        .find(|o| o.get("datastore").is_some_and(|l| l.children.iter().any(|c| c.as_moref().is_some_and(|m| m.value == datastore))))
        .or(dcs.first())
        .map(|o| o.text("name"))
        .ok_or_else(|| error::internal("the site has no datacenter"))
}

/// Opens a disk (or its state at a snapshot, always read-only) as an HTTP range locator on
/// the datastore's `/folder` URL, authenticated by the session cookie.
pub fn open(client: &Client, vm: &str, disk: &str, snapshot: Option<&str>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
    let o = inventory::vm_object(client, vm)?;
    let running = inventory::find_disk(&o, disk)?;
    let read_only = snapshot.is_some() || mode == AccessMode::ReadOnly;
    if !read_only && o.text("runtime.powerState") == "poweredOn" {
        return Err(error::conflict(format!("disk {disk} of VM {vm} is locked by the running VM; power it off to open it read-write")));
    }
    let d = match snapshot {
        Some(s) => snapshot_disk(client, vm, disk, s)?,
        None => running,
    };
    let descriptor = DatastorePath::parse(&d.file_name).ok_or_else(|| error::internal(format!("disk {disk} of VM {vm} has the unreadable path `{}`", d.file_name)))?;
    let flat = descriptor
        .flat_extent()
        .ok_or_else(|| error::unsupported(format!("disk {disk} of VM {vm} (`{}`) is not a flat VMDK this adapter can locate", d.file_name)))?;
    let ds_ref = d.datastore.clone().map(|m| m.value).unwrap_or_default();
    let mut privileges = vec!["Datastore.Browse"];
    if !read_only {
        privileges.push("Datastore.FileManagement");
    }
    if let Some(ds) = &d.datastore {
        site::require_privileges(client, ds, &privileges, &format!("opening disk {disk} of VM {vm}"))?;
    }
    let dc = datacenter_of(client, &ds_ref)?;
    let url = folder_url(&client.endpoint().base_url(), &dc, &flat);
    let n = host::kv_get(HANDLE_COUNTER).and_then(|b| String::from_utf8(b).ok()).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
    host::kv_set(HANDLE_COUNTER, n.to_string().as_bytes())?;
    let handle = format!("{vm}/{disk}/{n}");
    host::kv_set(&format!("{HANDLE_PREFIX}{handle}"), url.as_bytes())?;
    Ok(DiskAccess {
        handle,
        locator: Locator::HttpRange(HttpLocator { url, headers: vec![("Cookie".into(), client.cookie()?)], format: DiskFormat::VmdkFlat, data_offset: 0 }),
        capacity_bytes: d.capacity,
        read_only,
    })
}

/// Forgets a handle; unknown handles are fine.
pub fn close(handle: &str) -> Result<(), AdapterError> {
    host::kv_delete(&format!("{HANDLE_PREFIX}{handle}"))
}

/// `read`/`write` through the adapter: this adapter hands out HTTP range locators instead.
pub fn not_served(handle: &str) -> AdapterError {
    if host::kv_get(&format!("{HANDLE_PREFIX}{handle}")).is_none() {
        return error::not_found(format!("no open disk handle `{handle}`"));
    }
    error::unsupported(format!("handle `{handle}` is an HTTP range locator: read and write the locator's URL, not through the adapter"))
}
