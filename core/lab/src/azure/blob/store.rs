//! Page blobs kept as sparse local files, with exact page-range tracking and snapshots.

use crate::azure::error::LabError;
use crate::azure::http::{iso8601_100ns, now_ticks};
use crate::azure::ranges::{RangeMap, Touch};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Page size of page blobs; every range must be aligned to it.
pub const PAGE: u64 = 512;
/// Largest body Put Page accepts.
pub const MAX_PUT_PAGE: u64 = 4 * 1024 * 1024;

/// One page blob or one frozen snapshot of it.
#[derive(Debug, Clone)]
pub(crate) struct PageBlob {
    pub size: u64,
    pub file: PathBuf,
    pub ranges: RangeMap,
    /// Blobs that share a lineage share sequence numbers, so they can be diffed.
    pub lineage: u64,
    /// For snapshots: the last sequence number included.
    pub as_of_seq: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    pub sequence_number: u64,
    pub content_type: String,
}

/// A blob with its snapshots, keyed by their `x-ms-snapshot` timestamp.
#[derive(Debug, Clone)]
pub(crate) struct BlobEntry {
    pub live: PageBlob,
    pub snapshots: BTreeMap<String, PageBlob>,
}

/// A container of blobs.
#[derive(Debug, Default)]
pub(crate) struct Container {
    pub blobs: BTreeMap<String, BlobEntry>,
}

/// A storage account.
#[derive(Debug)]
pub(crate) struct Account {
    pub key: Vec<u8>,
    pub containers: BTreeMap<String, Container>,
}

/// Names a blob: account, container, blob name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRef {
    pub account: String,
    pub container: String,
    pub blob: String,
}

impl BlobRef {
    pub fn new(account: &str, container: &str, blob: &str) -> Self {
        Self { account: account.into(), container: container.into(), blob: blob.into() }
    }
}

/// All storage accounts of the lab.
#[derive(Debug)]
pub(crate) struct BlobStore {
    root: PathBuf,
    next_seq: u64,
    next_lineage: u64,
    next_file: u64,
    last_snapshot_ticks: u128,
    pub accounts: BTreeMap<String, Account>,
}

