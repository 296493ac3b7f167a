//! Full copy of a disk's allocated extents onto a new disk.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tracing::info_span;
use tracing::Instrument;

use crate::{
    error::TransportError,
    extent::{Extent, total_len},
    progress::ProgressReporter,
    transport::{FileTransport, Transport},
};

/// Bytes per read of a copy: large enough to stream, small enough to bound memory.
pub const COPY_CHUNK: u64 = 1 << 20;
/// Reads kept in flight; the copy is latency-bound on remote transports.
pub const COPY_IN_FLIGHT: usize = 8;

/// Bytes per chunk when both disks are local files ([`Transport::as_file`]): a chunk is
/// one trip to the blocking pool, mapped rather than read. Larger than [`COPY_CHUNK`],
/// since no copy of it is held: 8 MiB chunks took 0.66–0.75 s and 0.82–0.95 CPU-s to
/// copy the bench's image, 4 MiB ones 0.70–1.22 s and 0.77–1.02 CPU-s.
const FILE_CHUNK: u64 = 8 << 20;

/// Zeros are found and skipped at this granularity: a block of zeros inside allocated data
/// stays a hole on the target instead of being written.
const ZERO_GRAIN: usize = crate::hash::DEFAULT_BLOCK as usize;

/// The byte ranges of `data` that are not all zeros, judged [`ZERO_GRAIN`] bytes at a
/// time: a run of non-zero grains is one range.
fn non_zero_spans(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    let mut open: Option<usize> = None;
    for (i, grain) in data.chunks(ZERO_GRAIN).enumerate() {
        let at = i * ZERO_GRAIN;
        match (crate::hash::is_zero(grain), open) {
            (false, None) => open = Some(at),
            (true, Some(start)) => {
                spans.push(start..at);
                open = None;
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        spans.push(start..data.len());
    }
    spans
}

/// The runs of `data` (read at `offset`) that are not all zeros, as `(offset, bytes)`
/// slices of it (see [`non_zero_spans`]).
fn non_zero_runs(offset: u64, data: &Bytes) -> Vec<(u64, Bytes)> {
    non_zero_spans(data).into_iter().map(|r| (offset + r.start as u64, data.slice(r))).collect()
}

/// Copies chunk `c`, which holds data on the source, between two local files in one trip
/// to the blocking pool: the source's bytes mapped where they lie and written from there,
/// zero grains skipped. Returns the bytes written.
fn copy_file_chunk(source: &FileTransport, target: &FileTransport, c: Extent) -> Result<u64, TransportError> {
    let data = source.find_blocking(c.offset, c.len, Some(false))?;
    let Some(bytes) = data.get(0, c.len as usize) else { return Ok(0) };
    let writes: Vec<(u64, &[u8])> = non_zero_spans(bytes).into_iter().map(|r| (c.offset + r.start as u64, &bytes[r])).collect();
    target.write_blocking(&writes, &[])?;
    Ok(writes.iter().map(|w| w.1.len() as u64).sum())
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Bytes read from the source (its allocated extents).
    pub bytes_read: u64,
    /// Bytes written to the target; blocks of zeros are skipped and stay holes.
    pub bytes_written: u64,
}

/// Copies every allocated extent of `source` onto `target`, which must be a new disk of
/// the same size that reads as zeros, and flushes the target. Holes are never read, and
/// blocks that read as zeros are never written, so the target stays sparse.
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
        let mut report = CopyReport { bytes_read: total_len(&extents), bytes_written: 0 };
        let files = source.as_file().zip(target.as_file());
        let chunk = if files.is_some() { FILE_CHUNK } else { COPY_CHUNK };
        let chunks: Vec<Extent> = extents.iter().flat_map(|e| e.split_aligned(chunk).collect::<Vec<_>>()).collect();
        let mut done = futures::stream::iter(chunks)
            .map(|c| async move {
                if let Some((s, t)) = files {
                    let (s, t) = (s.clone(), t.clone());
                    let written = tokio::task::spawn_blocking(move || copy_file_chunk(&s, &t, c))
                        .await
                        .map_err(|e| TransportError::Invalid { target: target.describe(), message: format!("copy task failed: {e}") })??;
                    return Ok((c.len, written));
                }
                // Used at once: a view of the source saves copying every byte twice.
                let data: Bytes = source.read_view(c.offset, c.len as usize).await?;
                let writes = non_zero_runs(c.offset, &data);
                let written = writes.iter().map(|(_, run)| run.len() as u64).sum();
                if !writes.is_empty() {
                    target.write_many(writes).await?;
                }
                Ok::<_, TransportError>((c.len, written))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_zero_runs_skip_zero_grains_and_keep_a_short_tail() {
        let g = ZERO_GRAIN;
        let mut data = vec![0u8; 5 * g + 100];
        data[g..3 * g].fill(1); // grains 1 and 2
        data[4 * g + 7] = 2; // one byte in grain 4
        data[5 * g + 99] = 3; // the short tail
        let runs = non_zero_runs(1 << 30, &Bytes::from(data.clone()));
        let got: Vec<(u64, usize)> = runs.iter().map(|(o, b)| (*o, b.len())).collect();
        assert_eq!(got, vec![((1 << 30) + g as u64, 2 * g), ((1 << 30) + 4 * g as u64, g + 100)]);
        assert_eq!(&runs[1].1[..], &data[4 * g..]);
        assert!(non_zero_runs(0, &Bytes::from(vec![0u8; 3 * g])).is_empty());
    }

    #[tokio::test]
    async fn files_copy_across_chunk_boundaries_to_an_unaligned_end() {
        let dir = tempfile::tempdir().unwrap();
        // Data from 3 MiB to the end, which is not a multiple of a page: chunks straddle
        // FILE_CHUNK boundaries, writes are longer than a write piece, the tail is short.
        let size = 2 * FILE_CHUNK + 5 * (1 << 20) + 1234;
        let src = FileTransport::create(dir.path().join("src.img"), size).unwrap();
        let data: Vec<u8> = (0..size - (3 << 20)).map(|i| (i % 253) as u8 | 1).collect();
        src.write_at(3 << 20, Bytes::from(data)).await.unwrap();
        // One zero grain inside the data stays a hole.
        src.write_zeroes(FILE_CHUNK + ZERO_GRAIN as u64, ZERO_GRAIN as u64).await.unwrap();
        let dst = FileTransport::create(dir.path().join("dst.img"), size).unwrap();
        let report = copy_allocated(&src, &dst, None).await.unwrap();
        assert_eq!(report.bytes_written, size - (3 << 20) - ZERO_GRAIN as u64);
        assert!(std::fs::read(src.path()).unwrap() == std::fs::read(dst.path()).unwrap(), "the copy is the source's bytes");
        let hole = (FILE_CHUNK + ZERO_GRAIN as u64, FILE_CHUNK + 2 * ZERO_GRAIN as u64);
        let extents = dst.allocated_extents().await.unwrap();
        assert!(extents.iter().all(|e| e.end() <= hole.0 || e.offset >= hole.1), "the zero grain was not written: {extents:?}");
    }
}
