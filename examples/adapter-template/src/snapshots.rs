//! Snapshots: a folder per snapshot holding a sparse copy of each disk and a
//! `snapshot.toml`. Copies skip all-zero 64 KiB blocks (the copy is created at full length
//! with `set_len` first), so a sparse disk stays sparse; WASI has no reflinks.
//!
//! ```toml
//! name = "before-upgrade"
//! created = "2026-11-22T00:00:00Z"
//! quiesced = false
//! parent = "snap-1"
//!
//! [disks.disk0]
//! capacity_bytes = 1073741824
//! uuid = "…"
//! change_id = "2-0a1b2c3d"
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use homeward_sdk::{AdapterError, error};
use serde::{Deserialize, Serialize};

use crate::blocks::{self, BLOCK_SIZE, BlockHash, SEGMENT_BLOCKS};
use crate::change_tracking::{self, Recorder};
use crate::layout::{Site, check_name, disk_file_name, write_atomic};
use crate::store::Store;
use crate::util::{io_error, now_rfc3339};
use crate::vm_file::VmFile;

const SNAPSHOT_FILE: &str = "snapshot.toml";
const ID_PREFIX: &str = "snap-";
const TMP_PREFIX: &str = ".tmp-";

/// A disk as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDisk {
    /// Capacity at the snapshot.
    pub capacity_bytes: u64,
    /// The disk's UUID, so a disk re-created under the same label is told apart.
    pub uuid: String,
    /// The change id whose block hashes describe this copy, when the disk is tracked.
    #[serde(default)]
    pub change_id: Option<String>,
}

/// The contents of `snapshot.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Unique per VM.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Whether the caller asked for quiescing. A directory site has no guest, so the flag
    /// is only recorded: the copy is as consistent as the files were.
    pub quiesced: bool,
    /// The snapshot that was newest when this one was taken.
    #[serde(default)]
    pub parent: Option<String>,
    /// The disks copied, by label.
    #[serde(default)]
    pub disks: BTreeMap<String, SnapshotDisk>,
}

/// The number in a snapshot id issued by this adapter (`snap-3` → 3).
pub fn seq_of_id(id: &str) -> Option<u64> {
    id.strip_prefix(ID_PREFIX)?.parse().ok()
}

/// The copy of disk `disk` in snapshot `snapshot`.
pub fn copy_file(site: &Site, vm: &str, snapshot: &str, disk: &str) -> PathBuf {
    site.snapshots_dir(vm)
        .join(snapshot)
        .join(disk_file_name(disk))
}

impl SnapshotFile {
    /// Reads snapshot `id` of VM `vm`; `not-found` when it does not exist.
    pub fn load(site: &Site, vm: &str, id: &str) -> Result<SnapshotFile, AdapterError> {
        let missing = || error::not_found(format!("VM {vm} has no snapshot `{id}`"));
        check_name("snapshot", id).map_err(|_| missing())?;
        let path = site.snapshots_dir(vm).join(id).join(SNAPSHOT_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                VmFile::load(site, vm)?;
                return Err(missing());
            }
            Err(e) => return Err(io_error("reading the snapshot description", &path, e)),
        };
        toml::from_str(&text).map_err(|e| {
            error::internal(format!(
                "{} is not a valid snapshot description: {e}",
                path.display()
            ))
        })
    }

    /// Writes the description back, atomically.
    pub fn save(&self, site: &Site, vm: &str, id: &str) -> Result<(), AdapterError> {
        self.save_in(&site.snapshots_dir(vm).join(id))
    }

    fn save_in(&self, dir: &Path) -> Result<(), AdapterError> {
        let text = toml::to_string(self)
            .map_err(|e| error::internal(format!("encoding snapshot {}: {e}", self.name)))?;
        write_atomic(&dir.join(SNAPSHOT_FILE), &text)
    }
}

/// The snapshots of VM `vm`, oldest first.
pub fn list(site: &Site, vm: &str) -> Result<Vec<(String, SnapshotFile)>, AdapterError> {
    let dir = site.snapshots_dir(vm);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing snapshots", &dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing snapshots", &dir, e))?;
        if let Ok(id) = entry.file_name().into_string()
            && !id.starts_with('.')
            && entry.path().join(SNAPSHOT_FILE).is_file()
        {
            ids.push(id);
        }
    }
    ids.sort_by_key(|id| (seq_of_id(id).unwrap_or(u64::MAX), id.clone()));
    ids.into_iter()
        .map(|id| SnapshotFile::load(site, vm, &id).map(|s| (id, s)))
        .collect()
}

