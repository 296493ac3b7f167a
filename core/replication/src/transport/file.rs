//! A datastore file (a flat VMDK extent, a raw image) on a local or mounted file system.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;

use super::{Transport, TransportFuture, check_range, writeback::Writeback};
use crate::{error::TransportError, extent::Extent};

/// A disk image file. Reads of holes are avoided: [`Transport::allocated_extents`] asks
/// the file system with `SEEK_DATA`/`SEEK_HOLE`, and zero writes punch holes.
#[derive(Debug, Clone)]
pub struct FileTransport {
    path: PathBuf,
    file: Arc<File>,
    writeback: Arc<Writeback>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl FileTransport {
    /// Opens an existing image; `writable` opens it for writing too.
    pub fn open(path: impl AsRef<Path>, writable: bool) -> Result<Self, TransportError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|source| io_err("open", &path, source))?;
        Ok(Self::new(path, file))
    }

    /// Creates (or truncates) a sparse image of `size` bytes: every byte a hole.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Self, TransportError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| io_err("create", &path, source))?;
        file.set_len(size).map_err(|source| io_err("set_len", &path, source))?;
        Ok(Self::new(path, file))
    }

    fn new(path: PathBuf, file: File) -> Self {
        let file = Arc::new(file);
        Self { path, writeback: Arc::new(Writeback::new(file.clone())), file, writer: Arc::default() }
    }

    /// Runs the write `f` on the blocking pool once no other write to the file is running.
    ///
    /// Linux file systems take the inode's lock for every buffered write and hole punch, so
    /// writes to one file run one at a time in the kernel whatever we do. Sent together,
    /// the waiting threads spin on that lock while its holder runs (`rwsem_spin_on_owner`):
    /// in a full copy with eight chunks in flight that was about two fifths of the
    /// threads' CPU, taken from the reads and hashing that can run alongside. Here the
    /// writes queue as futures instead, holding no thread; the lock is released when the
    /// write has run, even if the caller stopped waiting for it.
    fn blocking_write(
        &self,
        f: impl FnOnce(&File, &Path) -> Result<(), TransportError> + Send + 'static,
    ) -> TransportFuture<'_, ()> {
        let writer = self.writer.clone();
        Box::pin(async move {
            let turn = writer.lock_owned().await;
            self.blocking(move |file, path| {
                let result = f(file, path);
                drop(turn);
                result
            })
            .await
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File, &Path) -> Result<T, TransportError> + Send + 'static,
    ) -> TransportFuture<'_, T> {
        let file = self.file.clone();
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&file, &path))
                .await
                .map_err(|e| io_err("join", &self.path, std::io::Error::other(e)))?
        })
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> TransportError {
    TransportError::Io { op, target: path.display().to_string(), source }
}

/// Reads exactly `len` bytes at `offset` into a fresh buffer without zero-filling it
/// first: at disk speeds the memset costs as much CPU as hashing the block.
pub(crate) fn read_exact_uninit(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    fill(file, offset, len, &mut buf)?;
    Ok(buf)
}

/// Reads exactly `len` bytes at `offset` into a buffer of the data path's pool, which it
/// goes back to when the bytes are dropped.
fn read_pooled(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = crate::buffers::take(len);
    fill(file, offset, len, &mut buf)?;
    Ok(crate::buffers::into_bytes(buf))
}

/// Appends exactly `len` bytes read at `offset` to the empty `buf`, which has the room.
fn fill(file: &File, offset: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    debug_assert!(buf.is_empty() && buf.capacity() >= len);
    let mut done = 0usize;
    while done < len {
        // SAFETY: the kernel writes at most `len - done` bytes into the vector's spare
        // capacity (at least `len`) starting at `done`; nothing reads those bytes before
        // `set_len` below covers only what was written.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the file"));
        }
        done += n as usize;
        // SAFETY: the first `done` bytes were written by pread.
        unsafe { buf.set_len(done) };
    }
    Ok(())
}

