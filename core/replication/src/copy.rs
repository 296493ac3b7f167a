//! Full copy of a disk's allocated extents onto a new disk.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tracing::info_span;
use tracing::Instrument;

use crate::{
    error::TransportError,
    extent::{Extent, total_len},
    progress::ProgressReporter,
    transport::Transport,
};

/// Bytes per read of a copy: large enough to stream, small enough to bound memory.
pub const COPY_CHUNK: u64 = 1 << 20;
/// Reads kept in flight; the copy is latency-bound on remote transports.
pub const COPY_IN_FLIGHT: usize = 8;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Bytes read from the source (its allocated extents).
    pub bytes_read: u64,
    /// Bytes written to the target; zero chunks are skipped and stay holes.
    pub bytes_written: u64,
}

/// Copies every allocated extent of `source` onto `target`, which must be a new disk of
/// the same size that reads as zeros, and flushes the target. Holes are never read, and
/// chunks that read as zeros are never written, so the target stays sparse.
///
/// Fails with [`TransportError::Invalid`] when the sizes differ, or with the first read
/// or write error. Idempotent: copying again writes the same bytes.
pub async fn copy_allocated(
    source: &dyn Transport,
    target: &dyn Transport,
    progress: Option<&ProgressReporter>,
) -> Result<CopyReport, TransportError> {
    let report = copy_allocated_unflushed(source, target, progress).await?;
    target.flush().await?;
    Ok(report)
}

/// [`copy_allocated`] without the final flush, for a caller that flushes the target after
/// what it does next: a verification that reads both disks, or a roll-back. The disk then
/// writes the copy back while that step runs, instead of the step waiting for it. The
/// copy is not durable until the caller's flush succeeds.
pub async fn copy_allocated_unflushed(
    source: &dyn Transport,
    target: &dyn Transport,
    progress: Option<&ProgressReporter>,
) -> Result<CopyReport, TransportError> {
    let span = info_span!("copy_allocated", source = %source.describe(), target = %target.describe());
    async {
        let (src_size, dst_size) = (source.size().await?, target.size().await?);
        if src_size != dst_size {
            return Err(TransportError::Invalid {
                target: target.describe(),
                message: format!("target is {dst_size} bytes but the source is {src_size}"),
            });
        }
        let extents = source.allocated_extents().await?;
        let chunks: Vec<Extent> = extents.iter().flat_map(|e| e.split_aligned(COPY_CHUNK).collect::<Vec<_>>()).collect();
        let mut report = CopyReport { bytes_read: total_len(&extents), bytes_written: 0 };
        let mut done = futures::stream::iter(chunks)
            .map(|c| async move {
                // Used at once: a view of the source saves copying every byte twice.
                let data: Bytes = source.read_view(c.offset, c.len as usize).await?;
                if crate::hash::is_zero(&data) {
                    return Ok::<_, TransportError>((c.len, 0));
                }
                target.write_at(c.offset, data).await?;
                Ok((c.len, c.len))
            })
            .buffer_unordered(COPY_IN_FLIGHT);
        while let Some((read, written)) = done.try_next().await? {
            report.bytes_written += written;
            if let Some(p) = progress {
                p.advance(read, read.div_ceil(crate::hash::DEFAULT_BLOCK), written);
            }
        }
        Ok(report)
    }
    .instrument(span)
    .await
}