/// Takes a snapshot of every disk of VM `vm`, recording block hashes for tracked disks,
/// and returns its id. A name already used on the VM is `already-exists`.
pub fn create(
    site: &Site,
    store: &dyn Store,
    vm: &str,
    name: &str,
    quiesce: bool,
) -> Result<String, AdapterError> {
    let mut file = VmFile::load(site, vm)?;
    if name.trim().is_empty() || name.len() > 256 {
        return Err(error::invalid(format!(
            "snapshot name `{name}` must be 1-256 characters"
        )));
    }
    let existing = list(site, vm)?;
    if let Some((id, _)) = existing.iter().find(|(_, s)| s.name == name) {
        return Err(error::already_exists(format!(
            "VM {vm} already has a snapshot named `{name}` ({id})"
        )));
    }
    let dir = site.snapshots_dir(vm);
    remove_leftovers(&dir)?;

    // Count before copying, so an id is never reused even if this call dies half-way.
    let newest = existing
        .iter()
        .filter_map(|(id, _)| seq_of_id(id))
        .max()
        .unwrap_or(0);
    file.snapshot_seq = file.snapshot_seq.max(newest) + 1;
    file.save(site)?;
    let seq = file.snapshot_seq;
    let id = format!("{ID_PREFIX}{seq}");

    let tmp = dir.join(format!("{TMP_PREFIX}{id}"));
    fs::create_dir_all(&tmp).map_err(|e| io_error("creating the snapshot folder", &tmp, e))?;
    let mut disks = BTreeMap::new();
    for (label, disk) in &file.disks {
        let src = site.disk_file(vm, label);
        let dst_path = tmp.join(disk_file_name(label));
        let mut dst = File::create(&dst_path)
            .map_err(|e| io_error("creating the snapshot copy", &dst_path, e))?;
        dst.set_len(disk.capacity_bytes)
            .map_err(|e| io_error("sizing the snapshot copy", &dst_path, e))?;
        let change_id = disk
            .change_tracking
            .then(|| change_tracking::change_id(seq, &disk.uuid));
        match &change_id {
            Some(cid) => {
                let recorder =
                    Recorder::new(store, vm, label, cid, &disk.uuid, disk.capacity_bytes);
                scan_disk(&src, disk.capacity_bytes, Some(&mut dst), |i, h| {
                    recorder.segment(i, h)
                })?;
            }
            None => scan_disk(&src, disk.capacity_bytes, Some(&mut dst), |_, _| Ok(()))?,
        }
        dst.sync_all()
            .map_err(|e| io_error("flushing the snapshot copy", &dst_path, e))?;
        disks.insert(
            label.clone(),
            SnapshotDisk {
                capacity_bytes: disk.capacity_bytes,
                uuid: disk.uuid.clone(),
                change_id,
            },
        );
    }
    let snapshot = SnapshotFile {
        name: name.to_string(),
        created: now_rfc3339(),
        quiesced: quiesce,
        parent: existing.last().map(|(id, _)| id.clone()),
        disks,
    };
    snapshot.save_in(&tmp)?;
    let final_dir = dir.join(&id);
    fs::rename(&tmp, &final_dir).map_err(|e| io_error("publishing the snapshot", &final_dir, e))?;
    Ok(id)
}

/// Removes snapshot `id`: its copies go, and its children take its parent. The live disks
/// already hold the newest data, so nothing needs consolidating.
pub fn remove(site: &Site, vm: &str, id: &str) -> Result<(), AdapterError> {
    let removed = SnapshotFile::load(site, vm, id)?;
    for (child_id, mut child) in list(site, vm)? {
        if child.parent.as_deref() == Some(id) {
            child.parent = removed.parent.clone();
            child.save(site, vm, &child_id)?;
        }
    }
    let dir = site.snapshots_dir(vm).join(id);
    fs::remove_dir_all(&dir).map_err(|e| io_error("removing the snapshot", &dir, e))
}

/// Deletes half-built snapshot folders a crashed call left behind.
fn remove_leftovers(dir: &Path) -> Result<(), AdapterError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            fs::remove_dir_all(entry.path())
                .map_err(|e| io_error("removing a half-built snapshot", &entry.path(), e))?;
        }
    }
    Ok(())
}

/// Blocks read per file-system call: each read crosses the sandbox, so reading 1 MiB at a
/// time keeps a large disk's snapshot well inside a call's deadline.
const BLOCKS_PER_READ: u64 = 16;

