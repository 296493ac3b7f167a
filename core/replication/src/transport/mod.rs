//! Disk transports: how the data path reads and writes a disk named by a locator.
//!
//! The trait is object safe (futures are boxed) so the plugin host can add the
//! served-by-adapter and native-plugin transports from outside this crate.

mod file;
mod http_range;
mod locator;
mod memory;
mod page_blob;
mod vhd;
mod window;
mod writeback;

use std::{fmt::Debug, future::Future, pin::Pin};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

pub use file::FileTransport;
pub(crate) use file::{read_exact_uninit, start_writeback};
pub use http_range::HttpRangeTransport;
pub use locator::{AdapterLocator, DiskFormat, Locator, open_adapter_locator, open_locator};
pub use memory::MemoryTransport;
pub use vhd::fixed_vhd_footer;
pub use page_blob::{PAGE_SIZE, MAX_PUT_PAGE, PageBlobTransport, PageRangeDiff};
pub use window::Window;

use crate::{error::TransportError, extent::Extent};

/// Operations the default [`Transport::read_many`] and [`Transport::write_many`] keep in
/// flight: enough to overlap a remote disk's latency without flooding its service with
/// a batch's worth of requests at once.
pub const MANY_AT_ONCE: usize = 8;

/// The future every transport operation returns.
pub type TransportFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send + 'a>>;

/// Random access to one disk.
///
/// Implementations must allow many operations in flight at once (`&self` everywhere): the
/// engine keeps several reads outstanding to reach the disk's throughput.
pub trait Transport: Send + Sync + Debug {
    /// A name for logs and errors. It must not contain secrets (SAS tokens).
    fn describe(&self) -> String;

    /// The disk's size in bytes.
    fn size(&self) -> TransportFuture<'_, u64>;

    /// The ranges that may hold data, sorted and disjoint. Everything else reads as zeros
    /// and is never read or sent. A transport that cannot tell returns the whole disk.
    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>>;

    /// Reads exactly `len` bytes at `offset`.
    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes>;

    /// Reads `len` bytes at `offset` unless the whole range is known to read as zeros
    /// without reading it (a hole), in which case it returns `None` and reads nothing. A
    /// range past the end is an error, as for [`Transport::read_at`]. Idempotent. The
    /// default always reads; the journal uses this to skip undo reads of unwritten areas.
    fn read_data_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Option<Bytes>> {
        Box::pin(async move { self.read_at(offset, len).await.map(Some) })
    }

    /// Reads each `(offset, len)` range as [`Transport::read_data_at`] would: `None` for a
    /// range that is a hole, read as nothing. Results come in the order given; fails with
    /// the first range that fails. Idempotent. A caller with many small ranges uses this so
    /// that a transport can serve them in one go (a file: one trip to the blocking pool
    /// instead of one per range). The default calls [`Transport::read_data_at`],
    /// [`MANY_AT_ONCE`] at a time.
    fn read_data_many(&self, ranges: Vec<(u64, usize)>) -> TransportFuture<'_, Vec<Option<Bytes>>> {
        Box::pin(
            futures::stream::iter(ranges)
                .map(|(offset, len)| self.read_data_at(offset, len))
                .buffered(MANY_AT_ONCE)
                .try_collect(),
        )
    }

    /// Reads exactly `len` bytes at `offset` for a caller that uses them at once and lets
    /// them go, such as a copy: the bytes may be a view of the source rather than a copy
    /// of it (a file's page cache, mapped), and then change if the source changes while
    /// they are held. A range past the end is an error, as for [`Transport::read_at`].
    /// Idempotent. The default reads with [`Transport::read_at`].
    fn read_view(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        self.read_at(offset, len)
    }

    /// Reads each `(offset, len)` range, returning their bytes in the same order; fails
    /// with the first range that fails, as [`Transport::read_at`] would. Idempotent. A
    /// caller with many small ranges uses this so that a transport can serve them in one
    /// go (a file: one trip to the blocking pool instead of one per range). The default
    /// reads them with [`Transport::read_at`], [`MANY_AT_ONCE`] at a time.
    fn read_many(&self, ranges: Vec<(u64, usize)>) -> TransportFuture<'_, Vec<Bytes>> {
        Box::pin(
            futures::stream::iter(ranges)
                .map(|(offset, len)| self.read_at(offset, len))
                .buffered(MANY_AT_ONCE)
                .try_collect(),
        )
    }

    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()>;

    /// Writes each `(offset, data)`. The writes must not overlap: they may land in any
    /// order. Fails with the first write that fails, after which any of the others may or
    /// may not have landed, as with separate [`Transport::write_at`] calls. Idempotent,
    /// like rewriting the same bytes. The default issues them with
    /// [`Transport::write_at`], [`MANY_AT_ONCE`] at a time; a file writes them in one trip
    /// to the blocking pool.
    fn write_many(&self, writes: Vec<(u64, Bytes)>) -> TransportFuture<'_, ()> {
        Box::pin(
            futures::stream::iter(writes)
                .map(|(offset, data)| self.write_at(offset, data))
                .buffer_unordered(MANY_AT_ONCE)
                .try_collect(),
        )
    }

    /// Makes `[offset, offset + len)` read as zeros, deallocating it where the backend can.
    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()>;

    /// Makes every completed write durable.
    fn flush(&self) -> TransportFuture<'_, ()>;

    /// The digests of the blocks of `[offset, offset + len)` under `hasher`, in order (the
    /// last one may be shorter). `offset` is a multiple of the hasher's block size.
    ///
    /// Hashing is where a resync spends its CPU, so it runs on the blocking pool, where
    /// several ranges hash on every core at once while the async workers keep reads in
    /// flight. The default reads the range with [`Transport::read_at`]; transports that
    /// can hash their bytes where they lie (a file in the page cache) override it to skip
    /// the copy.
    fn block_digests_at(&self, offset: u64, len: u64, hasher: &crate::hash::BlockHasher) -> TransportFuture<'_, Vec<crate::hash::Digest>> {
        let hasher = hasher.clone();
        Box::pin(async move {
            let data = self.read_at(offset, len as usize).await?;
            tokio::task::spawn_blocking(move || hasher.digest_blocks(&data).collect())
                .await
                .map_err(|e| TransportError::Invalid { target: self.describe(), message: format!("hashing task failed: {e}") })
        })
    }

    /// The local file that is this whole disk (byte 0 of the disk at byte 0 of the file),
    /// or `None`: the default. An engine that holds both sides of a copy as local files
    /// then does a range's whole work (hash, compare, copy, read back) in one trip to the
    /// blocking pool, with the bytes where they lie, instead of a trip per step.
    fn as_file(&self) -> Option<&FileTransport> {
        None
    }
}

/// Checks that `[offset, offset+len)` lies inside a disk of `size` bytes.
pub(crate) fn check_range(target: &str, offset: u64, len: u64, size: u64) -> Result<(), TransportError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(TransportError::Invalid {
            target: target.to_string(),
            message: format!("range {offset}+{len} is past the end of the {size}-byte disk"),
        }),
    }
}