/// Reads exactly `len` bytes at `offset`; a range past the end is `Invalid`.
fn read_or_range_error(file: &File, path: &Path, offset: u64, len: usize) -> Result<Bytes, TransportError> {
    match read_pooled(file, offset, len) {
        Ok(bytes) => Ok(bytes),
        // Only a range past the end of the file comes up short.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            let size = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
            check_range(&path.display().to_string(), offset, len as u64, size)?;
            Err(io_err("read", path, e))
        }
        Err(e) => Err(io_err("read", path, e)),
    }
}

/// Ranges shorter than this are read rather than mapped.
const MIN_MAP: u64 = 1 << 20;
/// Mappings start at multiples of this.
const PAGE: u64 = 4096;

/// The bytes of a range of a file, found where they lie: a hole (zeros, nothing read),
/// the page cache mapped, or a copy read out of it.
pub(crate) enum RangeBytes {
    /// The range lies in a hole.
    Hole,
    /// The page cache, mapped: it shows later writes to the file.
    Mapped(Mapping),
    /// A copy, read when the range could not be mapped: later writes do not show.
    Read(Vec<u8>),
}

impl RangeBytes {
    /// Finds `[offset, offset + len)` of `file`. `hole` says whether the range is known
    /// to be one hole (from [`Transport::allocated_extents`]); `None` asks the file
    /// system, which takes the file's lock and so waits behind any write to it.
    ///
    /// The range is mapped (populated in one call) instead of copied out of the page
    /// cache, which for a warm resync costs as much CPU as hashing the bytes. Ranges that
    /// cannot be mapped (unaligned, short, a file system without mmap) are read; a range
    /// past the end is `UnexpectedEof`.
    ///
    /// A mapped file that shrinks under the mapping raises SIGBUS. The size is checked
    /// first; a disk image being truncated while it is hashed or copied is outside what
    /// a replication source may do, as for any mmap reader.
    fn find(file: &File, offset: u64, len: u64, hole: Option<bool>) -> std::io::Result<Self> {
        let size = file.metadata()?.len();
        let fits = offset.checked_add(len).is_some_and(|end| end <= size);
        if !fits {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "range past the end of the file"));
        }
        // A range that is one hole (the target of an initial sync) is zeros: no I/O.
        if len > 0 && hole.unwrap_or_else(|| is_hole(file, offset, len as usize)) {
            return Ok(Self::Hole);
        }
        match map_if_worth_it(file, offset, len as usize) {
            Some(m) => Ok(Self::Mapped(m)),
            None => read_exact_uninit(file, offset, len as usize).map(Self::Read),
        }
    }

    /// The bytes at `start` (from the range's beginning), `len` long; `None` for a hole.
    pub fn get(&self, start: usize, len: usize) -> Option<&[u8]> {
        match self {
            Self::Hole => None,
            Self::Mapped(m) => Some(&m.as_ref()[start..start + len]),
            Self::Read(v) => Some(&v[start..start + len]),
        }
    }

    /// Like [`RangeBytes::get`], but only where the bytes are the file's own (mapped), so
    /// that they show what was written since: `None` for a hole or a copy.
    pub fn live(&self, start: usize, len: usize) -> Option<&[u8]> {
        match self {
            Self::Mapped(m) => Some(&m.as_ref()[start..start + len]),
            Self::Hole | Self::Read(_) => None,
        }
    }

    /// The digests of the blocks of the `len` bytes at `start` (from the range's
    /// beginning).
    pub fn digests(&self, hasher: &crate::hash::BlockHasher, start: usize, len: u64) -> Vec<crate::hash::Digest> {
        match self.get(start, len as usize) {
            Some(data) => hasher.digest_blocks(data).collect(),
            None => hasher.zero_digests(len),
        }
    }
}

/// Maps `[offset, offset + len)`, which lies inside the file, when that is worth it:
/// mapping costs a few syscalls and page-table work per call, which only pays off over
/// large ranges, so small ones (sparse disks' scattered extents) and unaligned ones get
/// `None` and are read, as are ranges the kernel refuses to map.
fn map_if_worth_it(file: &File, offset: u64, len: usize) -> Option<Mapping> {
    ((len as u64) >= MIN_MAP && offset.is_multiple_of(PAGE)).then(|| Mapping::new(file, offset, len)).flatten()
}

