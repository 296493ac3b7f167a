//! The retention journal: append-only segment files of checksummed records on the master
//! target's retention volume.
//!
//! A cycle's undo goes ahead of the replica. After `Begin`, the cycle's writes come in
//! batches: for each batch the journal reads what every write will overwrite on the
//! replica, appends one `Block` record per write holding those undo bytes, fsyncs, and
//! only then writes the new bytes onto the replica. A batch does this in a background
//! task while the next one is staged, and appends its records as soon as the previous
//! batch's are written; it applies once they and its own are synced. When every batch is on the replicas they are flushed, and `Commit`
//! with an fsync makes the cycle a recovery point.
//!
//! The new bytes are never journaled (the replica holds them), so each changed byte is
//! written twice, not three times as with undo and redo both in the journal.
//!
//! A crash before `Commit` leaves an uncommitted cycle. Every write it may have made has
//! its undo record on disk, so [`Journal::resume`] rolls the replicas back with those
//! records, newest first, and cuts the cycle; the process server, which keeps its
//! snapshot until the point is acknowledged, sends the cycle again. A write that overlaps
//! an earlier one of the same cycle reads its undo after that one landed, so the newest
//! first roll back still ends exactly at the cycle's start.

mod append;
mod inflight;
mod record;
mod scan;

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use tracing::{info, info_span, Instrument};

pub use record::{Consistency, RecoveryPoint};
pub use scan::TailCut;

use crate::{error::JournalError, transport::Transport};
use append::{Tail, append_record};
use inflight::{BATCHES_IN_FLIGHT, BatchJournal, BatchOutcome, CycleWrites};
use record::Record;
use scan::{BlockRef, CycleEntry, Index, SegmentInfo, scan, segment_path};

/// The disks of a consistency group by id: replicas, or materialisation targets.
pub type DiskSet = BTreeMap<u32, Arc<dyn Transport>>;

/// Tuning of the journal.
#[derive(Debug, Clone, Copy)]
pub struct JournalConfig {
    /// A new segment is started after a recovery point once the active one is this big.
    /// Pruning removes whole segments, so this is the granularity of retention.
    pub segment_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { segment_bytes: 256 << 20 }
    }
}

/// Work left over from a crash that [`Journal::resume`] must finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing: the replicas hold the newest point.
    None,
    /// This uncommitted cycle may have reached the replicas in part: its undo records
    /// must roll them back before the cycle is cut (and sent again).
    RollBack(u64),
    /// The replicas must be rolled back to this point.
    Rewind(u64),
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// A torn tail that was cut off, with its segment and offset.
    pub tail_cut: Option<TailCut>,
    /// An uncommitted cycle found at open: [`Journal::resume`] rolls it back and the
    /// sender must send it again.
    pub discarded_cycle: Option<u64>,
    /// Work to finish before new cycles.
    pub pending: Pending,
}

/// Where a test may stop the journal, to crash it at that exact moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSite {
    /// Half of the `index`th block record of `cycle` has been written.
    MidBlockRecord {
        /// The cycle.
        cycle: u64,
        /// Blocks appended before this one.
        index: u64,
    },
    /// The `index`th block of `cycle` has been written to the replica (the cycle is not
    /// committed yet).
    AfterApplyBlock {
        /// The cycle.
        cycle: u64,
        /// Blocks applied before this one.
        index: u64,
    },
}

/// A callback invoked at each [`FaultSite`]; crash tests make it stop the process.
pub type FaultHook = Arc<dyn Fn(FaultSite) + Send + Sync>;

/// What pruning removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Segment files deleted.
    pub segments_removed: Vec<PathBuf>,
    /// The oldest point still retained.
    pub oldest_point: Option<RecoveryPoint>,
}