/// Reads a disk of `capacity` bytes, hashing each 64 KiB block and, when `copy_to` is
/// given, writing the blocks that hold data to it at the same offsets. Hashes are handed to
/// `on_segment` one 4 GiB segment at a time, so memory stays bounded for any disk size. A
/// file shorter than `capacity` reads as zeros past its end.
pub fn scan_disk(
    path: &Path,
    capacity: u64,
    copy_to: Option<&mut File>,
    on_segment: impl FnMut(u64, &[BlockHash]) -> Result<(), AdapterError>,
) -> Result<(), AdapterError> {
    scan(path, capacity, copy_to, SEGMENT_BLOCKS, on_segment)
}

/// [`scan_disk`] with the segment size as a parameter, so tests can cross segment
/// boundaries without gigabytes of disk.
fn scan(
    path: &Path,
    capacity: u64,
    mut copy_to: Option<&mut File>,
    segment_blocks: u64,
    mut on_segment: impl FnMut(u64, &[BlockHash]) -> Result<(), AdapterError>,
) -> Result<(), AdapterError> {
    let mut src = File::open(path).map_err(|e| io_error("opening the disk", path, e))?;
    let blocks = blocks::block_count(capacity);
    if blocks == 0 {
        return on_segment(0, &[]);
    }
    let mut buf = vec![0u8; (BLOCK_SIZE * BLOCKS_PER_READ) as usize];
    let mut hashes: Vec<BlockHash> = Vec::with_capacity(blocks.min(segment_blocks) as usize);
    let mut block = 0;
    while block < blocks {
        // Never read across a segment boundary, so each segment is flushed on time.
        let segment_end = (block / segment_blocks + 1) * segment_blocks;
        let count = BLOCKS_PER_READ.min(blocks - block).min(segment_end - block);
        let offset = block * BLOCK_SIZE;
        let len = (count * BLOCK_SIZE).min(capacity - offset) as usize;
        read_full(&mut src, &mut buf[..len]).map_err(|e| io_error("reading the disk", path, e))?;
        for (i, data) in buf[..len].chunks(BLOCK_SIZE as usize).enumerate() {
            let hash = blocks::hash_block(data);
            if let Some(dst) = copy_to.as_deref_mut()
                && hash != blocks::ZERO_BLOCK
            {
                dst.seek(SeekFrom::Start(offset + i as u64 * BLOCK_SIZE))
                    .and_then(|_| dst.write_all(data))
                    .map_err(|e| io_error("writing the snapshot copy of", path, e))?;
            }
            hashes.push(hash);
        }
        block += count;
        if block == segment_end || block == blocks {
            on_segment((block - 1) / segment_blocks, &hashes)?;
            hashes.clear();
        }
    }
    Ok(())
}

/// Fills `buf` from the reader's current position, with zeros past its end.
pub fn read_full(src: &mut File, buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[filled..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanning_hashes_every_block_copies_only_data_and_splits_segments() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.raw");
        let capacity = 20 * BLOCK_SIZE + 10;
        let mut data = vec![0u8; capacity as usize];
        data[(BLOCK_SIZE + 1) as usize] = 7;
        data[(17 * BLOCK_SIZE) as usize] = 9;
        // The file stops short of the capacity: the tail reads as zeros.
        fs::write(&src, &data[..(18 * BLOCK_SIZE) as usize]).unwrap();

        let dst_path = dir.path().join("dst.raw");
        let mut dst = File::create(&dst_path).unwrap();
        dst.set_len(capacity).unwrap();
        let mut segments = Vec::new();
        scan(&src, capacity, Some(&mut dst), 8, |i, h| {
            segments.push((i, h.to_vec()));
            Ok(())
        })
        .unwrap();
        let sizes: Vec<_> = segments.iter().map(|(i, h)| (*i, h.len())).collect();
        assert_eq!(sizes, vec![(0, 8), (1, 8), (2, 5)]);
        let expected: Vec<BlockHash> = data
            .chunks(BLOCK_SIZE as usize)
            .map(blocks::hash_block)
            .collect();
        let got: Vec<BlockHash> = segments.into_iter().flat_map(|(_, h)| h).collect();
        assert_eq!(got, expected);
        assert_eq!(fs::read(&dst_path).unwrap(), data);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Two data blocks were written; a dense copy would allocate all 21.
            let allocated = fs::metadata(&dst_path).unwrap().blocks() * 512;
            assert!(
                allocated <= 4 * BLOCK_SIZE,
                "copy allocated {allocated} bytes"
            );
        }
    }
}