/// A read-only shared mapping of part of a file, populated when made and unmapped when
/// dropped. Its bytes are the file's page cache itself: they change if the file does, and
/// a file truncated under it raises SIGBUS (see [`RangeBytes::find`]).
pub(crate) struct Mapping {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only memory owned by this value alone; reading it from any
// thread is as safe as reading the file.
unsafe impl Send for Mapping {}
// SAFETY: as for Send; nothing mutates through it.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `[offset, offset + len)`; `None` when the kernel refuses (the caller reads
    /// instead). `offset` must be page-aligned and the range inside the file's size.
    fn new(file: &File, offset: u64, len: usize) -> Option<Self> {
        // SAFETY: a fresh read-only shared mapping of `len` bytes of a file we hold open,
        // inside its current size (checked by the callers); it is only read, and
        // unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        std::ptr::NonNull::new(ptr).map(|ptr| Self { ptr, len })
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// Reads `len` bytes at `offset` unless `hole` says the range lies in one: then `None`,
/// once the range is checked against the file's size. For [`Transport::read_data_at`].
fn read_data(file: &File, path: &Path, offset: u64, len: usize, hole: bool) -> Result<Option<Bytes>, TransportError> {
    if !hole {
        return read_or_range_error(file, path, offset, len).map(Some);
    }
    let size = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    check_range(&path.display().to_string(), offset, len as u64, size)?;
    Ok(None)
}

/// Whether `[offset, offset + len)` lies wholly in a hole. A file system without
/// SEEK_DATA support reports everything as data, and an error here only costs the read
/// it would have saved.
fn is_hole(file: &File, offset: u64, len: usize) -> bool {
    matches!(next_data(file, offset), Ok(next) if next.is_none_or(|d| d >= offset + len as u64))
}

/// Asks the kernel to start reading `[offset, offset + len)` into the page cache. Only a
/// hint: nothing is reported, and a failure costs only the overlap it would have given.
fn will_need(file: &File, offset: u64, len: usize) {
    // SAFETY: fadvise on a valid fd; it only starts readahead.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), offset as libc::off_t, len as libc::off_t, libc::POSIX_FADV_WILLNEED) };
}

/// Starts writing `[offset, offset + len)` back to the disk without waiting for it.
///
/// Every writer of the data path ends with a flush (fsync). Left alone, the kernel
/// writes a large batch only then, so the flush costs as long as writing all of it while
/// nothing else runs; started here, the disk writes overlap with reading and hashing
/// what comes next, and the flush only waits for the tail. It makes nothing durable by
/// itself, and errors are left for the flush to report. It blocks while the disk's
/// request queue is full, which is why [`FileTransport`]'s writes call it from a thread
/// of their own (see [`super::writeback`]).
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    // SAFETY: sync_file_range on a valid fd; it only schedules I/O of the page cache.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as libc::off64_t, len as libc::off64_t, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Where the first data at or after `at` starts; `None` when only holes follow.
fn next_data(file: &File, at: u64) -> std::io::Result<Option<u64>> {
    // SAFETY: lseek on a valid fd owned by `file` for the duration of the call. It moves
    // the shared file offset, which no other operation here uses (all I/O is positional).
    let data = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
    if data >= 0 {
        return Ok(Some(data as u64));
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

/// Walks the file's data ranges with `SEEK_DATA`/`SEEK_HOLE`. File systems without
/// support report the whole file as data, which is still correct.
fn data_extents(file: &File, path: &Path) -> Result<Vec<Extent>, TransportError> {
    let size = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    let mut extents = Vec::new();
    let mut at: u64 = 0;
    while at < size {
        let Some(data) = next_data(file, at).map_err(|e| io_err("lseek(SEEK_DATA)", path, e))? else {
            break;
        };
        // SAFETY: as in `next_data`.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io_err("lseek(SEEK_HOLE)", path, std::io::Error::last_os_error()));
        }
        let hole = (hole as u64).min(size);
        if hole > data {
            extents.push(Extent::new(data, hole - data));
        }
        at = hole;
    }
    Ok(extents)
}

impl Transport for FileTransport {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        self.blocking(|file, path| Ok(file.metadata().map_err(|e| io_err("stat", path, e))?.len()))
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        self.blocking(data_extents)
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        self.blocking(move |file, path| read_or_range_error(file, path, offset, len))
    }

    fn read_view(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        self.blocking(move |file, path| {
            let size = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
            let inside = offset.checked_add(len as u64).is_some_and(|end| end <= size);
            match inside.then(|| map_if_worth_it(file, offset, len)).flatten() {
                Some(mapped) => Ok(Bytes::from_owner(mapped)),
                None => read_or_range_error(file, path, offset, len),
            }
        })
    }

    fn read_data_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Option<Bytes>> {
        self.blocking(move |file, path| read_data(file, path, offset, len, is_hole(file, offset, len)))
    }

    fn read_data_many(&self, ranges: Vec<(u64, usize)>) -> TransportFuture<'_, Vec<Option<Bytes>>> {
        self.blocking(move |file, path| {
            let holes: Vec<bool> = ranges.iter().map(|&(offset, len)| is_hole(file, offset, len)).collect();
            // Read one by one, ranges not in the page cache would each wait for the disk in
            // turn; announced first, the disk gets them all at once.
            for (&(offset, len), _) in ranges.iter().zip(&holes).filter(|(_, hole)| !**hole) {
                will_need(file, offset, len);
            }
            ranges.into_iter().zip(holes).map(|((offset, len), hole)| read_data(file, path, offset, len, hole)).collect()
        })
    }

    fn read_many(&self, ranges: Vec<(u64, usize)>) -> TransportFuture<'_, Vec<Bytes>> {
        self.blocking(move |file, path| ranges.into_iter().map(|(offset, len)| read_or_range_error(file, path, offset, len)).collect())
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        self.write_many(vec![(offset, data)])
    }

