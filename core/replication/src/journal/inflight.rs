//! The open cycle's writes on their way to the replicas. A full batch goes to a
//! background task that reads what its writes will overwrite (one batched read per
//! replica), appends the batch's undo records, syncs them, and only then writes the batch
//! onto the replicas (one batched write per replica); the next batch
//! is staged meanwhile, and its task appends as soon as the previous one's records are
//! written, while those sync. A batch writes the replicas only once its own records and
//! every earlier batch's are synced. Keeping all of this going while the next blocks
//! come in is what lets a cycle cost little more than writing its bytes.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::File,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::{sync::oneshot, task::JoinHandle};

use super::{
    BlockWrite, FaultHook, FaultSite,
    append::{Tail, append_block, append_record},
    io,
    record::Record,
    scan::BlockRef,
};
use crate::{
    error::{JournalError, TransportError},
    transport::{Transport, TransportFuture},
};

/// Replica writes of a batch in flight at once: one batched write per replica, and
/// the zeroed ranges beside them.
const APPLY_IN_FLIGHT: usize = 8;
/// Batches handed to background tasks and not yet settled: one can be appending its undo
/// while the one before it writes the replicas. Each holds up to a batch of new bytes.
pub(crate) const BATCHES_IN_FLIGHT: usize = 4;

/// A set of areas that do not overlap each other, keyed by (disk, start) with their end.
#[derive(Debug, Default)]
pub(crate) struct Areas(BTreeMap<(u32, u64), u64>);

impl Areas {
    /// Whether `len` bytes at `offset` of `disk` overlap any area of the set.
    pub fn overlaps(&self, disk: u32, offset: u64, len: u32) -> bool {
        let end = offset + u64::from(len);
        self.0
            .range((disk, 0)..(disk, end))
            .next_back()
            .is_some_and(|(_, e)| *e > offset)
    }

    fn insert(&mut self, disk: u32, offset: u64, len: u32) {
        self.0.insert((disk, offset), offset + u64::from(len));
    }
}

/// One write waiting for its batch, and the replica it goes to.
pub(crate) struct Staged {
    pub disk: Arc<dyn Transport>,
    pub write: BlockWrite,
}

/// Where and as what a batch task journals its undo records.
pub(crate) struct BatchJournal {
    /// The active segment, opened for appending.
    pub file: Arc<File>,
    /// Its path, for errors.
    pub path: PathBuf,
    /// Its index.
    pub segment: u64,
    /// The open cycle.
    pub cycle: u64,
    /// How many records of the cycle earlier batches append.
    pub first_index: u64,
    /// The crash tests' hook.
    pub fault: Option<FaultHook>,
}

/// What a batch task did, merged into the journal's index in launch order. Records it
/// appended are listed even when it failed afterwards, so that an abort rolls back
/// whatever of them reached the replicas.
#[derive(Debug)]
pub(crate) struct BatchOutcome {
    pub blocks: Vec<BlockRef>,
    /// The segment's tail after its records, once they were all appended and synced.
    pub tail: Option<Tail>,
    pub result: Result<(), JournalError>,
}

/// A batch handed to its background task.
struct Launched {
    areas: Areas,
    task: JoinHandle<BatchOutcome>,
}

/// Where a batch task appends: at a known tail, or after the previous batch's records.
enum TailFrom {
    Ready(Tail),
    After(Handoff),
}

/// What a batch task hears from the one launched before it: the tail once that one's
/// records are written, and a signal once they are synced. A sender dropped unsent means
/// that batch failed.
struct Handoff {
    tail: oneshot::Receiver<Tail>,
    synced: oneshot::Receiver<()>,
}

/// The sending halves of a [`Handoff`].
struct HandOn {
    tail: oneshot::Sender<Tail>,
    synced: oneshot::Sender<()>,
}

fn handoff() -> (HandOn, Handoff) {
    let (tail, tail_rx) = oneshot::channel();
    let (synced, synced_rx) = oneshot::channel();
    (HandOn { tail, synced }, Handoff { tail: tail_rx, synced: synced_rx })
}

/// The open cycle's staged writes and its launched batches.
#[derive(Default)]
pub(crate) struct CycleWrites {
    staged: Vec<Staged>,
    staged_areas: Areas,
    staged_bytes: u64,
    launched: VecDeque<Launched>,
    // The newest launched batch's handoff, which the next batch appends after.
    last_tail: Option<Handoff>,
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

    /// Whether the write overlaps a launched batch, whose writes must land before its
    /// undo is read.
    pub fn overlaps_launched(&self, w: &BlockWrite) -> bool {
        self.launched
            .iter()
            .any(|l| l.areas.overlaps(w.disk, w.offset, w.len))
    }

