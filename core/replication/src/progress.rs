//! Progress of a long transfer (bytes, blocks, rate, ETA), published on a watch channel
//! that the pipeline and CLI display.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::watch;

/// A snapshot of a transfer's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Bytes processed so far (read and compared, or copied).
    pub bytes_done: u64,
    /// Bytes to process in total.
    pub bytes_total: u64,
    /// Blocks processed so far.
    pub blocks_done: u64,
    /// Blocks in total.
    pub blocks_total: u64,
    /// Bytes that had to be sent (differing or changed blocks).
    pub bytes_sent: u64,
    /// Average rate since the start, bytes per second.
    pub rate_bytes_per_sec: f64,
    /// Estimated time to completion at that rate.
    pub eta: Option<Duration>,
}

/// The sending side: cheap to share between concurrent workers.
#[derive(Debug)]
pub struct ProgressReporter {
    tx: watch::Sender<Progress>,
    start: Instant,
    bytes: AtomicU64,
    blocks: AtomicU64,
    sent: AtomicU64,
}

impl ProgressReporter {
    /// A reporter for a transfer of `bytes_total` in `blocks_total` blocks, and the
    /// receiver that observes it.
    pub fn new(bytes_total: u64, blocks_total: u64) -> (Self, watch::Receiver<Progress>) {
        let (tx, rx) = watch::channel(Progress { bytes_total, blocks_total, ..Progress::default() });
        let reporter =
            Self { tx, start: Instant::now(), bytes: AtomicU64::new(0), blocks: AtomicU64::new(0), sent: AtomicU64::new(0) };
        (reporter, rx)
    }

    /// Records `bytes` in `blocks` more done, of which `sent` bytes had to be sent.
    pub fn advance(&self, bytes: u64, blocks: u64, sent: u64) {
        let bytes_done = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let blocks_done = self.blocks.fetch_add(blocks, Ordering::Relaxed) + blocks;
        let bytes_sent = self.sent.fetch_add(sent, Ordering::Relaxed) + sent;
        let elapsed = self.start.elapsed().as_secs_f64();
        self.tx.send_modify(|p| {
            p.bytes_done = p.bytes_done.max(bytes_done);
            p.blocks_done = p.blocks_done.max(blocks_done);
            p.bytes_sent = p.bytes_sent.max(bytes_sent);
            p.rate_bytes_per_sec = if elapsed > 0.0 { p.bytes_done as f64 / elapsed } else { 0.0 };
            let left = p.bytes_total.saturating_sub(p.bytes_done);
            p.eta = (p.rate_bytes_per_sec > 0.0).then(|| Duration::from_secs_f64(left as f64 / p.rate_bytes_per_sec));
        });
    }

    /// The latest snapshot.
    pub fn current(&self) -> Progress {
        self.tx.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_accumulates_and_finishes_with_zero_eta() {
        let (r, rx) = ProgressReporter::new(100, 4);
        r.advance(50, 2, 10);
        r.advance(50, 2, 0);
        let p = rx.borrow().clone();
        assert_eq!((p.bytes_done, p.blocks_done, p.bytes_sent), (100, 4, 10));
        assert!(p.eta.is_none_or(|e| e.is_zero()));
    }
}
