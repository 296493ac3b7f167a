//! `disks.open`, `close`, `read` and `write`. Handles live in the key-value store (key
//! `handle/<id>`), so they survive the host re-instantiating the adapter between calls.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use homeward_sdk::disks::{DiskAccess, DiskFormat, FileLocator, Locator};
use homeward_sdk::{AdapterError, error};
use serde::{Deserialize, Serialize};

use crate::layout::{Site, Transport};
use crate::snapshots::{self, SnapshotFile, read_full};
use crate::store::Store;
use crate::util::io_error;
use crate::vm_file::VmFile;

/// The most `read` returns and `write` accepts in one call.
pub const MAX_IO: u64 = 4 * 1024 * 1024;

const SEQ_KEY: &str = "seq/handle";

/// What a handle refers to.
#[derive(Debug, Serialize, Deserialize)]
struct HandleRecord {
    path: String,
    capacity: u64,
    read_only: bool,
    served: bool,
}

fn key(handle: &str) -> String {
    format!("handle/{handle}")
}

/// Opens a disk, or its copy in `snapshot` (read-only), and records a handle.
pub fn open(
    site: &Site,
    store: &dyn Store,
    vm: &str,
    disk: &str,
    snapshot: Option<&str>,
    read_write: bool,
) -> Result<DiskAccess, AdapterError> {
    let file = VmFile::load(site, vm)?;
    let (path, capacity) = match snapshot {
        Some(snap_id) => {
            if read_write {
                return Err(error::invalid(format!(
                    "snapshot {snap_id} of VM {vm} is read-only: open it read-only"
                )));
            }
            let snap = SnapshotFile::load(site, vm, snap_id)?;
            let at = snap.disks.get(disk).ok_or_else(|| {
                error::not_found(format!(
                    "disk {disk} of VM {vm} is not in snapshot {snap_id}"
                ))
            })?;
            (
                snapshots::copy_file(site, vm, snap_id, disk),
                at.capacity_bytes,
            )
        }
        None => (site.disk_file(vm, disk), file.disk(disk)?.capacity_bytes),
    };
    File::open(&path).map_err(|e| io_error("opening the disk", &path, e))?;
    let served = site.transport == Transport::Served;
    let record = HandleRecord {
        path: path.display().to_string(),
        capacity,
        read_only: !read_write,
        served,
    };
    let handle = format!("h-{}", store.next_seq(SEQ_KEY)?);
    let text = toml::to_string(&record)
        .map_err(|e| error::internal(format!("encoding handle {handle}: {e}")))?;
    store.set(&key(&handle), text.as_bytes())?;
    let locator = if served {
        Locator::Served
    } else {
        Locator::File(FileLocator {
            path: record.path,
            format: DiskFormat::Raw,
            data_offset: 0,
        })
    };
    Ok(DiskAccess {
        handle,
        locator,
        capacity_bytes: capacity,
        read_only: !read_write,
    })
}

/// Forgets a handle; unknown handles are fine.
pub fn close(store: &dyn Store, handle: &str) -> Result<(), AdapterError> {
    store.delete(&key(handle))
}

fn load(store: &dyn Store, handle: &str) -> Result<HandleRecord, AdapterError> {
    let bytes = store
        .get(&key(handle))
        .ok_or_else(|| error::not_found(format!("disk handle `{handle}` is not open")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| error::internal(format!("handle {handle}: stored record is not UTF-8")))?;
    toml::from_str(&text)
        .map_err(|e| error::internal(format!("handle {handle}: stored record is corrupt: {e}")))
}

/// Loads a served handle and checks the range `[offset, offset + length)`.
fn served_range(
    store: &dyn Store,
    handle: &str,
    offset: u64,
    length: u64,
) -> Result<HandleRecord, AdapterError> {
    let record = load(store, handle)?;
    if !record.served {
        return Err(error::unsupported(format!(
            "handle {handle} has a file locator: read {} directly, or set `transport = \"served\"` in this plugin's config",
            record.path
        )));
    }
    if length > MAX_IO {
        return Err(error::invalid(format!(
            "{length} bytes in one call is more than the {MAX_IO} allowed: split the range"
        )));
    }
    if offset
        .checked_add(length)
        .is_none_or(|end| end > record.capacity)
    {
        return Err(error::invalid(format!(
            "range {offset}+{length} is past the end of the disk ({} bytes)",
            record.capacity
        )));
    }
    Ok(record)
}

/// Reads `length` bytes at `offset` through a served handle.
pub fn read(
    store: &dyn Store,
    handle: &str,
    offset: u64,
    length: u32,
) -> Result<Vec<u8>, AdapterError> {
    let record = served_range(store, handle, offset, u64::from(length))?;
    let path = std::path::Path::new(&record.path);
    let mut file = File::open(path).map_err(|e| io_error("opening the disk", path, e))?;
    let mut buf = vec![0u8; length as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| read_full(&mut file, &mut buf))
        .map_err(|e| io_error("reading the disk", path, e))?;
    Ok(buf)
}

/// Writes `data` at `offset` through a read-write served handle, durably.
pub fn write(
    store: &dyn Store,
    handle: &str,
    offset: u64,
    data: &[u8],
) -> Result<(), AdapterError> {
    let record = served_range(store, handle, offset, data.len() as u64)?;
    if record.read_only {
        return Err(error::denied(format!(
            "handle {handle} is read-only: open the disk read-write to write it"
        )));
    }
    let path = std::path::Path::new(&record.path);
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening the disk", path, e))?;
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.write_all(data))
        .and_then(|_| file.sync_data())
        .map_err(|e| io_error("writing the disk", path, e))
}
