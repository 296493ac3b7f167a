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

pub use file::FileTransport;
pub(crate) use file::{read_exact_uninit, start_writeback};
pub use http_range::HttpRangeTransport;
pub use locator::{AdapterLocator, DiskFormat, Locator, open_adapter_locator, open_locator};
pub use memory::MemoryTransport;
pub use vhd::fixed_vhd_footer;
pub use page_blob::{PAGE_SIZE, MAX_PUT_PAGE, PageBlobTransport, PageRangeDiff};
pub use window::Window;

use crate::{error::TransportError, extent::Extent};

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

    /// Reads exactly `len` bytes at `offset` for a caller that uses them at once and lets
    /// them go, such as a copy: the bytes may be a view of the source rather than a copy
    /// of it (a file's page cache, mapped), and then change if the source changes while
    /// they are held. A range past the end is an error, as for [`Transport::read_at`].
    /// Idempotent. The default reads with [`Transport::read_at`].
    fn read_view(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        self.read_at(offset, len)
    }

    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()>;

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
