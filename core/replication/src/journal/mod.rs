//! The retention journal: append-only segment files of checksummed records on the master
//! target's retention volume.
//!
//! A cycle is written ahead of the replica: `Begin`, one `Block` per write holding the
//! bytes it overwrites (undo) and the bytes it writes (redo), then `Commit` and an fsync.
//! Only then are the redo bytes applied to the replica, followed by `Applied` and another
//! fsync, which is what makes the cycle a recovery point. A crash before `Commit` leaves
//! an uncommitted cycle that is discarded at open (the process server sends it again); a
//! crash after it leaves a committed cycle that is applied again from the journal. Undo
//! bytes are read from the replica before any of the cycle is applied, and never again, so
//! a resumed apply cannot capture its own writes as history.

mod record;
mod scan;

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use futures::StreamExt;
use tracing::{info, info_span, Instrument};

pub use record::{Consistency, RecoveryPoint};
pub use scan::TailCut;

use crate::{error::JournalError, transport::Transport};
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
    /// This committed cycle must be (re)applied to the replicas.
    Apply(u64),
    /// The replicas must be rolled back to this point.
    Rewind(u64),
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// A torn tail that was cut off, with its segment and offset.
    pub tail_cut: Option<TailCut>,
    /// An uncommitted cycle that was dropped; the sender must send it again.
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
    /// The `index`th block of `cycle` has been written to the replica.
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

/// Journal bytes appended between two starts of their writeback.
const WRITEBACK_PIECE: u64 = 8 << 20;