/// Writes staged before their batch is journaled and launched. The undo of a batch is
/// synced with one fsync, so a batch must not be tiny; but the first batch's undo is
/// appended only once it is full, so a large one delays everything behind it. Batches of
/// 128 writes (8 MiB of 64 KiB blocks), four in flight, made a 1% cycle onto a warm
/// replica faster than batches of 512 writes, two in flight, and cut its peak memory.
const BATCH_WRITES: usize = 128;
/// ... and never more than this many bytes, which bounds memory whatever the block size:
/// each batch in flight holds its new bytes and their undo.
const BATCH_BYTES: u64 = 8 << 20;

/// The journal of one consistency group.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    index: Index,
    active: Arc<File>,
    active_len: u64,
    readers: HashMap<u64, File>,
    open_cycle: Option<u64>,
    fault: Option<FaultHook>,
    // Where writeback of the active segment was last started (see `append::append_block`).
    writeback_from: u64,
    writes: CycleWrites,
    // Writes staged in the open cycle so far: each becomes one record.
    cycle_records: u64,
}

/// One write of a cycle, for [`Journal::stage_block`].
#[derive(Debug, Clone)]
pub struct BlockWrite {
    /// Disk id inside the consistency group.
    pub disk: u32,
    /// Offset on the disk.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// The new bytes; `None` for zeros.
    pub data: Option<Bytes>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).field("segments", &self.index.segments.len()).finish()
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + use<> {
    let path = path.to_path_buf();
    move |source| JournalError::Io { op, path, source }
}

fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync directory", dir))
}

impl Journal {
    fn new(dir: PathBuf, config: JournalConfig, index: Index, active: Arc<File>, active_len: u64) -> Self {
        Self {
            dir,
            config,
            index,
            active,
            active_len,
            readers: HashMap::new(),
            open_cycle: None,
            fault: None,
            writeback_from: 0,
            writes: CycleWrites::default(),
            cycle_records: 0,
        }
    }