    fn write_many(&self, writes: Vec<(u64, Bytes)>) -> TransportFuture<'_, ()> {
        let writeback = self.writeback.clone();
        self.blocking_write(move |file, path| write_all(file, path, &writeback, &writes))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        self.blocking_write(move |file, path| zero_range(file, path, offset, len))
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        self.blocking(|file, path| file.sync_data().map_err(|e| io_err("fsync", path, e)))
    }

    fn block_digests_at(&self, offset: u64, len: u64, hasher: &crate::hash::BlockHasher) -> TransportFuture<'_, Vec<crate::hash::Digest>> {
        let hasher = hasher.clone();
        self.blocking(move |file, path| Ok(find_range(file, path, offset, len, None)?.digests(&hasher, 0, len)))
    }

    fn as_file(&self) -> Option<&FileTransport> {
        Some(self)
    }
}

/// [`RangeBytes::find`], with errors that name the file (and a range past its end as
/// `Invalid`, as for reads).
fn find_range(file: &File, path: &Path, offset: u64, len: u64, hole: Option<bool>) -> Result<RangeBytes, TransportError> {
    RangeBytes::find(file, offset, len, hole).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => match file.metadata() {
            Ok(meta) => check_range(&path.display().to_string(), offset, len, meta.len()).err().unwrap_or_else(|| io_err("read", path, e)),
            Err(stat) => io_err("stat", path, stat),
        },
        _ => io_err("read", path, e),
    })
}

/// The most one `pwrite` asks of a file at once.
///
/// Given a larger write, Linux file systems with large folios (ext4 since 6.16) put it in
/// 2 MiB page-cache folios. A VM whose hypervisor takes back free guest memory
/// (virtio-balloon free page reporting, common in clouds) has given back exactly the
/// free 2 MiB blocks, so every such folio faults in the host as it is filled: a full
/// copy in 2 MiB writes took 2.1–4.0 s and 2.3–4.3 CPU-s where 1 MiB writes took
/// 0.77–0.83 s and 0.95–1.04 CPU-s (the bench's 4 GiB image, this machine, six rounds
/// each).
const WRITE_PIECE: usize = 1 << 20;

