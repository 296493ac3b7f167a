//! Writeback of a file's written ranges, started on a thread of its own.
//!
//! Every writer of the data path ends with a flush, and started early the disk's
//! writes overlap with whatever comes next (see [`super::start_writeback`]). Started
//! inline, though, `sync_file_range` blocks whenever the disk's request queue is full, so
//! a copy onto a disk slower than memory ran at the disk's pace and its caller waited.
//! Here a writer only queues the range; one thread per file starts the writeback,
//! merging ranges that queued up while it was blocked.
//!
//! Nothing here makes anything durable or reports errors: the flush that follows does
//! both, whether or not the writeback was started.

use std::{
    fs::File,
    sync::{Arc, OnceLock, Weak, mpsc},
};

/// Ranges closer than this are started with one `sync_file_range` over both and the gap
/// between them. The kernel finds the gap's dirty pages by a tag lookup, so a clean gap
/// costs next to nothing, while a call per scattered block cost a syscall and a walk of
/// the writeback machinery each.
const GAP: u64 = 16 << 20;

/// Sorts the ranges and merges those less than [`GAP`] apart into one.
fn merge(ranges: &mut Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(offset, len) in ranges.iter() {
        match merged.last_mut() {
            Some((o, l)) if offset <= *o + *l + GAP => *l = (*l).max(offset + len - *o),
            _ => merged.push((offset, len)),
        }
    }
    *ranges = merged;
}

/// The queue of one file's writeback thread, started at the first write. The thread
/// stops when the last clone of the transport that owns this is dropped.
#[derive(Debug)]
pub(crate) struct Writeback {
    file: Arc<File>,
    queue: OnceLock<Option<Queue>>,
}

/// The sending end of a writeback thread's queue: batches of `(offset, len)` ranges.
type Queue = mpsc::Sender<Vec<(u64, u64)>>;

impl Writeback {
    /// Writeback of `file`; no thread runs until the first [`Writeback::start`].
    pub fn new(file: Arc<File>) -> Self {
        Self { file, queue: OnceLock::new() }
    }

    /// Queues the `(offset, len)` ranges of the file for writeback and returns at once:
    /// one message, so a batch of writes wakes the thread once. If the thread cannot be
    /// started, the writeback is started inline instead.
    pub fn start(&self, ranges: Vec<(u64, u64)>) {
        if ranges.is_empty() {
            return;
        }
        let queue = self.queue.get_or_init(|| spawn(Arc::downgrade(&self.file)));
        let unsent = match queue {
            Some(q) => q.send(ranges).err().map(|e| e.0),
            None => Some(ranges),
        };
        for (offset, len) in unsent.into_iter().flatten() {
            super::start_writeback(&self.file, offset, len);
        }
    }
}

/// Starts the thread. It holds the file only while it calls `sync_file_range`, so that
/// the file is closed by whoever drops the transport last, as without the thread: a
/// deleted image whose last descriptor closed on this thread was freed here, and the
/// file system's work for that (seconds, for a large image) slowed whatever ran next.
fn spawn(file: Weak<File>) -> Option<Queue> {
    let (tx, rx) = mpsc::channel::<Vec<(u64, u64)>>();
    let thread = std::thread::Builder::new().name("homeward-writeback".into()).spawn(move || {
        let mut ranges = Vec::new();
        while let Ok(first) = rx.recv() {
            ranges.extend(first);
            ranges.extend(rx.try_iter().flatten());
            merge(&mut ranges);
            let Some(file) = file.upgrade() else { break };
            for (offset, len) in ranges.drain(..) {
                super::start_writeback(&file, offset, len);
            }
        }
    });
    thread.ok().map(|_| tx)
}

#[cfg(test)]
mod tests {
    use super::{GAP, merge};

    #[test]
    fn near_ranges_merge_and_far_ones_stay_apart() {
        let mut r = vec![(100, 10), (0, 50), (50, 20), (60, 5), (200, 1), (GAP + 200, 1), (3 * GAP, 7)];
        merge(&mut r);
        assert_eq!(r, vec![(0, GAP + 201), (3 * GAP, 7)]);
    }
}
