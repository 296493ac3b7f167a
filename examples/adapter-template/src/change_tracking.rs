//! Change tracking by block hashes kept in the key-value store.
//!
//! When a snapshot of a tracked disk is taken, the hash of every 64 KiB block of the copy
//! is recorded under a new change id: key `ct/<vm>/<disk>/<change-id>/<segment>`, one
//! binary value per 4 GiB segment (see `blocks::encode_segment`). `changed-areas` loads the
//! snapshot's hashes and those of the caller's change id and compares them. A change id is
//! `<snapshot number>-<first 8 hex digits of the disk UUID>`: the number orders ids, and
//! the UUID part keeps an id of a deleted disk from matching a new disk with its label.
//!
//! Once a caller asks for changes since id N, it has everything up to N, so ids older than
//! N are superseded and their hashes are deleted.

use std::path::Path;

use homeward_sdk::{AdapterError, error};

use crate::blocks::{self, BLOCK_SIZE, BlockHash, Diff, SEGMENT_BLOCKS, SegmentHeader, Span};
use crate::layout::Site;
use crate::snapshots::{self, SnapshotFile};
use crate::store::Store;
use crate::vm_file::VmFile;

/// The `since-change-id` that asks for every block holding data.
pub const ALL: &str = "*";

/// Bytes of disk one segment covers.
pub const SEGMENT_BYTES: u64 = SEGMENT_BLOCKS * BLOCK_SIZE;

/// The change id of a disk at snapshot number `seq`.
pub fn change_id(seq: u64, disk_uuid: &str) -> String {
    let tag: String = disk_uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    format!("{seq}-{tag}")
}

fn seq_of(change_id: &str) -> Option<u64> {
    change_id.split_once('-')?.0.parse().ok()
}

fn disk_prefix(vm: &str, disk: &str) -> String {
    format!("ct/{vm}/{disk}/")
}

fn key(vm: &str, disk: &str, change_id: &str, segment: u64) -> String {
    format!("ct/{vm}/{disk}/{change_id}/{segment:06}")
}

/// Writes the hashes of segments of one disk under one change id as they are computed.
pub struct Recorder<'a> {
    store: &'a dyn Store,
    vm: &'a str,
    disk: &'a str,
    change_id: &'a str,
    disk_uuid: &'a str,
    capacity: u64,
}

impl<'a> Recorder<'a> {
    /// A recorder for `disk` of `vm` (UUID and capacity as of the snapshot).
    pub fn new(
        store: &'a dyn Store,
        vm: &'a str,
        disk: &'a str,
        change_id: &'a str,
        disk_uuid: &'a str,
        capacity: u64,
    ) -> Self {
        Recorder {
            store,
            vm,
            disk,
            change_id,
            disk_uuid,
            capacity,
        }
    }

    /// Stores segment `index`.
    pub fn segment(&self, index: u64, hashes: &[BlockHash]) -> Result<(), AdapterError> {
        let header = SegmentHeader {
            disk_uuid: self.disk_uuid.to_string(),
            capacity: self.capacity,
            index: u32::try_from(index)
                .map_err(|_| error::invalid(format!("disk {} is too large to track", self.disk)))?,
        };
        self.store.set(
            &key(self.vm, self.disk, self.change_id, index),
            &blocks::encode_segment(&header, hashes),
        )
    }
}

/// Whether every segment of `change_id` is stored.
fn is_recorded(store: &dyn Store, vm: &str, disk: &str, change_id: &str, capacity: u64) -> bool {
    (0..blocks::segment_count(capacity)).all(|s| store.get(&key(vm, disk, change_id, s)).is_some())
}

/// Loads one segment, checking that it was taken from the disk the caller means.
fn load_segment(
    store: &dyn Store,
    vm: &str,
    disk: &str,
    change_id: &str,
    segment: u64,
    disk_uuid: &str,
    capacity: u64,
) -> Result<Vec<BlockHash>, AdapterError> {
    let k = key(vm, disk, change_id, segment);
    let stale = || resync(vm, disk, change_id);
    let bytes = store.get(&k).ok_or_else(stale)?;
    let (header, hashes) = blocks::decode_segment(&bytes)
        .map_err(|e| error::internal(format!("change-tracking record `{k}` is corrupt: {e}")))?;
    if header.disk_uuid != disk_uuid
        || header.capacity != capacity
        || u64::from(header.index) != segment
    {
        return Err(stale());
    }
    Ok(hashes)
}

fn resync(vm: &str, disk: &str, change_id: &str) -> AdapterError {
    error::invalid(format!(
        "change id `{change_id}` is not known for disk {disk} of VM {vm} (superseded, from another disk, or never issued): resync the disk with since-change-id \"*\""
    ))
}

/// Deletes the hashes of every change id of the disk older than `seq`.
fn prune_before(store: &dyn Store, vm: &str, disk: &str, seq: u64) -> Result<(), AdapterError> {
    let prefix = disk_prefix(vm, disk);
    for k in store.keys(&prefix) {
        let old = k[prefix.len()..].split('/').next().and_then(seq_of);
        if old.is_some_and(|old| old < seq) {
            store.delete(&k)?;
        }
    }
    Ok(())
}

/// Deletes every change id of one disk (detached or deleted).
pub fn forget_disk(store: &dyn Store, vm: &str, disk: &str) -> Result<(), AdapterError> {
    store.delete_prefix(&disk_prefix(vm, disk))
}

/// Deletes every change id of a VM's disks (VM deleted).
pub fn forget_vm(store: &dyn Store, vm: &str) -> Result<(), AdapterError> {
    store.delete_prefix(&format!("ct/{vm}/"))
}

