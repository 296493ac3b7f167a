//! A window onto part of another disk: the disk inside a container file.
//!
//! Adapters' locators say where disk byte 0 is (`data-offset`) and how the bytes are laid
//! out (`raw`, `vmdk-flat`, `vhd-fixed`). A fixed VHD is the disk followed by a 512-byte
//! footer that the data path must never touch; other containers may put a header before
//! the data. [`Window`] presents `[data_offset, data_offset + capacity)` of the inner
//! disk as a disk of `capacity` bytes, so every engine (copy, resync, cycles) works on the
//! guest's disk bytes and nothing else.

use std::{fmt, sync::Arc};

use bytes::Bytes;

use super::{PageBlobTransport, Transport, TransportFuture, check_range, page_blob::PageRangeDiff};
use crate::{error::TransportError, extent::Extent};

/// `[data_offset, data_offset + capacity)` of an inner disk, presented as a disk of
/// `capacity` bytes.
///
/// Every read and write is bounds-checked against `capacity` before it reaches the inner
/// disk, so bytes outside the window (a VHD footer, a header) are never read or written.
/// Allocated extents and page-range diffs of the inner disk are clipped to the window
/// and shifted to the window's coordinates.
#[derive(Clone)]
pub struct Window {
    inner: Arc<dyn Transport>,
    data_offset: u64,
    capacity: u64,
    // Kept beside `inner` (which is the same blob) so the change-tracking form of Get
    // Page Ranges stays reachable through the window without downcasting.
    page_blob: Option<PageBlobTransport>,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `describe` of the inner disk is redacted by contract; its Debug may not be.
        f.debug_struct("Window")
            .field("inner", &self.inner.describe())
            .field("data_offset", &self.data_offset)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Window {
    /// A window of `capacity` bytes starting at `data_offset` of `inner`.
    pub fn new(inner: Arc<dyn Transport>, data_offset: u64, capacity: u64) -> Self {
        Self { inner, data_offset, capacity, page_blob: None }
    }

    /// A window onto a page blob that also answers [`Window::page_ranges`] (Azure's
    /// change tracking) in the window's coordinates.
    pub fn over_page_blob(blob: PageBlobTransport, data_offset: u64, capacity: u64) -> Self {
        Self { inner: Arc::new(blob.clone()), data_offset, capacity, page_blob: Some(blob) }
    }

    /// The disk the window looks into.
    pub fn inner(&self) -> &Arc<dyn Transport> {
        &self.inner
    }

    /// Where the window's byte 0 is on the inner disk.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The window's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Clips extents of the inner disk to the window and shifts them to the window's
    /// coordinates; the result is sorted and merged.
    pub fn from_inner(&self, extents: &[Extent]) -> Vec<Extent> {
        clip_shift(extents, self.data_offset, self.capacity)
    }

    /// Get Page Ranges (optionally the diff against `prev_snapshot`) of the page blob
    /// under the window, clipped and shifted to the window. Fails with
    /// [`TransportError::Invalid`] if the window was not made by
    /// [`Window::over_page_blob`].
    pub async fn page_ranges(&self, prev_snapshot: Option<&str>) -> Result<PageRangeDiff, TransportError> {
        let blob = self.page_blob.as_ref().ok_or_else(|| TransportError::Invalid {
            target: self.describe(),
            message: "page ranges exist only for page blobs".into(),
        })?;
        Ok(blob.page_ranges(prev_snapshot).await?.windowed(self.data_offset, self.capacity))
    }

    fn check(&self, offset: u64, len: u64) -> Result<u64, TransportError> {
        check_range(&self.describe(), offset, len, self.capacity)?;
        // Cannot overflow once the inner disk was checked to hold the window (`size`),
        // but a window may be used before that, so overflow is an error, not a panic.
        offset.checked_add(self.data_offset).ok_or_else(|| TransportError::Invalid {
            target: self.describe(),
            message: format!("offset {offset} + data offset {} overflows", self.data_offset),
        })
    }

    /// Every `(offset, len)` range checked and moved onto the inner disk; fails before any
    /// is used if one is outside the window.
    fn check_all(&self, ranges: Vec<(u64, usize)>) -> Result<Vec<(u64, usize)>, TransportError> {
        ranges.into_iter().map(|(offset, len)| Ok((self.check(offset, len as u64)?, len))).collect()
    }
}

/// Clips `extents` to `[data_offset, data_offset + capacity)` and shifts them down by
/// `data_offset`. The result is sorted and merged.
pub(crate) fn clip_shift(extents: &[Extent], data_offset: u64, capacity: u64) -> Vec<Extent> {
    let end = data_offset.saturating_add(capacity);
    let clipped = extents
        .iter()
        .filter_map(|e| {
            let start = e.offset.max(data_offset);
            let stop = e.end().min(end);
            (stop > start).then(|| Extent::new(start - data_offset, stop - start))
        })
        .collect();
    crate::extent::normalize(clipped)
}

impl Transport for Window {
    fn describe(&self) -> String {
        format!("{}[{}+{}]", self.inner.describe(), self.data_offset, self.capacity)
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        Box::pin(async move {
            // A locator whose window does not fit its file is wrong; saying so here beats
            // short reads at the end of a copy.
            let inner = self.inner.size().await?;
            match self.data_offset.checked_add(self.capacity) {
                Some(end) if end <= inner => Ok(self.capacity),
                _ => Err(TransportError::Invalid {
                    target: self.describe(),
                    message: format!(
                        "the window {}+{} does not fit the {inner}-byte disk under it",
                        self.data_offset, self.capacity
                    ),
                }),
            }
        })
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        Box::pin(async move { Ok(self.from_inner(&self.inner.allocated_extents().await?)) })
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        Box::pin(async move {
            let at = self.check(offset, len as u64)?;
            self.inner.read_at(at, len).await
        })
    }