/// The journal of one consistency group.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    index: Index,
    active: File,
    active_len: u64,
    readers: HashMap<u64, File>,
    open_cycle: Option<u64>,
    fault: Option<FaultHook>,
    // Where writeback of the active segment was last started (see `append_block_parts`).
    writeback_from: u64,
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
        let active = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io("create segment", &path))?;
        let mut journal = Self { dir, config, index, active, active_len: 0, readers: HashMap::new(), open_cycle: None, fault: None, writeback_from: 0 };
        journal.start_segment(0, base)?;
        journal.index.oldest_base = Some(base);
        Ok(journal)
    }

    /// Opens an existing journal, cutting a torn tail and dropping an uncommitted cycle.
    /// Corruption anywhere else fails with [`JournalError::Corrupt`].
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<(Self, OpenReport), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        let _span = info_span!("journal_open", dir = %dir.display()).entered();
        let (mut index, tail_cut) = scan(&dir, true)?;
        let mut discarded_cycle = None;
        if let Some((&seq, entry)) = index.cycles.last_key_value()
            && !entry.committed
        {
            // Written but never committed: the replica was not touched, so the records can
            // go. Truncating keeps the segment a clean sequence of whole cycles.
            let seg = index.segments.last_mut().expect("a cycle lives in a segment");
            let f = OpenOptions::new().write(true).open(&seg.path).map_err(io("open for truncate", &seg.path))?;
            f.set_len(entry.begin_offset).map_err(io("truncate", &seg.path))?;
            f.sync_all().map_err(io("fsync", &seg.path))?;
            seg.len = entry.begin_offset;
            index.cycles.remove(&seq);
            index.max_cycle = seq - 1;
            discarded_cycle = Some(seq);
            info!(cycle = seq, "discarded an uncommitted cycle");
        }
        let pending = if let Some(p) = index.rewinding {
            Pending::Rewind(p)
        } else if let Some((&seq, e)) = index.cycles.last_key_value()
            && e.committed
            && !e.applied
        {
            Pending::Apply(seq)
        } else {
            Pending::None
        };
        let seg = index.segments.last().expect("at least one segment");
        let path = seg.path.clone();
        let active_len = seg.len;
        let active = OpenOptions::new().append(true).open(&path).map_err(io("open segment", &path))?;
        let journal = Self { dir, config, index, active, active_len, readers: HashMap::new(), open_cycle: None, fault: None, writeback_from: 0 };
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
        points.extend(self.index.cycles.values().filter(|c| c.applied && c.point.seq > floor).map(|c| c.point));
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
            Some((&seq, e)) if e.committed && !e.applied => Pending::Apply(seq),
            _ => Pending::None,
        }
    }

    fn append(&mut self, record: &Record) -> Result<u64, JournalError> {
        let bytes = record::encode(record, self.index.next_lsn);
        let offset = self.active_len;
        let path = self.active_path();
        match (&self.fault, record) {
            (Some(hook), Record::Block { cycle, .. }) => {
                let half = bytes.len() / 2;
                self.active.write_all(&bytes[..half]).map_err(io("append", &path))?;
                let index = self.index.cycles.get(cycle).map_or(0, |c| c.blocks.len() as u64);
                hook(FaultSite::MidBlockRecord { cycle: *cycle, index });
                self.active.write_all(&bytes[half..]).map_err(io("append", &path))?;
            }
            _ => self.active.write_all(&bytes).map_err(io("append", &path))?,
        }
        self.index.next_lsn += 1;
        self.active_len += bytes.len() as u64;
        if let Some(seg) = self.index.segments.last_mut() {
            seg.len = self.active_len;
        }
        Ok(offset)
    }

    /// Appends a block record straight from the caller's slices with one vectored write:
    /// the data is neither copied into a record buffer nor written in several calls,
    /// which at cycle rates is most of the journal's CPU.
    fn append_block_parts(
        &mut self,
        cycle: u64,
        disk: u32,
        offset: u64,
        len: u32,
        undo: Option<&[u8]>,
        redo: Option<&[u8]>,
    ) -> Result<u64, JournalError> {
        let parts = record::encode_block_parts(self.index.next_lsn, cycle, disk, offset, len, undo, redo);
        let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(4);
        slices.push(std::io::IoSlice::new(&parts.head));
        slices.extend([undo, redo].into_iter().flatten().map(std::io::IoSlice::new));
        slices.push(std::io::IoSlice::new(&parts.crc));
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let path = self.active_path();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = match self.active.write_vectored(rest) {
                Ok(0) => return Err(io("append", &path)(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("append", &path)(e)),
            };
            std::io::IoSlice::advance_slices(&mut rest, n);
        }
        let record_offset = self.active_len;
        self.index.next_lsn += 1;
        self.active_len += total as u64;
        // Block records are most of a cycle's journal bytes: their writeback starts as they
        // come, in pieces of a few MiB (fewer, larger submissions), so that the commit's
        // fsync waits for little more than the last piece.
        if self.writeback_from > record_offset {
            self.writeback_from = record_offset; // a new segment
        }
        if self.active_len - self.writeback_from >= WRITEBACK_PIECE {
            crate::transport::start_writeback(&self.active, self.writeback_from, self.active_len - self.writeback_from);
            self.writeback_from = self.active_len;
        }
        if let Some(seg) = self.index.segments.last_mut() {
            seg.len = self.active_len;
        }
        Ok(record_offset)
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
        // The old segment (with its unsynced `Applied` mark) is complete before the new one
        // names that point as its base.
        self.sync()?;
        let next = self.index.segments.last().map_or(0, |s| s.index + 1);
        let path = segment_path(&self.dir, next);
        self.active = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io("create segment", &path))?;
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
            CycleEntry { point, segment, begin_offset: offset, blocks: Vec::new(), committed: false, applied: false },
        );
        self.open_cycle = Some(point.seq);
        Ok(point.seq)
    }

    /// Appends one write of the open cycle: `old` is what the replica holds there now,
    /// `new` what the cycle writes. Both must have the same length.
    pub fn append_block(&mut self, disk: u32, offset: u64, old: &[u8], new: &[u8]) -> Result<(), JournalError> {
        let cycle = self.open_cycle.ok_or_else(|| JournalError::Protocol("append_block outside a cycle".into()))?;
        if old.len() != new.len() || new.is_empty() {
            return Err(JournalError::Protocol(format!("undo is {} bytes but redo is {}", old.len(), new.len())));
        }
        let zero = crate::hash::is_zero;
        let (undo, redo) = ((!zero(old)).then_some(old), (!zero(new)).then_some(new));
        let record_offset = if self.fault.is_some() {
            // Crash tests stop halfway through a record: the general path does that.
            let record = Record::Block { cycle, disk, offset, len: new.len() as u32, undo: undo.map(<[u8]>::to_vec), redo: redo.map(<[u8]>::to_vec) };
            self.append(&record)?
        } else {
            self.append_block_parts(cycle, disk, offset, new.len() as u32, undo, redo)?
        };
        let segment = self.index.segments.last().expect("segment").index;
        self.index.cycles.get_mut(&cycle).expect("open cycle indexed").blocks.push(BlockRef {
            segment,
            record_offset,
            disk,
            disk_offset: offset,
            len: new.len() as u32,
        });
        Ok(())
    }

    /// Commits the open cycle and syncs it: from here it will reach the replicas even
    /// across a crash.
    pub fn commit_cycle(&mut self) -> Result<u64, JournalError> {
        let cycle = self.open_cycle.take().ok_or_else(|| JournalError::Protocol("commit outside a cycle".into()))?;
        let blocks = self.index.cycles[&cycle].blocks.len() as u64;
        self.append(&Record::Commit { cycle, blocks })?;
        self.sync()?;
        self.index.cycles.get_mut(&cycle).expect("cycle").committed = true;
        Ok(cycle)
    }

    /// Drops the open (uncommitted) cycle, if any: its records are cut from the segment
    /// as if never written. Used when a session fails halfway through a cycle.
    pub fn abort_cycle(&mut self) -> Result<Option<u64>, JournalError> {
        let Some(cycle) = self.open_cycle.take() else { return Ok(None) };
        let entry = self.index.cycles.remove(&cycle).expect("open cycle indexed");
        let path = self.active_path();
        self.active.set_len(entry.begin_offset).map_err(io("truncate", &path))?;
        self.active.sync_data().map_err(io("fsync", &path))?;
        self.active_len = entry.begin_offset;
        if let Some(seg) = self.index.segments.last_mut() {
            seg.len = entry.begin_offset;
        }
        self.index.max_cycle = cycle - 1;
        Ok(Some(cycle))
    }

    fn reader(&mut self, segment: u64) -> Result<(&File, PathBuf), JournalError> {
        let path = segment_path(&self.dir, segment);
        let file = match self.readers.entry(segment) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(File::open(&path).map_err(io("open segment", &path))?),
        };
        Ok((file, path))
    }

    /// Reads a block record's undo (`want_undo`) or redo bytes; `None` means zeros.
    fn block_data(&mut self, b: &BlockRef, want_undo: bool) -> Result<Option<Bytes>, JournalError> {
        let (file, path) = self.reader(b.segment)?;
        scan::read_block_data_at(file, &path, b.record_offset, want_undo)
    }

    /// Applies the committed cycle to `replicas`, flushes them and records the point.
    pub async fn apply_committed(&mut self, replicas: &DiskSet) -> Result<RecoveryPoint, JournalError> {
        let Pending::Apply(cycle) = self.pending() else {
            return Err(JournalError::Protocol("no committed cycle waits to be applied".into()));
        };
        let span = info_span!("journal_apply", cycle);
        async {
            let blocks = self.index.cycles[&cycle].blocks.clone();
            let overlapping = overlaps(&blocks);
            // Writes to distinct places may overlap in time; enough of them keep the disk
            // queue full while records are read back.
            let in_flight = if overlapping { 1 } else { 32 };
            let mut jobs = Vec::with_capacity(blocks.len());
            for b in &blocks {
                let disk = disk_of(replicas, b.disk)?;
                jobs.push((*b, disk));
            }
            let fault = self.fault.clone();
            // Records are read back on the blocking pool, each right before its write, so
            // reads and writes of different blocks overlap across the whole cycle instead
            // of in lockstep groups.
            let mut segments: HashMap<u64, (Arc<File>, PathBuf)> = HashMap::new();
            for (b, _) in &jobs {
                if let std::collections::hash_map::Entry::Vacant(slot) = segments.entry(b.segment) {
                    let (file, path) = self.reader(b.segment)?;
                    let file = file.try_clone().map_err(io("reopen segment", &path))?;
                    slot.insert((Arc::new(file), path));
                }
            }
            let applies: Vec<_> = jobs
                .into_iter()
                .map(|(b, disk)| {
                let (file, path) = segments[&b.segment].clone();
                async move {
                    let join_path = path.clone();
                    let data = tokio::task::spawn_blocking(move || scan::read_block_data_at(&file, &path, b.record_offset, false))
                        .await
                        .map_err(|e| io("read record", &join_path)(std::io::Error::other(e)))??;
                    write_block(disk.as_ref(), &b, data).await
                }
                })
                .collect();
            let mut done = futures::stream::iter(applies).buffer_unordered(in_flight);
            let mut applied = 0u64;
            while let Some(result) = done.next().await {
                result?;
                if let Some(hook) = &fault {
                    hook(FaultSite::AfterApplyBlock { cycle, index: applied });
                }
                applied += 1;
            }
            drop(done);
            for disk in replicas.values() {
                disk.flush().await?;
            }
            // Not synced on purpose: the point became durable at its commit. If this mark is
            // lost in a crash the cycle is applied again from its redo bytes, which yields
            // the same replica, and the next commit's fsync persists the mark anyway.
            self.append(&Record::Applied { cycle })?;
            let entry = self.index.cycles.get_mut(&cycle).expect("cycle");
            entry.applied = true;
            let point = entry.point;
            if self.active_len >= self.config.segment_bytes {
                self.roll(point)?;
            }
            Ok(point)
        }
        .instrument(span)
        .await
    }

    /// Finishes whatever a crash interrupted: applies a committed cycle or completes a
    /// rewind. Afterwards the replicas hold the newest point.
    pub async fn resume(&mut self, replicas: &DiskSet) -> Result<Pending, JournalError> {
        let pending = self.pending();
        match pending {
            Pending::None => {}
            Pending::Apply(_) => {
                self.apply_committed(replicas).await?;
            }
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
        for b in newer {
            let disk = disk_of(targets, b.disk)?;
            let data = self.block_data(&b, true)?;
            write_block(disk.as_ref(), &b, data).await?;
        }
        for disk in targets.values() {
            disk.flush().await?;
        }
        Ok(())
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
            for (id, target) in targets {
                let source = disk_of(replicas, *id)?;
                crate::copy::copy_allocated(source.as_ref(), target.as_ref(), None).await?;
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
async fn write_block(disk: &dyn Transport, b: &BlockRef, data: Option<Bytes>) -> Result<(), JournalError> {
    match data {
        Some(d) => disk.write_at(b.disk_offset, d).await?,
        None => disk.write_zeroes(b.disk_offset, b.len as u64).await?,
    }
    Ok(())
}

fn overlaps(blocks: &[BlockRef]) -> bool {
    let mut sorted: Vec<(u32, u64, u64)> = blocks.iter().map(|b| (b.disk, b.disk_offset, b.disk_offset + b.len as u64)).collect();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[0].0 == w[1].0 && w[1].1 < w[0].2)
}

#[cfg(test)]
mod tests;
