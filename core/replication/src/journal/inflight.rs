//! The open cycle's writes on their way to the replicas: undo reads started as the writes
//! arrive, and the previous batch's replica writes still running. Keeping both going while
//! the next blocks come in is what lets a cycle cost little more than writing its bytes.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{BlockWrite, FaultHook, FaultSite, write_block};
use crate::{
    error::{JournalError, TransportError},
    transport::Transport,
};

/// Replica writes of a batch in flight at once: enough to keep the disk queue full.
const APPLY_IN_FLIGHT: usize = 32;

/// A set of areas that do not overlap each other, keyed by (disk, start) with their end.
#[derive(Debug, Default)]
pub(crate) struct Areas(BTreeMap<(u32, u64), u64>);

impl Areas {
    /// Whether `len` bytes at `offset` of `disk` overlap any area of the set.
    pub fn overlaps(&self, disk: u32, offset: u64, len: u32) -> bool {
        let end = offset + u64::from(len);
        self.0.range((disk, 0)..(disk, end)).next_back().is_some_and(|(_, e)| *e > offset)
    }

    fn insert(&mut self, disk: u32, offset: u64, len: u32) {
        self.0.insert((disk, offset), offset + u64::from(len));
    }
}

/// One write waiting for its batch, with the read of the bytes it will overwrite.
pub(crate) struct Staged {
    pub disk: Arc<dyn Transport>,
    pub write: BlockWrite,
    pub undo: JoinHandle<Result<Bytes, TransportError>>,
}

/// A batch whose undo is on disk and whose replica writes are running.
struct Launched {
    areas: Areas,
    task: JoinHandle<Result<(), JournalError>>,
}

/// The open cycle's staged writes and its launched batch.
#[derive(Default)]
pub(crate) struct CycleWrites {
    staged: Vec<Staged>,
    staged_areas: Areas,
    staged_bytes: u64,
    launched: Option<Launched>,
    applied: Arc<AtomicU64>,
}

impl CycleWrites {
    /// Resets the count of applied blocks for a new cycle.
    pub fn begin(&mut self) {
        self.applied = Arc::new(AtomicU64::new(0));
    }

    /// Whether the write must wait for the staged batch to go first: it overlaps one of
    /// its writes, and so must read its undo after that write lands.
    pub fn overlaps_staged(&self, w: &BlockWrite) -> bool {
        self.staged_areas.overlaps(w.disk, w.offset, w.len)
    }

    /// Whether the write overlaps the launched batch, whose writes must land before its
    /// undo is read.
    pub fn overlaps_launched(&self, w: &BlockWrite) -> bool {
        self.launched.as_ref().is_some_and(|l| l.areas.overlaps(w.disk, w.offset, w.len))
    }

    /// Starts reading what `write` will overwrite and stages it.
    pub fn stage(&mut self, disk: Arc<dyn Transport>, write: BlockWrite) {
        let (reader, offset, len) = (disk.clone(), write.offset, write.len as usize);
        let undo = tokio::spawn(async move { reader.read_at(offset, len).await });
        self.staged_areas.insert(write.disk, write.offset, write.len);
        self.staged_bytes += u64::from(write.len);
        self.staged.push(Staged { disk, write, undo });
    }

    /// Staged writes and bytes.
    pub fn staged_size(&self) -> (usize, u64) {
        (self.staged.len(), self.staged_bytes)
    }

    /// Takes the staged batch, oldest first.
    pub fn take_staged(&mut self) -> Vec<Staged> {
        self.staged_areas = Areas::default();
        self.staged_bytes = 0;
        std::mem::take(&mut self.staged)
    }

    /// Waits for the launched batch's writes; returns their first error.
    pub async fn settle(&mut self) -> Result<(), JournalError> {
        let Some(launched) = self.launched.take() else { return Ok(()) };
        launched.task.await.map_err(|e| JournalError::Protocol(format!("replica writer task failed: {e}")))?
    }

    /// Writes a batch onto the replicas in the background. Its undo must be on disk, and
    /// the previous batch settled.
    pub fn launch(&mut self, batch: Vec<(Arc<dyn Transport>, BlockWrite)>, fault: Option<(FaultHook, u64)>) {
        debug_assert!(self.launched.is_none(), "the previous batch is settled first");
        let mut areas = Areas::default();
        for (_, w) in &batch {
            areas.insert(w.disk, w.offset, w.len);
        }
        let applied = self.applied.clone();
        let task = tokio::spawn(async move {
            let writes: Vec<_> = batch.into_iter().map(|(disk, w)| async move { write_block(disk.as_ref(), w.offset, w.len, w.data).await }).collect();
            let mut done = futures::stream::iter(writes).buffer_unordered(APPLY_IN_FLIGHT);
            while let Some(result) = done.next().await {
                result?;
                let index = applied.fetch_add(1, Ordering::SeqCst);
                if let Some((hook, cycle)) = &fault {
                    hook(FaultSite::AfterApplyBlock { cycle: *cycle, index });
                }
            }
            Ok(())
        });
        self.launched = Some(Launched { areas, task });
    }

    /// Abandons the cycle's writes: stops the staged reads and waits for the launched
    /// batch to stop touching the replicas, whatever its outcome.
    pub async fn cancel(&mut self) {
        for s in self.take_staged() {
            s.undo.abort();
        }
        if let Some(launched) = self.launched.take() {
            let _ = launched.task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Areas;

    #[test]
    fn areas_overlap_only_on_the_same_disk_and_shared_bytes() {
        let mut a = Areas::default();
        a.insert(0, 100, 50);
        a.insert(0, 300, 10);
        a.insert(1, 0, 1000);
        assert!(a.overlaps(0, 149, 1));
        assert!(!a.overlaps(0, 150, 150));
        assert!(a.overlaps(0, 0, 101));
        assert!(!a.overlaps(0, 0, 100));
        assert!(a.overlaps(0, 120, 500));
        assert!(!a.overlaps(2, 0, 1 << 30));
        assert!(a.overlaps(1, 999, 5));
    }
}