/// Hashes a file of `capacity` bytes (a snapshot copy) into a recorder.
pub fn record_file(
    path: &Path,
    capacity: u64,
    recorder: &Recorder<'_>,
) -> Result<(), AdapterError> {
    snapshots::scan_disk(path, capacity, None, |index, hashes| {
        recorder.segment(index, hashes)
    })
}

/// The answer to `changed-areas`: the range covered, what changed in it, and the change id
/// as of the snapshot.
#[derive(Debug)]
pub struct ChangedAreas {
    /// The range of the disk this answer covers.
    pub window: Span,
    /// Changed and cleared extents within `window`.
    pub diff: Diff,
    /// The change id to pass next cycle.
    pub change_id: String,
}

/// Compares `disk` of `vm` at `snapshot` with its state at `since` (or with zeros for
/// `"*"`), from `start` to the end of the 4 GiB segment holding `start`.
pub fn changed_areas(
    site: &Site,
    store: &dyn Store,
    vm: &str,
    disk: &str,
    snapshot: &str,
    since: &str,
    start: u64,
) -> Result<ChangedAreas, AdapterError> {
    let file = VmFile::load(site, vm)?;
    let current = file.disk(disk)?;
    if !current.change_tracking {
        return Err(error::unsupported(format!(
            "change tracking is off for disk {disk} of VM {vm}: call enable-change-tracking, take a new snapshot and start from \"*\""
        )));
    }
    let snap = SnapshotFile::load(site, vm, snapshot)?;
    let at_snapshot = snap
        .disks
        .get(disk)
        .filter(|d| d.uuid == current.uuid)
        .ok_or_else(|| {
            error::not_found(format!(
                "disk {disk} of VM {vm} is not in snapshot {snapshot}: it was attached after it"
            ))
        })?;
    let capacity = at_snapshot.capacity_bytes;
    if start > capacity {
        return Err(error::invalid(format!(
            "start offset {start} is past the end of disk {disk} ({capacity} bytes)"
        )));
    }
    let change_id = ensure_recorded(site, store, vm, disk, snapshot, &snap)?;
    if start == capacity {
        let window = Span {
            offset: start,
            length: 0,
        };
        return Ok(ChangedAreas {
            window,
            diff: Diff::default(),
            change_id,
        });
    }
    let segment = start / SEGMENT_BYTES;
    let window = Span {
        offset: start,
        length: ((segment + 1) * SEGMENT_BYTES).min(capacity) - start,
    };
    let new = load_segment(
        store,
        vm,
        disk,
        &change_id,
        segment,
        &current.uuid,
        capacity,
    )?;
    let old = if since == ALL {
        None
    } else {
        let since_seq = seq_of(since).ok_or_else(|| resync(vm, disk, since))?;
        if !is_recorded(store, vm, disk, since, capacity) {
            return Err(resync(vm, disk, since));
        }
        let old = load_segment(store, vm, disk, since, segment, &current.uuid, capacity)?;
        if seq_of(&change_id).is_some_and(|s| since_seq <= s) {
            prune_before(store, vm, disk, since_seq)?;
        }
        Some(old)
    };
    let diff = blocks::diff(
        segment * SEGMENT_BLOCKS,
        old.as_deref(),
        &new,
        window,
        capacity,
    );
    Ok(ChangedAreas {
        window,
        diff,
        change_id,
    })
}

/// Returns the snapshot's change id for `disk`, hashing the snapshot copy first when its
/// hashes are missing: the snapshot predates enabling tracking, or the store lost them.
/// The copy never changes, so hashing it late gives the same answer as at snapshot time.
fn ensure_recorded(
    site: &Site,
    store: &dyn Store,
    vm: &str,
    disk: &str,
    snapshot: &str,
    snap: &SnapshotFile,
) -> Result<String, AdapterError> {
    let at_snapshot = &snap.disks[disk];
    let capacity = at_snapshot.capacity_bytes;
    if let Some(id) = &at_snapshot.change_id
        && is_recorded(store, vm, disk, id, capacity)
    {
        return Ok(id.clone());
    }
    let seq = snapshots::seq_of_id(snapshot).ok_or_else(|| {
        error::internal(format!(
            "snapshot id `{snapshot}` of VM {vm} was not issued by this adapter"
        ))
    })?;
    let id = change_id(seq, &at_snapshot.uuid);
    let recorder = Recorder::new(store, vm, disk, &id, &at_snapshot.uuid, capacity);
    record_file(
        &snapshots::copy_file(site, vm, snapshot, disk),
        capacity,
        &recorder,
    )?;
    if at_snapshot.change_id.as_deref() != Some(id.as_str()) {
        let mut updated = snap.clone();
        updated
            .disks
            .get_mut(disk)
            .expect("disk checked above")
            .change_id = Some(id.clone());
        updated.save(site, vm, snapshot)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_ids_order_by_snapshot_and_name_the_disk() {
        let id = change_id(12, "0a1b2c3d-4e5f-8000-8000-000000000000");
        assert_eq!(id, "12-0a1b2c3d");
        assert_eq!(seq_of(&id), Some(12));
        assert_eq!(seq_of("*"), None);
    }

    #[test]
    fn pruning_keeps_the_since_id_and_newer_ones() {
        let store = crate::store::MemStore::default();
        for cid in ["1-aa", "2-aa", "10-aa"] {
            store.set(&key("vm", "d", cid, 0), b"x").unwrap();
        }
        store.set(&key("vm", "d2", "1-bb", 0), b"x").unwrap();
        prune_before(&store, "vm", "d", 2).unwrap();
        assert_eq!(
            store.keys("ct/vm/d/"),
            vec![key("vm", "d", "10-aa", 0), key("vm", "d", "2-aa", 0)]
        );
        assert_eq!(store.keys("ct/vm/d2/").len(), 1);
    }
}