/// Why a blob operation failed, in Blob service terms.
#[derive(Debug)]
pub(crate) struct BlobFail {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl BlobFail {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    fn container_missing() -> Self {
        Self::new(404, "ContainerNotFound", "The specified container does not exist.")
    }
    fn blob_missing() -> Self {
        Self::new(404, "BlobNotFound", "The specified blob does not exist.")
    }
    fn io(e: std::io::Error) -> Self {
        Self::new(500, "InternalError", format!("The server encountered an internal error: {e}"))
    }
}

impl BlobStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root, next_seq: 1, next_lineage: 1, next_file: 1, last_snapshot_ticks: 0, accounts: BTreeMap::new() }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn etag(&mut self) -> String {
        let n = self.seq();
        format!("\"0x8DD{n:013X}\"")
    }

    fn new_file(&mut self, size: u64) -> Result<PathBuf, BlobFail> {
        let path = self.root.join(format!("blob-{:06}.vhd", self.next_file));
        self.next_file += 1;
        let f = File::create(&path).map_err(BlobFail::io)?;
        f.set_len(size).map_err(BlobFail::io)?;
        Ok(path)
    }

    /// Adds an account (idempotent for the same key).
    pub fn add_account(&mut self, name: &str, key: Vec<u8>) {
        self.accounts.entry(name.to_string()).or_insert(Account { key, containers: BTreeMap::new() });
    }

    pub fn create_container(&mut self, account: &str, container: &str) -> Result<(), BlobFail> {
        let acct = self.accounts.get_mut(account).ok_or_else(|| {
            BlobFail::new(404, "ResourceNotFound", "The specified resource does not exist.")
        })?;
        if acct.containers.contains_key(container) {
            return Err(BlobFail::new(409, "ContainerAlreadyExists", "The specified container already exists."));
        }
        acct.containers.insert(container.to_string(), Container { blobs: BTreeMap::new() });
        Ok(())
    }

    /// Creates the container if needed; used by the lab itself for disk storage.
    pub fn ensure_container(&mut self, account: &str, container: &str) {
        if let Some(acct) = self.accounts.get_mut(account) {
            acct.containers.entry(container.to_string()).or_default();
        }
    }

    pub fn delete_container(&mut self, account: &str, container: &str) -> Result<(), BlobFail> {
        let acct = self.accounts.get_mut(account).ok_or_else(BlobFail::container_missing)?;
        let c = acct.containers.remove(container).ok_or_else(BlobFail::container_missing)?;
        for entry in c.blobs.values() {
            remove_files(entry);
        }
        Ok(())
    }

    pub fn container(&self, account: &str, container: &str) -> Result<&Container, BlobFail> {
        self.accounts
            .get(account)
            .and_then(|a| a.containers.get(container))
            .ok_or_else(BlobFail::container_missing)
    }

    fn container_mut(&mut self, account: &str, container: &str) -> Result<&mut Container, BlobFail> {
        self.accounts
            .get_mut(account)
            .and_then(|a| a.containers.get_mut(container))
            .ok_or_else(BlobFail::container_missing)
    }

    pub fn entry(&self, r: &BlobRef) -> Result<&BlobEntry, BlobFail> {
        self.container(&r.account, &r.container)?.blobs.get(&r.blob).ok_or_else(BlobFail::blob_missing)
    }

    fn entry_mut(&mut self, r: &BlobRef) -> Result<&mut BlobEntry, BlobFail> {
        self.container_mut(&r.account, &r.container)?.blobs.get_mut(&r.blob).ok_or_else(BlobFail::blob_missing)
    }

    /// The live blob, or one of its snapshots.
    pub fn get(&self, r: &BlobRef, snapshot: Option<&str>) -> Result<&PageBlob, BlobFail> {
        let e = self.entry(r)?;
        match snapshot {
            None => Ok(&e.live),
            Some(s) => e.snapshots.get(s).ok_or_else(BlobFail::blob_missing),
        }
    }

    /// Put Blob for a page blob: a new, empty blob of `size` bytes (replacing any live blob).
    pub fn create_page_blob(&mut self, r: &BlobRef, size: u64, content_type: &str) -> Result<&PageBlob, BlobFail> {
        if !size.is_multiple_of(PAGE) {
            return Err(BlobFail::new(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format. x-ms-blob-content-length must be a multiple of 512."));
        }
        self.container(&r.account, &r.container)?;
        let file = self.new_file(size)?;
        let lineage = self.next_lineage;
        self.next_lineage += 1;
        let etag = self.etag();
        let blob = PageBlob {
            size,
            file,
            ranges: RangeMap::default(),
            lineage,
            as_of_seq: 0,
            etag,
            last_modified: SystemTime::now(),
            sequence_number: 0,
            content_type: content_type.to_string(),
        };
        let c = self.container_mut(&r.account, &r.container)?;
        match c.blobs.get_mut(&r.blob) {
            Some(e) => {
                let _ = std::fs::remove_file(&e.live.file);
                e.live = blob;
            }
            None => {
                c.blobs.insert(r.blob.clone(), BlobEntry { live: blob, snapshots: BTreeMap::new() });
            }
        }
        Ok(&self.entry(r)?.live)
    }

    /// Put Page with `x-ms-page-write: update`.
    pub fn write_pages(&mut self, r: &BlobRef, offset: u64, data: &[u8]) -> Result<(), BlobFail> {
        let len = data.len() as u64;
        self.check_range(r, offset, len)?;
        let seq = self.seq();
        let etag = self.etag();
        let blob = &mut self.entry_mut(r)?.live;
        write_at(&blob.file, offset, data).map_err(BlobFail::io)?;
        blob.ranges.set(offset, offset + len, Touch { seq, valid: true });
        blob.etag = etag;
        blob.last_modified = SystemTime::now();
        Ok(())
    }

    /// Put Page with `x-ms-page-write: clear`: the pages read as zeros and stop being valid.
    pub fn clear_pages(&mut self, r: &BlobRef, offset: u64, len: u64) -> Result<(), BlobFail> {
        self.check_range(r, offset, len)?;
        let seq = self.seq();
        let etag = self.etag();
        let blob = &mut self.entry_mut(r)?.live;
        zero_range(&blob.file, offset, len).map_err(BlobFail::io)?;
        blob.ranges.set(offset, offset + len, Touch { seq, valid: false });
        blob.etag = etag;
        blob.last_modified = SystemTime::now();
        Ok(())
    }

    fn check_range(&self, r: &BlobRef, offset: u64, len: u64) -> Result<(), BlobFail> {
        let blob = self.get(r, None)?;
        if !offset.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) || len == 0 || offset + len > blob.size {
            return Err(BlobFail::new(416, "InvalidPageRange", "The page range specified is invalid."));
        }
        Ok(())
    }

    /// Reads `[offset, offset+len)` of the blob or snapshot.
    pub fn read(&self, r: &BlobRef, snapshot: Option<&str>, offset: u64, len: u64) -> Result<Vec<u8>, BlobFail> {
        let blob = self.get(r, snapshot)?;
        read_at(&blob.file, offset, len).map_err(BlobFail::io)
    }

    /// Snapshot Blob: freezes the live blob and returns the `x-ms-snapshot` timestamp.
    pub fn snapshot(&mut self, r: &BlobRef) -> Result<String, BlobFail> {
        let live = self.get(r, None)?.clone();
        let mut ticks = now_ticks();
        if ticks <= self.last_snapshot_ticks {
            ticks = self.last_snapshot_ticks + 1;
        }
        self.last_snapshot_ticks = ticks;
        let stamp = iso8601_100ns(ticks);
        let frozen = self.frozen_copy(&live, false)?;
        self.entry_mut(r)?.snapshots.insert(stamp.clone(), frozen);
        Ok(stamp)
    }

    /// A sparse copy of `src` as of now. With `new_lineage`, the copy cannot be diffed
    /// against `src`'s history (a full copy); otherwise it shares it (an incremental snapshot).
    pub fn frozen_copy(&mut self, src: &PageBlob, new_lineage: bool) -> Result<PageBlob, BlobFail> {
        let file = self.new_file(src.size)?;
        for (s, e) in src.ranges.valid(0, src.size) {
            copy_range(&src.file, &file, s, e - s).map_err(BlobFail::io)?;
        }
        let seq = self.seq();
        let etag = self.etag();
        let (ranges, lineage) = if new_lineage {
            let l = self.next_lineage;
            self.next_lineage += 1;
            (src.ranges.restamped(seq), l)
        } else {
            (src.ranges.clone(), src.lineage)
        };
        Ok(PageBlob { file, ranges, lineage, as_of_seq: seq, etag, last_modified: SystemTime::now(), ..src.clone() })
    }

    /// Stores `blob` (usually from [`Self::frozen_copy`]) as the live blob `r`. A `frozen`
    /// blob keeps its point in history (a managed snapshot); otherwise it is a writable blob
    /// whose changes all count as after that point.
    pub fn insert_blob(&mut self, r: &BlobRef, mut blob: PageBlob, frozen: bool) -> Result<(), BlobFail> {
        if !frozen {
            blob.as_of_seq = 0;
        }
        let c = self.container_mut(&r.account, &r.container)?;
        if let Some(old) = c.blobs.insert(r.blob.clone(), BlobEntry { live: blob, snapshots: BTreeMap::new() }) {
            remove_files(&old);
        }
        Ok(())
    }

    pub fn delete_blob(&mut self, r: &BlobRef) -> Result<(), BlobFail> {
        let c = self.container_mut(&r.account, &r.container)?;
        let e = c.blobs.remove(&r.blob).ok_or_else(BlobFail::blob_missing)?;
        remove_files(&e);
        Ok(())
    }

    pub fn delete_snapshot(&mut self, r: &BlobRef, snapshot: &str) -> Result<(), BlobFail> {
        let e = self.entry_mut(r)?;
        let s = e.snapshots.remove(snapshot).ok_or_else(BlobFail::blob_missing)?;
        let _ = std::fs::remove_file(&s.file);
        Ok(())
    }
}

fn remove_files(e: &BlobEntry) {
    let _ = std::fs::remove_file(&e.live.file);
    for s in e.snapshots.values() {
        let _ = std::fs::remove_file(&s.file);
    }
}

pub(crate) fn write_at(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

pub(crate) fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

fn copy_range(src: &Path, dst: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        let data = read_at(src, offset + done, n)?;
        write_at(dst, offset + done, &data)?;
        done += n;
    }
    Ok(())
}

/// Zeroes a range by punching a hole, so cleared pages give their space back like the
/// service does; falls back to writing zeros where the file system cannot punch holes.
fn zero_range(path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fallocate only reads its integer arguments; the descriptor is open for the
        // duration of the call.
        let rc = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    drop(f);
    let zeros = vec![0u8; (1u64 << 20).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (zeros.len() as u64).min(len - done);
        write_at(path, offset + done, &zeros[..n as usize])?;
        done += n;
    }
    Ok(())
}

impl From<BlobFail> for LabError {
    fn from(f: BlobFail) -> Self {
        LabError::Storage { code: f.code.to_string(), message: f.message }
    }
}