/// Writes each `(offset, data)` in turn, in pieces of at most [`WRITE_PIECE`], and queues
/// the ranges written for writeback, even when a write fails partway (the flush then
/// reports the failure's consequences).
fn write_all<D: AsRef<[u8]>>(file: &File, path: &Path, writeback: &Writeback, writes: &[(u64, D)]) -> Result<(), TransportError> {
    let mut written = Vec::with_capacity(writes.len());
    let result = writes.iter().try_for_each(|(offset, data)| {
        let data = data.as_ref();
        for (i, piece) in data.chunks(WRITE_PIECE).enumerate() {
            file.write_all_at(piece, offset + (i * WRITE_PIECE) as u64).map_err(|e| io_err("write", path, e))?;
        }
        written.push((*offset, data.len() as u64));
        Ok(())
    });
    writeback.start(written);
    result
}

/// Makes `[offset, offset + len)` read as zeros: a hole punched where the file system can,
/// real zeros written where it cannot.
fn zero_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<(), TransportError> {
    // SAFETY: fallocate on a valid fd; punching a hole keeps the size.
    let rc = unsafe {
        libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset as libc::off_t, len as libc::off_t)
    };
    if rc == 0 {
        return Ok(());
    }
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| io_err("write zeros", path, e))?;
        at += n as u64;
    }
    Ok(())
}

/// Synchronous access for an engine that does a range's whole work in one trip to the
/// blocking pool (see [`Transport::as_file`]). Each call blocks the thread: call them
/// from the blocking pool only.
impl FileTransport {
    /// Finds the bytes of `[offset, offset + len)` where they lie; see [`RangeBytes`].
    /// `hole` says whether the range is known to be one hole; `None` asks the file
    /// system. A range past the end is `Invalid`.
    pub(crate) fn find_blocking(&self, offset: u64, len: u64, hole: Option<bool>) -> Result<RangeBytes, TransportError> {
        find_range(&self.file, &self.path, offset, len, hole)
    }

    /// Reads exactly `len` bytes at `offset`, as [`Transport::read_at`].
    pub(crate) fn read_blocking(&self, offset: u64, len: usize) -> Result<Bytes, TransportError> {
        read_or_range_error(&self.file, &self.path, offset, len)
    }