    /// Creates a new journal in the empty directory `dir`. `base` is the point the replicas
    /// hold right now (after the initial sync).
    pub fn create(dir: impl AsRef<Path>, config: JournalConfig, base: RecoveryPoint) -> Result<Self, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        if !scan::list_segments(&dir)?.is_empty() {
            return Err(JournalError::Protocol(format!("{} already holds a journal; open it instead", dir.display())));
        }
        let index = Index { max_cycle: base.seq, ..Index::default() };
        let path = segment_path(&dir, 0);
        let active = Arc::new(OpenOptions::new().create_new(true).append(true).open(&path).map_err(io("create segment", &path))?);
        let mut journal = Self::new(dir, config, index, active, 0);
        journal.start_segment(0, base)?;
        journal.index.oldest_base = Some(base);
        Ok(journal)
    }

    /// Opens an existing journal, cutting a torn tail. An uncommitted cycle is reported
    /// and left for [`Journal::resume`], which needs the replicas to roll it back.
    /// Corruption anywhere else fails with [`JournalError::Corrupt`], and a journal of an
    /// older format with [`JournalError::OldFormat`].
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<(Self, OpenReport), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        let _span = info_span!("journal_open", dir = %dir.display()).entered();
        let (index, tail_cut) = scan(&dir, true)?;
        let seg = index.segments.last().expect("at least one segment");
        let path = seg.path.clone();
        let active_len = seg.len;
        let active = Arc::new(OpenOptions::new().append(true).open(&path).map_err(io("open segment", &path))?);
        let journal = Self::new(dir, config, index, active, active_len);
        let pending = journal.pending();
        let discarded_cycle = match pending {
            Pending::RollBack(seq) => {
                info!(cycle = seq, "found an uncommitted cycle; resume rolls it back");
                Some(seq)
            }
            _ => None,
        };
        Ok((journal, OpenReport { tail_cut, discarded_cycle, pending }))
    }

    /// Installs a fault hook (crash tests only).
    pub fn set_fault_hook(&mut self, hook: FaultHook) {
        self.fault = Some(hook);
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every retained recovery point, oldest first.
    pub fn points(&self) -> Vec<RecoveryPoint> {
        let mut points: Vec<RecoveryPoint> = self.index.oldest_base.into_iter().collect();
        let floor = self.index.oldest_base.map_or(0, |b| b.seq);
        points.extend(self.index.cycles.values().filter(|c| c.committed && c.point.seq > floor).map(|c| c.point));
        points
    }

    /// The newest point: what the replicas hold once nothing is pending.
    pub fn newest_point(&self) -> Option<RecoveryPoint> {
        self.points().last().copied()
    }

    /// The sequence number the next cycle will get.
    pub fn next_cycle(&self) -> u64 {
        self.index.max_cycle + 1
    }

    /// How many blocks each retained cycle holds, by cycle.
    pub fn cycle_blocks(&self) -> BTreeMap<u64, usize> {
        self.index.cycles.iter().map(|(s, c)| (*s, c.blocks.len())).collect()
    }

    /// Total bytes of the segment files.
    pub fn size_bytes(&self) -> u64 {
        self.index.segments.iter().map(|s| s.len).sum()
    }

    fn pending(&self) -> Pending {
        if let Some(p) = self.index.rewinding {
            return Pending::Rewind(p);
        }
        match self.index.cycles.last_key_value() {
            Some((&seq, e)) if !e.committed && self.open_cycle != Some(seq) => Pending::RollBack(seq),
            _ => Pending::None,
        }
    }

    fn tail(&self) -> Tail {
        Tail { len: self.active_len, lsn: self.index.next_lsn, writeback_from: self.writeback_from }
    }

    fn set_tail(&mut self, tail: Tail) {
        self.active_len = tail.len;
        self.index.next_lsn = tail.lsn;
        self.writeback_from = tail.writeback_from;
        if let Some(seg) = self.index.segments.last_mut() {
            seg.len = tail.len;
        }
    }

    /// Appends one of the journal's own records (block records come from batch tasks).
    fn append(&mut self, record: &Record) -> Result<u64, JournalError> {
        let mut tail = self.tail();
        let offset = append_record(&self.active, &self.active_path(), &mut tail, record, None)?;
        self.set_tail(tail);
        Ok(offset)
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        let path = self.active_path();
        self.active.sync_data().map_err(io("fsync", &path))
    }

    fn active_path(&self) -> PathBuf {
        self.index.segments.last().map_or_else(|| segment_path(&self.dir, 0), |s| s.path.clone())
    }

    /// Writes the header of a fresh segment (the active file must be empty and new).
    fn start_segment(&mut self, seg_index: u64, base: RecoveryPoint) -> Result<(), JournalError> {
        let path = segment_path(&self.dir, seg_index);
        self.index.segments.push(SegmentInfo { index: seg_index, path: path.clone(), base, len: 0 });
        self.active_len = 0;
        self.append(&Record::SegmentStart { index: seg_index, base })?;
        self.sync()?;
        fsync_dir(&self.dir)
    }

    fn roll(&mut self, base: RecoveryPoint) -> Result<(), JournalError> {
        // The old segment is complete on disk before the new one names that point as its
        // base.
        self.sync()?;
        let next = self.index.segments.last().map_or(0, |s| s.index + 1);
        let path = segment_path(&self.dir, next);
        self.active = Arc::new(OpenOptions::new().create_new(true).append(true).open(&path).map_err(io("create segment", &path))?);
        self.start_segment(next, base)?;
        info!(segment = %path.display(), base = base.seq, "started journal segment");
        Ok(())
    }

    /// Starts cycle `next_cycle()`, whose point will be at `time_ms` with `consistency`.
    pub fn begin_cycle(&mut self, time_ms: u64, consistency: Consistency) -> Result<u64, JournalError> {
        if self.open_cycle.is_some() || self.pending() != Pending::None {
            return Err(JournalError::Protocol("a cycle is already open or recovery is pending; resume first".into()));
        }
        let point = RecoveryPoint { seq: self.next_cycle(), time_ms, consistency };
        let offset = self.append(&Record::Begin { point })?;
        let segment = self.index.segments.last().expect("segment").index;
        self.index.max_cycle = point.seq;
        self.index.cycles.insert(
            point.seq,
            CycleEntry { point, segment, begin_offset: offset, blocks: Vec::new(), committed: false },
        );
        self.open_cycle = Some(point.seq);
        self.cycle_records = 0;
        self.writes.begin();
        Ok(point.seq)
    }

    /// Adds a write to the open cycle. Once enough writes are staged, a background task
    /// reads what they overwrite on `replicas`, appends that undo and syncs it as one
    /// batch, and only then writes them onto the replicas, while the next writes
    /// arrive. Writes apply in the order given: one that overlaps an earlier write
    /// of the cycle waits for it to land, so that its undo holds that write's bytes.
    /// Replicas are flushed at [`Journal::commit_cycle`].
    ///
    /// Fails with [`JournalError::Protocol`] outside a cycle, for an unknown disk or a
    /// length that does not match the data; a replica or journal failure of an earlier
    /// write may also surface here. The cycle then stays open for
    /// [`Journal::abort_cycle`]. Not idempotent: each call adds a record to the cycle.
    pub async fn stage_block(&mut self, replicas: &DiskSet, write: BlockWrite) -> Result<(), JournalError> {
        let cycle = self.open_cycle.ok_or_else(|| JournalError::Protocol("a block outside a cycle".into()))?;
        if write.len == 0 || write.data.as_ref().is_some_and(|d| d.len() != write.len as usize) {
            let got = write.data.as_ref().map_or(0, Bytes::len);
            return Err(JournalError::Protocol(format!(
                "write at {} on disk {} claims {} bytes but holds {got}",
                write.offset, write.disk, write.len
            )));
        }
        let disk = disk_of(replicas, write.disk)?;
        if self.writes.overlaps_staged(&write) {
            self.journal_staged(cycle).await?;
        }
        if self.writes.overlaps_launched(&write) {
            self.settle(0).await?;
        }
        self.writes.stage(disk, write);
        let (count, bytes) = self.writes.staged_size();
        if count >= BATCH_WRITES || bytes >= BATCH_BYTES {
            self.journal_staged(cycle).await?;
        }
        Ok(())
    }

    /// Hands the staged batch to a background task, which appends its undo records after
    /// the previous batch's, syncs them, and then writes the batch onto the replicas. At
    /// most [`BATCHES_IN_FLIGHT`] batches run at once, which bounds memory.
    async fn journal_staged(&mut self, cycle: u64) -> Result<(), JournalError> {
        if self.writes.staged_size().0 == 0 {
            return Ok(());
        }
        // Settled first: if an older batch failed, the staged writes stay staged, and
        // `abort_cycle` drops them.
        self.settle(BATCHES_IN_FLIGHT - 1).await?;
        let staged = self.writes.take_staged();
        let journal = BatchJournal {
            file: self.active.clone(),
            path: self.active_path(),
            segment: self.index.segments.last().expect("segment").index,
            cycle,
            first_index: self.cycle_records,
            fault: self.fault.clone(),
        };
        self.cycle_records += staged.len() as u64;
        let tail = self.tail();
        self.writes.launch(staged, journal, tail);
        Ok(())
    }

    /// Waits for launched batches, oldest first, until at most `keep` are in flight, and
    /// adds their records to the index. Stops at the first failure; the batches after it
    /// are left for [`Journal::abort_cycle`].
    async fn settle(&mut self, keep: usize) -> Result<(), JournalError> {
        while self.writes.in_flight() > keep {
            let Some(outcome) = self.writes.settle_oldest().await else { break };
            self.merge(outcome)?;
        }
        Ok(())
    }

    /// Adds a settled batch's records to the open cycle and moves the tail past them;
    /// returns the batch's failure, if any.
    fn merge(&mut self, outcome: Result<BatchOutcome, JournalError>) -> Result<(), JournalError> {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                // The task died: which of its records reached the segment is unknown
                // here, so the index is read back from the disk, as after a crash.
                self.reindex()?;
                return Err(e);
            }
        };
        if let Some(cycle) = self.open_cycle {
            self.index.cycles.get_mut(&cycle).expect("open cycle indexed").blocks.extend(outcome.blocks);
        }
        if let Some(tail) = outcome.tail {
            self.set_tail(tail);
        }
        outcome.result
    }

    /// Rebuilds the index from the segments on disk, cutting a torn tail.
    fn reindex(&mut self) -> Result<(), JournalError> {
        let (index, _) = scan(&self.dir, true)?;
        let len = index.segments.last().map_or(0, |s| s.len);
        self.index = index;
        self.active_len = len;
        self.writeback_from = self.writeback_from.min(len);
        Ok(())
    }

    /// Commits the open cycle: flushes the replicas, then appends `Commit` and syncs it.
    /// From here the cycle's point exists. Returns the point. Fails with
    /// [`JournalError::Protocol`] outside a cycle; after a failure the cycle stays open
    /// for [`Journal::abort_cycle`].
    pub async fn commit_cycle(&mut self, replicas: &DiskSet) -> Result<RecoveryPoint, JournalError> {
        let cycle = self.open_cycle.ok_or_else(|| JournalError::Protocol("commit outside a cycle".into()))?;
        let span = info_span!("journal_commit", cycle);
        async {
            self.journal_staged(cycle).await?;
            self.settle(0).await?;
            for disk in replicas.values() {
                disk.flush().await?;
            }
            let blocks = self.index.cycles[&cycle].blocks.len() as u64;
            self.append(&Record::Commit { cycle, blocks })?;
            self.sync()?;
            self.open_cycle = None;
            let entry = self.index.cycles.get_mut(&cycle).expect("cycle");
            entry.committed = true;
            let point = entry.point;
            if self.active_len >= self.config.segment_bytes {
                self.roll(point)?;
            }
            Ok(point)
        }
        .instrument(span)
        .await
    }

    /// Drops the open (uncommitted) cycle, if any: rolls back whatever of it reached the
    /// replicas and cuts its records from the segment as if never written. Used when a
    /// session fails halfway through a cycle. Returns the dropped cycle. Idempotent: if it
    /// fails, the cycle is left for [`Journal::resume`] to roll back.
    pub async fn abort_cycle(&mut self, replicas: &DiskSet) -> Result<Option<u64>, JournalError> {
        let Some(cycle) = self.open_cycle else { return Ok(None) };
        for outcome in self.writes.cancel().await {
            // Failures are why the cycle is aborted; its records are what counts here.
            let _ = self.merge(outcome);
        }
        self.open_cycle = None;
        self.discard(cycle, replicas).await?;
        Ok(Some(cycle))
    }

    /// Rolls the uncommitted `cycle` back on `replicas` and cuts it from the journal.
    async fn discard(&mut self, cycle: u64, replicas: &DiskSet) -> Result<(), JournalError> {
        let span = info_span!("journal_discard", cycle);
        async {
            let entry = self.index.cycles.get(&cycle).cloned().expect("cycle indexed");
            // Any of its records may be on disk with its write done: undo them all.
            self.write_undo(entry.blocks.iter().rev().copied().collect(), replicas).await?;
            let path = self.active_path();
            // Writes and reads go through separate handles: reopen to truncate.
            let f = OpenOptions::new().write(true).open(&path).map_err(io("open for truncate", &path))?;
            f.set_len(entry.begin_offset).map_err(io("truncate", &path))?;
            f.sync_all().map_err(io("fsync", &path))?;
            self.active_len = entry.begin_offset;
            self.writeback_from = self.writeback_from.min(entry.begin_offset);
            if let Some(seg) = self.index.segments.last_mut() {
                seg.len = entry.begin_offset;
            }
            self.index.cycles.remove(&cycle);
            self.index.max_cycle = cycle - 1;
            info!(blocks = entry.blocks.len(), "rolled back and cut an uncommitted cycle");
            Ok(())
        }
        .instrument(span)
        .await
    }

    fn reader(&mut self, segment: u64) -> Result<(&File, PathBuf), JournalError> {
        let path = segment_path(&self.dir, segment);
        let file = match self.readers.entry(segment) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(File::open(&path).map_err(io("open segment", &path))?),
        };
        Ok((file, path))
    }

    /// Reads a block record's undo bytes; `None` means zeros.
    fn undo_data(&mut self, b: &BlockRef) -> Result<Option<Bytes>, JournalError> {
        let (file, path) = self.reader(b.segment)?;
        scan::read_undo_at(file, &path, b.record_offset)
    }

    /// Writes the undo bytes of `blocks`, in the order given, onto `targets` and flushes
    /// them.
    async fn write_undo(&mut self, blocks: Vec<BlockRef>, targets: &DiskSet) -> Result<(), JournalError> {
        for b in blocks {
            let disk = disk_of(targets, b.disk)?;
            let data = self.undo_data(&b)?;
            write_block(disk.as_ref(), b.disk_offset, b.len, data).await?;
        }
        for disk in targets.values() {
            disk.flush().await?;
        }
        Ok(())
    }

    /// Finishes whatever a crash interrupted: rolls back an uncommitted cycle or completes
    /// a rewind. Afterwards the replicas hold the newest point. Returns what it found;
    /// idempotent.
    pub async fn resume(&mut self, replicas: &DiskSet) -> Result<Pending, JournalError> {
        let pending = self.pending();
        match pending {
            Pending::None => {}
            Pending::RollBack(cycle) => self.discard(cycle, replicas).await?,
            Pending::Rewind(point) => self.finish_rewind(point, replicas).await?,
        }
        Ok(pending)
    }

    fn check_point(&self, point: u64) -> Result<(), JournalError> {
        if self.points().iter().any(|p| p.seq == point) { Ok(()) } else { Err(JournalError::UnknownPoint(point)) }
    }

    /// Writes the undo data of every live cycle newer than `point` onto `targets`, newest
    /// first, so each byte ends up as it was at `point`.
    async fn roll_back(&mut self, point: u64, targets: &DiskSet) -> Result<(), JournalError> {
        let newer: Vec<BlockRef> =
            self.index.cycles.range(point + 1..).rev().flat_map(|(_, c)| c.blocks.iter().rev().copied()).collect();
        self.write_undo(newer, targets).await
    }

    /// Writes the disks as they were at `point` onto `targets` (new disks of the same
    /// sizes, e.g. for a test failover). The replicas are only read.
    pub async fn materialise(&mut self, point: u64, replicas: &DiskSet, targets: &DiskSet) -> Result<(), JournalError> {
        self.check_point(point)?;
        if self.pending() != Pending::None || self.open_cycle.is_some() {
            return Err(JournalError::Protocol("finish the pending cycle before materialising".into()));
        }
        let span = info_span!("journal_materialise", point);
        async {
            // The roll-back ends with every target's flush.
            for (id, target) in targets {
                let source = disk_of(replicas, *id)?;
                crate::copy::copy_allocated_unflushed(source.as_ref(), target.as_ref(), None).await?;
            }
            self.roll_back(point, targets).await
        }
        .instrument(span)
        .await
    }

    /// Rolls the replicas themselves back to `point` (failover to an older point). Newer
    /// points are dropped. Crash-safe: an interrupted rewind is finished by
    /// [`Journal::resume`].
    pub async fn rewind_replicas(&mut self, point: u64, replicas: &DiskSet) -> Result<(), JournalError> {
        self.check_point(point)?;
        if self.pending() != Pending::None || self.open_cycle.is_some() {
            return Err(JournalError::Protocol("finish the pending cycle before rewinding".into()));
        }
        self.append(&Record::Rewind { point })?;
        self.sync()?;
        self.index.rewinding = Some(point);
        self.finish_rewind(point, replicas).await
    }

    async fn finish_rewind(&mut self, point: u64, replicas: &DiskSet) -> Result<(), JournalError> {
        self.roll_back(point, replicas).await?;
        self.append(&Record::RewindDone { point })?;
        self.sync()?;
        let segment = self.index.segments.last().expect("segment").index;
        self.index.rewinds.push((segment, point));
        self.index.cycles.retain(|seq, _| *seq <= point);
        self.index.rewinding = None;
        let base = self
            .points()
            .into_iter()
            .find(|p| p.seq == point)
            .ok_or(JournalError::UnknownPoint(point))?;
        // A fresh segment whose base is the rewound-to point keeps pruning simple: no
        // segment ever mixes cycles from before and after a rewind.
        self.roll(base)?;
        self.index.oldest_base = self.index.live_oldest_base();
        Ok(())
    }

    /// Deletes the oldest segments whose points are all older than `retention_ms` before
    /// `now_ms`. Every point newer than the cutoff stays materialisable, and so does the
    /// newest point whatever its age.
    pub fn prune(&mut self, retention_ms: u64, now_ms: u64) -> Result<PruneReport, JournalError> {
        let cutoff = now_ms.saturating_sub(retention_ms);
        let mut report = PruneReport::default();
        let idle = self.open_cycle.is_none() && self.pending() == Pending::None;
        // With one segment nothing could go: start a new one if the current one holds
        // points that have expired.
        if idle && self.index.segments.len() == 1 && self.points().iter().any(|p| p.time_ms < cutoff) {
            let newest = self.newest_point().expect("points exist");
            if newest.seq != self.index.segments[0].base.seq {
                self.roll(newest)?;
            }
        }
        while self.index.segments.len() > 1 {
            let (first, second) = (&self.index.segments[0], &self.index.segments[1]);
            let survives = |p: &RecoveryPoint| {
                p.seq == second.base.seq || self.index.cycles.get(&p.seq).is_some_and(|c| c.segment != first.index)
            };
            if self.points().iter().any(|p| p.time_ms >= cutoff && !survives(p)) {
                break;
            }
            let gone = self.index.segments.remove(0);
            std::fs::remove_file(&gone.path).map_err(io("remove segment", &gone.path))?;
            self.readers.remove(&gone.index);
            self.index.cycles.retain(|_, c| c.segment != gone.index);
            self.index.rewinds.retain(|(s, _)| *s != gone.index);
            self.index.oldest_base = self.index.live_oldest_base();
            info!(segment = %gone.path.display(), "pruned journal segment");
            report.segments_removed.push(gone.path);
        }
        if !report.segments_removed.is_empty() {
            fsync_dir(&self.dir)?;
        }
        report.oldest_point = self.points().first().copied();
        Ok(report)
    }

    /// Re-reads every record of every segment and checks its checksum, reporting the first
    /// bad one with its segment and offset. Nothing is repaired.
    pub fn verify(&self) -> Result<(), JournalError> {
        scan(&self.dir, false).map(|_| ())
    }

    /// Checks a journal directory without opening it for writing: like [`Journal::verify`].
    pub fn verify_dir(dir: impl AsRef<Path>) -> Result<Option<TailCut>, JournalError> {
        scan(dir.as_ref(), false).map(|(_, cut)| cut)
    }
}

fn disk_of(set: &DiskSet, disk: u32) -> Result<Arc<dyn Transport>, JournalError> {
    set.get(&disk).cloned().ok_or_else(|| JournalError::Protocol(format!("no disk {disk} in the given disk set")))
}

/// Writes a block's bytes, or deallocates it when they are all zeros so replicas stay
/// sparse.
async fn write_block(disk: &dyn Transport, offset: u64, len: u32, data: Option<Bytes>) -> Result<(), JournalError> {
    match data {
        Some(d) => disk.write_at(offset, d).await?,
        None => disk.write_zeroes(offset, u64::from(len)).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests;