    fn read_view(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        Box::pin(async move {
            let at = self.check(offset, len as u64)?;
            self.inner.read_view(at, len).await
        })
    }

    fn read_data_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Option<Bytes>> {
        Box::pin(async move {
            let at = self.check(offset, len as u64)?;
            self.inner.read_data_at(at, len).await
        })
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            let at = self.check(offset, data.len() as u64)?;
            self.inner.write_at(at, data).await
        })
    }

    fn read_many(&self, ranges: Vec<(u64, usize)>) -> TransportFuture<'_, Vec<Bytes>> {
        Box::pin(async move {
            let ranges = self.check_all(ranges)?;
            self.inner.read_many(ranges).await
        })
    }

    fn read_data_many(&self, ranges: Vec<(u64, usize)>) -> TransportFuture<'_, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let ranges = self.check_all(ranges)?;
            self.inner.read_data_many(ranges).await
        })
    }

    fn write_many(&self, writes: Vec<(u64, Bytes)>) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            let writes = writes
                .into_iter()
                .map(|(offset, data)| Ok((self.check(offset, data.len() as u64)?, data)))
                .collect::<Result<Vec<_>, TransportError>>()?;
            self.inner.write_many(writes).await
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            let at = self.check(offset, len)?;
            self.inner.write_zeroes(at, len).await
        })
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        self.inner.flush()
    }

    fn block_digests_at(&self, offset: u64, len: u64, hasher: &crate::hash::BlockHasher) -> TransportFuture<'_, Vec<crate::hash::Digest>> {
        // Forwarded, so a file under the window still hashes in place.
        let hasher = hasher.clone();
        Box::pin(async move {
            let at = self.check(offset, len)?;
            self.inner.block_digests_at(at, len, &hasher).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MemoryTransport;

    /// A 4 KiB header (one page of the memory disk), 64 KiB of disk, and a 512-byte footer.
    const H: usize = 4096;
    async fn container() -> (MemoryTransport, Window) {
        let mem = MemoryTransport::new("vhd", (H + 65536 + 512) as u64);
        mem.write_at(0, Bytes::from(vec![0xEE; H])).await.unwrap();
        mem.write_at((H + 65536) as u64, Bytes::from(vec![0xFF; 512])).await.unwrap();
        let window = Window::new(Arc::new(mem.clone()), H as u64, 65536);
        (mem, window)
    }

    #[tokio::test]
    async fn reads_and_writes_land_inside_the_window_only() {
        let (mem, window) = container().await;
        assert_eq!(window.size().await.unwrap(), 65536);
        window.write_at(0, Bytes::from(vec![1u8; 100])).await.unwrap();
        window.write_at(65536 - 4, Bytes::from_static(b"last")).await.unwrap();
        window.write_zeroes(10, 5).await.unwrap();
        let raw = mem.contents();
        assert!(raw[..H].iter().all(|b| *b == 0xEE), "header untouched");
        assert!(raw[H + 65536..].iter().all(|b| *b == 0xFF), "footer untouched");
        let mut want = [1u8; 100];
        want[10..15].fill(0);
        assert_eq!(&raw[H..H + 100], &want[..]);
        assert_eq!(&raw[H + 65532..H + 65536], b"last");
        assert_eq!(&window.read_at(0, 100).await.unwrap()[..], &want[..]);
        assert_eq!(&window.read_at(65532, 4).await.unwrap()[..], b"last");
    }

    #[tokio::test]
    async fn batched_reads_and_writes_land_inside_the_window_in_order() {
        // The memory disk has no batched operations of its own: this also covers the
        // trait's defaults under the window's forwarding.
        let (mem, window) = container().await;
        let writes: Vec<(u64, Bytes)> = (0..20u64).map(|i| (i * 3000, Bytes::from(vec![i as u8 + 1; 1000]))).collect();
        window.write_many(writes.clone()).await.unwrap();
        let raw = mem.contents();
        assert!(raw[..H].iter().all(|b| *b == 0xEE), "header untouched");
        for (offset, data) in &writes {
            let at = H + *offset as usize;
            assert_eq!(&raw[at..at + data.len()], &data[..], "write at {offset}");
        }
        let ranges: Vec<(u64, usize)> = writes.iter().rev().map(|(offset, data)| (*offset, data.len())).collect();
        let read = window.read_many(ranges).await.unwrap();
        let want: Vec<Bytes> = writes.iter().rev().map(|(_, data)| data.clone()).collect();
        assert_eq!(read, want, "bytes come back in the order asked for");
        // One write past the window fails the batch before any of it lands.
        let before = mem.contents();
        let err = window.write_many(vec![(0, Bytes::from_static(b"fine")), (65535, Bytes::from_static(b"over"))]).await.unwrap_err();
        assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
        assert_eq!(mem.contents(), before);
        let err = window.read_many(vec![(0, 4), (65536, 1)]).await.unwrap_err();
        assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
        let ranges: Vec<(u64, usize)> = writes.iter().map(|(offset, data)| (*offset, data.len())).collect();
        let read = window.read_data_many(ranges).await.unwrap();
        assert_eq!(read, writes.iter().map(|(_, data)| Some(data.clone())).collect::<Vec<_>>());
        let err = window.read_data_many(vec![(0, 4), (65536, 1)]).await.unwrap_err();
        assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn the_footer_cannot_be_reached() {
        let (mem, window) = container().await;
        for err in [
            window.write_at(65536 - 3, Bytes::from_static(b"over")).await.unwrap_err(),
            window.write_zeroes(65000, 1000).await.unwrap_err(),
            window.read_at(65536, 1).await.unwrap_err(),
            window.write_at(u64::MAX - 1, Bytes::from_static(b"wrap")).await.unwrap_err(),
        ] {
            assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
        }
        assert!(mem.contents()[H + 65536..].iter().all(|b| *b == 0xFF));
    }

    #[tokio::test]
    async fn allocated_extents_are_clipped_and_shifted() {
        let (mem, window) = container().await;
        // Header and footer pages are allocated on the inner disk but outside the window.
        assert!(window.allocated_extents().await.unwrap().is_empty());
        // The memory disk allocates 4 KiB pages of its own coordinates.
        mem.write_at((H + 8192) as u64, Bytes::from(vec![3u8; 4096])).await.unwrap();
        mem.write_at((H + 65536 - 10) as u64, Bytes::from(vec![3u8; 4])).await.unwrap();
        assert_eq!(window.allocated_extents().await.unwrap(), vec![Extent::new(8192, 4096), Extent::new(65536 - 4096, 4096)]);
        let got = clip_shift(&[Extent::new(0, 1000), Extent::new(1000, 24), Extent::new(5000, 10_000)], 512, 8192);
        assert_eq!(got, vec![Extent::new(0, 512), Extent::new(4488, 8192 - 4488)]);
    }

    #[tokio::test]
    async fn a_window_past_the_end_of_its_disk_is_refused() {
        let mem = MemoryTransport::new("small", 4096);
        let window = Window::new(Arc::new(mem), 512, 4096);
        assert!(matches!(window.size().await.unwrap_err(), TransportError::Invalid { .. }));
        let window = Window::new(Arc::new(MemoryTransport::new("x", 10)), u64::MAX, 2);
        assert!(matches!(window.size().await.unwrap_err(), TransportError::Invalid { .. }));
        assert!(window.page_ranges(None).await.is_err(), "not a page blob");
    }
}