    /// Writes the `(offset, data)` and zeroes the `(offset, len)` ranges (none of them
    /// overlapping), in one turn of the file's writes, as [`Transport::write_many`] and
    /// [`Transport::write_zeroes`] would.
    pub(crate) fn write_blocking(&self, writes: &[(u64, &[u8])], zeros: &[(u64, u64)]) -> Result<(), TransportError> {
        let _turn = self.writer.blocking_lock();
        zeros.iter().try_for_each(|&(offset, len)| zero_range(&self.file, &self.path, offset, len))?;
        write_all(&self.file, &self.path, &self.writeback, writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holes_are_not_reported_as_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileTransport::create(dir.path().join("d.img"), 16 << 20).unwrap();
        disk.write_at(4 << 20, Bytes::from(vec![7u8; 65536])).await.unwrap();
        disk.write_at(12 << 20, Bytes::from(vec![9u8; 4096])).await.unwrap();
        let extents = disk.allocated_extents().await.unwrap();
        let total: u64 = extents.iter().map(|e| e.len).sum();
        assert!(total < 1 << 20, "only written ranges are data: {extents:?}");
        assert!(extents.iter().any(|e| e.offset <= 4 << 20 && e.end() >= (4 << 20) + 65536));
        assert!(extents.iter().any(|e| e.offset <= 12 << 20 && e.end() >= (12 << 20) + 4096));
        assert_eq!(&disk.read_at(4 << 20, 4).await.unwrap()[..], &[7, 7, 7, 7]);
    }

    /// A new 16 MiB file in `dir`, all hole but for 64 KiB of 7s at 4 MiB; and its size.
    async fn sparse_disk_with_sevens_at_4_mib(dir: &Path) -> (FileTransport, u64) {
        let size = 16u64 << 20;
        let disk = FileTransport::create(dir.join("d.img"), size).unwrap();
        disk.write_at(4 << 20, Bytes::from(vec![7u8; 65536])).await.unwrap();
        (disk, size)
    }

    #[tokio::test]
    async fn read_data_at_skips_whole_holes_and_reads_anything_touching_data() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, size) = sparse_disk_with_sevens_at_4_mib(dir.path()).await;
        assert_eq!(disk.read_data_at(0, 65536).await.unwrap(), None, "a hole is not read");
        assert_eq!(disk.read_data_at(size - 65536, 65536).await.unwrap(), None, "nor the hole at the end");
        let data = disk.read_data_at(4 << 20, 65536).await.unwrap().expect("data is read");
        assert!(data.iter().all(|b| *b == 7));
        let straddling = disk.read_data_at((4 << 20) - 4096, 8192).await.unwrap().expect("a range touching data is read");
        assert!(straddling[..4096].iter().all(|b| *b == 0) && straddling[4096..].iter().all(|b| *b == 7));
        for (offset, len) in [(size - 10, 20), (size, 1)] {
            let err = disk.read_data_at(offset, len).await.unwrap_err();
            assert!(matches!(err, TransportError::Invalid { .. }), "{offset}+{len}: {err}");
        }
    }

    #[tokio::test]
    async fn batched_data_reads_skip_holes_and_keep_the_order_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, size) = sparse_disk_with_sevens_at_4_mib(dir.path()).await;
        disk.write_at(9 << 20, Bytes::from(vec![9u8; 65536])).await.unwrap();
        disk.flush().await.unwrap();
        // Evicted, so that the reads come from the disk after the readahead hint.
        // SAFETY: fadvise on a valid fd; it only drops clean cached pages.
        unsafe { libc::posix_fadvise(disk.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let ranges = vec![(9 << 20, 65536), (0, 65536), (4 << 20, 4096), ((4 << 20) - 4096, 8192), (size - 65536, 65536)];
        let read = disk.read_data_many(ranges.clone()).await.unwrap();
        assert_eq!(read.len(), ranges.len());
        assert!(read[0].as_ref().expect("data is read").iter().all(|b| *b == 9));
        assert_eq!(read[1], None, "a hole is not read");
        assert!(read[2].as_ref().expect("data is read").iter().all(|b| *b == 7));
        let straddling = read[3].as_ref().expect("a range touching data is read");
        assert!(straddling[..4096].iter().all(|b| *b == 0) && straddling[4096..].iter().all(|b| *b == 7));
        assert_eq!(read[4], None, "nor the hole at the end");
        for bad in [(size - 10, 20), (size, 1)] {
            let err = disk.read_data_many(vec![(0, 10), bad]).await.unwrap_err();
            assert!(matches!(err, TransportError::Invalid { .. }), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn batched_writes_land_and_batched_reads_return_them_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4u64 << 20;
        let disk = FileTransport::create(dir.path().join("d.img"), size).unwrap();
        let writes: Vec<(u64, Bytes)> = [(0u64, 65536usize), (1 << 20, 4096), ((2 << 20) + 5, 70_000), (size - 10, 10)]
            .iter()
            .enumerate()
            .map(|(i, &(offset, len))| (offset, Bytes::from((0..len).map(|j| (i * 7 + j) as u8).collect::<Vec<u8>>())))
            .collect();
        disk.write_many(writes.clone()).await.unwrap();
        disk.flush().await.unwrap();
        let on_disk = std::fs::read(disk.path()).unwrap();
        for (offset, data) in &writes {
            assert!(on_disk[*offset as usize..*offset as usize + data.len()] == data[..], "write at {offset}");
        }
        let ranges: Vec<(u64, usize)> = writes.iter().rev().map(|(offset, data)| (*offset, data.len())).collect();
        let read = disk.read_many(ranges).await.unwrap();
        assert_eq!(read, writes.iter().rev().map(|(_, data)| data.clone()).collect::<Vec<_>>());
        let err = disk.read_many(vec![(0, 10), (size - 5, 10)]).await.unwrap_err();
        assert!(matches!(err, TransportError::Invalid { .. }), "{err}");
    }

    #[tokio::test]
    async fn read_view_gives_the_bytes_read_at_gives_mapped_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let size = 8u64 << 20;
        let disk = FileTransport::create(dir.path().join("d.img"), size).unwrap();
        let pattern: Vec<u8> = (0..size as usize).map(|i| (i * 31 / 7) as u8).collect();
        disk.write_at(0, Bytes::from(pattern.clone())).await.unwrap();
        // Mapped (large, aligned), read (small, unaligned), and the last byte of the disk.
        for (offset, len) in [(1 << 20, 2 << 20), (4097, 70_000), (0, 4 << 20), (size - 1, 1)] {
            let view = disk.read_view(offset, len).await.unwrap();
            assert_eq!(view.len(), len, "{offset}+{len}");
            assert!(view[..] == pattern[offset as usize..offset as usize + len], "{offset}+{len}");
        }
        for (offset, len) in [(size - (1 << 20), 2 << 20), (size, 1)] {
            let err = disk.read_view(offset, len).await.unwrap_err();
            assert!(matches!(err, TransportError::Invalid { .. }), "{offset}+{len}: {err}");
        }
    }

    #[tokio::test]
    async fn write_zeroes_reads_back_zero_and_reads_past_end_fail() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileTransport::create(dir.path().join("d.img"), 1 << 20).unwrap();
        disk.write_at(0, Bytes::from(vec![1u8; 8192])).await.unwrap();
        disk.write_zeroes(0, 4096).await.unwrap();
        let back = disk.read_at(0, 8192).await.unwrap();
        assert!(back[..4096].iter().all(|b| *b == 0));
        assert!(back[4096..].iter().all(|b| *b == 1));
        let err = disk.read_at((1 << 20) - 10, 20).await.unwrap_err();
        assert!(matches!(err, TransportError::Invalid { .. }));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_land_and_an_abandoned_write_gives_up_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileTransport::create(dir.path().join("d.img"), 4 << 20).unwrap();
        // Sixteen writers at once, each with its own 64 KiB block and a batch of two.
        let writes = (0..16u64).map(|i| {
            let disk = disk.clone();
            async move {
                let block = Bytes::from(vec![i as u8 + 1; 65536]);
                disk.write_many(vec![(i * 131072, block.clone()), (i * 131072 + 65536, block)]).await
            }
        });
        futures::future::try_join_all(writes).await.unwrap();
        // A write given up on at its first poll (queued behind a write in progress, or
        // already running) must not keep later writes waiting.
        let running = disk.write_at(3 << 20, Bytes::from(vec![0xAA; 1 << 20]));
        let abandoned = disk.write_at(3 << 20, Bytes::from(vec![0xBB; 1 << 20]));
        let mut running = std::pin::pin!(running);
        // The first poll may already finish the write: a blocking task can run to the end
        // before its handle is polled.
        let first = futures::poll!(running.as_mut());
        drop(futures::poll!(Box::pin(abandoned)));
        match first {
            std::task::Poll::Ready(result) => result.unwrap(),
            std::task::Poll::Pending => running.await.unwrap(),
        }
        let later = tokio::time::timeout(std::time::Duration::from_secs(30), disk.write_at(0, Bytes::from_static(b"last")));
        later.await.expect("a later write got its turn").unwrap();
        let back = std::fs::read(disk.path()).unwrap();
        for i in 0..16usize {
            let at = i * 131072;
            let skip = if i == 0 { 4 } else { 0 };
            assert!(back[at + skip..at + 131072].iter().all(|b| *b == i as u8 + 1), "block pair {i}");
        }
        assert_eq!(&back[..4], b"last");
    }
}