    /// Stages `write` for the next batch.
    pub fn stage(&mut self, disk: Arc<dyn Transport>, write: BlockWrite) {
        self.staged_areas.insert(write.disk, write.offset, write.len);
        self.staged_bytes += u64::from(write.len);
        self.staged.push(Staged { disk, write });
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

    /// Batches launched and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.launched.len()
    }

    /// Waits for the oldest launched batch; `None` when none is left. A task that died
    /// (panicked) yields `Err`: which of its records reached the disk is then unknown here.
    pub async fn settle_oldest(&mut self) -> Option<Result<BatchOutcome, JournalError>> {
        let launched = self.launched.pop_front()?;
        if self.launched.is_empty() {
            // Its tail reaches the journal through the outcome.
            self.last_tail = None;
        }
        Some(
            launched
                .task
                .await
                .map_err(|e| JournalError::Protocol(format!("journal batch task failed: {e}"))),
        )
    }

    /// Hands a batch to a background task that appends its undo records after the
    /// previous batch's (or at `tail` when none is in flight), syncs them, and then writes
    /// the batch onto the replicas.
    pub fn launch(&mut self, staged: Vec<Staged>, journal: BatchJournal, tail: Tail) {
        let mut areas = Areas::default();
        for s in &staged {
            areas.insert(s.write.disk, s.write.offset, s.write.len);
        }
        let from = match self.last_tail.take() {
            Some(previous) => TailFrom::After(previous),
            None => TailFrom::Ready(tail),
        };
        let (next, receiver) = handoff();
        self.last_tail = Some(receiver);
        let applied = self.applied.clone();
        let task = tokio::spawn(run_batch(staged, journal, from, next, applied));
        self.launched.push_back(Launched { areas, task });
    }

    /// Abandons the cycle's writes: drops the staged ones and waits for the launched
    /// batches to stop touching the replicas, whatever their outcome, which it returns
    /// oldest first.
    pub async fn cancel(&mut self) -> Vec<Result<BatchOutcome, JournalError>> {
        self.take_staged();
        let mut outcomes = Vec::new();
        while let Some(outcome) = self.settle_oldest().await {
            outcomes.push(outcome);
        }
        outcomes
    }
}

/// A batch's background task: undo appended and synced, then the replica writes.
async fn run_batch(
    staged: Vec<Staged>,
    journal: BatchJournal,
    from: TailFrom,
    next: HandOn,
    applied: Arc<AtomicU64>,
) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        blocks: Vec::with_capacity(staged.len()),
        tail: None,
        result: Ok(()),
    };
    let undos = match read_undo(&staged).await {
        Ok(undos) => undos,
        Err(e) => return outcome.failed(e.into()),
    };
    let writes: Vec<_> = staged.into_iter().map(|s| (s.disk, s.write)).collect();
    let earlier_failed = || JournalError::Protocol("an earlier batch of the cycle failed".into());
    let (tail, previous_synced) = match from {
        TailFrom::Ready(tail) => (tail, None),
        // Dropped without a tail: the previous batch failed, and the cycle with it.
        TailFrom::After(previous) => match previous.tail.await {
            Ok(tail) => (tail, Some(previous.synced)),
            Err(_) => return outcome.failed(earlier_failed()),
        },
    };
    let (cycle, fault) = (journal.cycle, journal.fault.clone());
    let HandOn { tail: tail_to_next, synced: synced_to_next } = next;
    let appended = tokio::task::spawn_blocking(move || {
        let mut blocks = Vec::with_capacity(writes.len());
        let result = append_undo(&journal, tail, &writes, &undos, &mut blocks).and_then(|tail| {
            // The next batch appends while this one syncs, so that the journal's appends
            // are not spaced by fsync latency.
            let _ = tail_to_next.send(tail);
            journal.file.sync_data().map_err(io("fsync", &journal.path))?;
            Ok(tail)
        });
        (writes, blocks, result)
    })
    .await;
    let (writes, blocks, result) = match appended {
        Ok(done) => done,
        Err(e) => {
            return outcome.failed(JournalError::Protocol(format!(
                "journal append task failed: {e}"
            )));
        }
    };
    outcome.blocks = blocks;
    let tail = match result {
        Ok(tail) => tail,
        Err(e) => return outcome.failed(e),
    };
    outcome.tail = Some(tail);
    // A batch applies only once every record before its own is synced too: if an earlier
    // batch's sync failed, records after it must not be the only ones a restart can trust.
    if let Some(previous) = previous_synced
        && previous.await.is_err()
    {
        return outcome.failed(earlier_failed());
    }
    let _ = synced_to_next.send(());
    outcome.result = apply(writes, applied, fault.map(|f| (f, cycle))).await;
    outcome
}

/// Reads what each staged write will overwrite (`None` where that is a hole), in the
/// order staged: one batched read per replica.
async fn read_undo(staged: &[Staged]) -> Result<Vec<Option<Bytes>>, TransportError> {
    let mut by_disk: BTreeMap<u32, (&Arc<dyn Transport>, Vec<usize>)> = BTreeMap::new();
    for (i, s) in staged.iter().enumerate() {
        by_disk.entry(s.write.disk).or_insert_with(|| (&s.disk, Vec::new())).1.push(i);
    }
    let reads = by_disk.into_values().map(|(disk, at)| async move {
        let ranges = at.iter().map(|&i| (staged[i].write.offset, staged[i].write.len as usize)).collect();
        Ok::<_, TransportError>((at, disk.read_data_many(ranges).await?))
    });
    let mut undos = vec![None; staged.len()];
    for (at, read) in futures::future::try_join_all(reads).await? {
        for (i, undo) in at.into_iter().zip(read) {
            undos[i] = undo;
        }
    }
    Ok(undos)
}

impl BatchOutcome {
    fn failed(mut self, error: JournalError) -> Self {
        self.result = Err(error);
        self
    }
}

/// Appends one undo record per write at `tail`, unsynced: the caller syncs them before
/// any of the writes touches a replica, the rule that makes a crash recoverable. Pushes
/// each record's place to `blocks` as it is written; returns the new tail.
fn append_undo(
    journal: &BatchJournal,
    mut tail: Tail,
    writes: &[(Arc<dyn Transport>, BlockWrite)],
    undos: &[Option<Bytes>],
    blocks: &mut Vec<BlockRef>,
) -> Result<Tail, JournalError> {
    let (file, path, cycle) = (&*journal.file, journal.path.as_path(), journal.cycle);
    for ((_, w), old) in writes.iter().zip(undos) {
        let undo = old.as_deref().filter(|old| !crate::hash::is_zero(old));
        let record_offset = match &journal.fault {
            // Crash tests stop halfway through a record: the general path does that.
            Some(hook) => {
                let index = journal.first_index + blocks.len() as u64;
                let midway = || hook(FaultSite::MidBlockRecord { cycle, index });
                let record = Record::Block {
                    cycle,
                    disk: w.disk,
                    offset: w.offset,
                    len: w.len,
                    undo: undo.map(<[u8]>::to_vec),
                };
                append_record(file, path, &mut tail, &record, Some(&midway))?
            }
            None => append_block(file, path, &mut tail, cycle, w, undo)?,
        };
        blocks.push(BlockRef {
            segment: journal.segment,
            record_offset,
            disk: w.disk,
            disk_offset: w.offset,
            len: w.len,
        });
    }
    Ok(tail)
}

/// One replica and the writes of a batch that go to it.
type ReplicaWrites = (Arc<dyn Transport>, Vec<(u64, Bytes)>);

/// Writes a batch onto the replicas: each replica's data in one batched write, the
/// replicas at once, and zeros as [`Transport::write_zeroes`] (a hole on a sparse
/// replica). Returns the first error. The crash tests' hook hears of each block once
/// its group has landed.
async fn apply(
    writes: Vec<(Arc<dyn Transport>, BlockWrite)>,
    applied: Arc<AtomicU64>,
    fault: Option<(FaultHook, u64)>,
) -> Result<(), JournalError> {
    let mut groups: BTreeMap<u32, ReplicaWrites> = BTreeMap::new();
    let mut zeros = Vec::new();
    for (disk, w) in writes {
        match w.data {
            Some(data) => groups.entry(w.disk).or_insert_with(|| (disk, Vec::new())).1.push((w.offset, data)),
            None => zeros.push((disk, w.offset, w.len)),
        }
    }
    let mut pending: Vec<TransportFuture<'static, usize>> = Vec::with_capacity(groups.len() + zeros.len());
    for (disk, group) in groups.into_values() {
        pending.push(Box::pin(async move {
            let blocks = group.len();
            disk.write_many(group).await.map(|()| blocks)
        }));
    }
    for (disk, offset, len) in zeros {
        pending.push(Box::pin(async move { disk.write_zeroes(offset, u64::from(len)).await.map(|()| 1) }));
    }
    let mut done = futures::stream::iter(pending).buffer_unordered(APPLY_IN_FLIGHT);
    while let Some(blocks) = done.next().await {
        for _ in 0..blocks? {
            let index = applied.fetch_add(1, Ordering::SeqCst);
            if let Some((hook, cycle)) = &fault {
                hook(FaultSite::AfterApplyBlock { cycle: *cycle, index });
            }
        }
    }
    Ok(())
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
