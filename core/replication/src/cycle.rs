//! Change-tracked cycles: the process server reads changed extents and sends them; the
//! master target journals and applies them as one recovery point for its whole
//! consistency group.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span};

use crate::{
    compress::Codec,
    error::{JournalError, ReplicationError, TransportError},
    extent::{Extent, normalize},
    journal::{BlockWrite, Consistency, DiskSet, Journal, Pending, RecoveryPoint},
    progress::ProgressReporter,
    transport::Transport,
};

/// The largest block a cycle sends: changed extents are cut at multiples of this.
pub const MAX_BLOCK: u64 = 1 << 20;
/// Reads (and compressions) in flight on the process server.
pub const READS_IN_FLIGHT: usize = 16;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One block as it travels from the process server to the master target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireBlock {
    /// Disk id inside the consistency group.
    pub disk: u32,
    /// Offset on the disk.
    pub offset: u64,
    /// Uncompressed length.
    pub len: u32,
    /// Wire id of the codec of `payload` (see [`Codec::id`]).
    pub codec: u8,
    /// The block reads as zeros; `payload` is empty.
    pub zero: bool,
    /// The (compressed) bytes.
    pub payload: Bytes,
}

impl WireBlock {
    /// The block's uncompressed bytes; `None` for a zero block.
    pub fn data(&self) -> Result<Option<Bytes>, String> {
        if self.zero {
            return Ok(None);
        }
        if self.codec == 0 {
            if self.payload.len() != self.len as usize {
                return Err(format!("raw block of {} bytes claims {}", self.payload.len(), self.len));
            }
            return Ok(Some(self.payload.clone()));
        }
        Codec::decompress(self.codec, &self.payload, self.len as usize).map(|v| Some(Bytes::from(v)))
    }
}

/// Where a cycle's blocks go: the master target in this process, or one over TCP.
pub trait CycleSink {
    /// Starts the cycle `seq` for a point at `time_ms`.
    fn begin(&mut self, seq: u64, time_ms: u64, consistency: Consistency) -> impl Future<Output = Result<(), ReplicationError>> + Send;
    /// Sends one block.
    fn block(&mut self, block: WireBlock) -> impl Future<Output = Result<(), ReplicationError>> + Send;
    /// Ends the cycle; returns once it is a durable recovery point.
    fn end(&mut self) -> impl Future<Output = Result<RecoveryPoint, ReplicationError>> + Send;
}

/// The changed extents of one disk in a cycle.
#[derive(Debug, Clone)]
pub struct DiskChanges {
    /// Disk id inside the consistency group.
    pub disk: u32,
    /// The disk's snapshot, read through its locator.
    pub source: Arc<dyn Transport>,
    /// Changed areas since the last change id (`QueryChangedDiskAreas`, Get Page Ranges
    /// with `prevsnapshot`), or every allocated extent for an initial copy.
    pub changed: Vec<Extent>,
}

/// What a cycle moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    /// The recovery point the cycle made.
    pub point: RecoveryPoint,
    /// Blocks sent.
    pub blocks: u64,
    /// Changed bytes read.
    pub bytes_changed: u64,
    /// Bytes on the wire after compression (payloads only).
    pub bytes_sent: u64,
}

/// Runs one cycle on the process server side: reads every changed extent of every disk of
/// the group with many reads in flight, compresses, and sends the blocks to `sink` as the
/// cycle `seq`. All disks share the cycle, so the group gets one common point.
pub async fn send_cycle<S: CycleSink>(
    sink: &mut S,
    seq: u64,
    disks: &[DiskChanges],
    time_ms: u64,
    consistency: Consistency,
    codec: Codec,
    progress: Option<&ProgressReporter>,
) -> Result<CycleReport, ReplicationError> {
    let span = info_span!("cycle", seq, disks = disks.len());
    async {
        let mut pieces = Vec::new();
        for d in disks {
            let size = d.source.size().await?;
            for e in normalize(d.changed.clone()) {
                if e.end() > size {
                    return Err(TransportError::Invalid {
                        target: d.source.describe(),
                        message: format!("changed area {}+{} is past the end of the disk", e.offset, e.len),
                    }
                    .into());
                }
                pieces.extend(e.split_aligned(MAX_BLOCK).map(|p| (d.disk, d.source.clone(), p)));
            }
        }
        sink.begin(seq, time_ms, consistency).await?;
        let mut report = CycleReport {
            point: RecoveryPoint { seq, time_ms, consistency },
            blocks: 0,
            bytes_changed: 0,
            bytes_sent: 0,
        };
        // A queue of spawned reads, oldest first: reads and compression of different
        // blocks run on every core while blocks go out in order.
        let mut queue = std::collections::VecDeque::with_capacity(READS_IN_FLIGHT);
        let mut pieces = pieces.into_iter();
        loop {
            while queue.len() < READS_IN_FLIGHT {
                let Some((disk, source, piece)) = pieces.next() else { break };
                queue.push_back(tokio::spawn(async move { read_block(source.as_ref(), disk, piece, codec).await }));
            }
            let Some(next) = queue.pop_front() else { break };
            let block = next
                .await
                .map_err(|e| TransportError::Invalid { target: "reader task".into(), message: e.to_string() })??;
            report.blocks += 1;
            report.bytes_changed += block.len as u64;
            report.bytes_sent += block.payload.len() as u64;
            if let Some(p) = progress {
                p.advance(block.len as u64, 1, block.payload.len() as u64);
            }
            sink.block(block).await?;
        }
        report.point = sink.end().await?;
        info!(blocks = report.blocks, bytes = report.bytes_changed, sent = report.bytes_sent, "cycle done");
        Ok(report)
    }
    .instrument(span)
    .await
}

async fn read_block(source: &dyn Transport, disk: u32, piece: Extent, codec: Codec) -> Result<WireBlock, TransportError> {
    let data = source.read_at(piece.offset, piece.len as usize).await?;
    let zero = crate::hash::is_zero(&data);
    let (used, payload) = if zero { (Codec::None, Bytes::new()) } else {
        match codec.compress(&data) {
            Some(packed) => (codec, Bytes::from(packed)),
            None => (Codec::None, data),
        }
    };
    Ok(WireBlock { disk, offset: piece.offset, len: piece.len as u32, codec: used.id(), zero, payload })
}

/// The master target of one consistency group: its replicas and their journal.
#[derive(Debug)]
pub struct MasterTarget {
    journal: Journal,
    replicas: DiskSet,
}

impl MasterTarget {
    /// A master target over an open journal and its replicas. Call
    /// [`MasterTarget::resume`] before new cycles.
    pub fn new(journal: Journal, replicas: DiskSet) -> Self {
        Self { journal, replicas }
    }

    /// Finishes work a crash interrupted (see [`Journal::resume`]).
    pub async fn resume(&mut self) -> Result<Pending, ReplicationError> {
        Ok(self.journal.resume(&self.replicas).await?)
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The journal, for pruning and materialising.
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// The replicas.
    pub fn replicas(&self) -> &DiskSet {
        &self.replicas
    }

    /// The cycle expected next.
    pub fn next_cycle(&self) -> u64 {
        self.journal.next_cycle()
    }

    /// Drops the open cycle, if any, after its sender failed: rolls back whatever of it
    /// reached the replicas (see [`Journal::abort_cycle`]). Returns the dropped cycle.
    pub async fn abort_cycle(&mut self) -> Result<Option<u64>, ReplicationError> {
        Ok(self.journal.abort_cycle(&self.replicas).await?)
    }
}

impl CycleSink for MasterTarget {
    async fn begin(&mut self, seq: u64, time_ms: u64, consistency: Consistency) -> Result<(), ReplicationError> {
        if seq != self.journal.next_cycle() {
            return Err(JournalError::Protocol(format!(
                "cycle {seq} offered but cycle {} is next; the sender must resume from there",
                self.journal.next_cycle()
            ))
            .into());
        }
        self.journal.begin_cycle(time_ms, consistency)?;
        Ok(())
    }

    async fn block(&mut self, block: WireBlock) -> Result<(), ReplicationError> {
        let data = block.data().map_err(|m| JournalError::Protocol(format!("block at {}: {m}", block.offset)))?;
        let write = BlockWrite { disk: block.disk, offset: block.offset, len: block.len, data };
        Ok(self.journal.stage_block(&self.replicas, write).await?)
    }

    async fn end(&mut self) -> Result<RecoveryPoint, ReplicationError> {
        Ok(self.journal.commit_cycle(&self.replicas).await?)
    }
}

/// When cycles run and which of them are app-consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CyclePolicy {
    /// Time between cycles.
    pub interval: Duration,
    /// Every this often a cycle quiesces the guest for an app-consistent point.
    pub app_consistent_every: Duration,
    /// A point older than this is an RPO breach.
    pub rpo_threshold: Duration,
}

impl CyclePolicy {
    /// The failback policy of the reference: RPO 15 min, app-consistent every 60 min; it
    /// cycles every 5 minutes.
    pub fn failback() -> Self {
        Self {
            interval: Duration::from_secs(300),
            app_consistent_every: Duration::from_secs(3600),
            rpo_threshold: Duration::from_secs(900),
        }
    }
}

/// Decides each cycle's consistency and measures the RPO.
#[derive(Debug, Clone)]
pub struct CycleSchedule {
    policy: CyclePolicy,
    last_app_ms: Option<u64>,
    last_point_ms: Option<u64>,
}

/// The measured recovery point objective at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpoSample {
    /// Age of the newest point, ms.
    pub rpo_ms: u64,
    /// Whether it exceeds the policy's threshold.
    pub breached: bool,
}

impl CycleSchedule {
    /// A schedule for `policy` with no points yet.
    pub fn new(policy: CyclePolicy) -> Self {
        Self { policy, last_app_ms: None, last_point_ms: None }
    }

    /// Whether the cycle starting at `now_ms` must quiesce.
    pub fn consistency_at(&self, now_ms: u64) -> Consistency {
        match self.last_app_ms {
            Some(t) if now_ms.saturating_sub(t) < self.policy.app_consistent_every.as_millis() as u64 => Consistency::Crash,
            _ => Consistency::App,
        }
    }

    /// When the next cycle is due.
    pub fn next_due_ms(&self, now_ms: u64) -> u64 {
        self.last_point_ms.map_or(now_ms, |t| t + self.policy.interval.as_millis() as u64)
    }

    /// Records a completed point.
    pub fn record(&mut self, point: &RecoveryPoint) {
        self.last_point_ms = Some(self.last_point_ms.map_or(point.time_ms, |t| t.max(point.time_ms)));
        if point.consistency == Consistency::App {
            self.last_app_ms = Some(point.time_ms);
        }
    }

    /// The RPO at `now_ms`: the age of the newest point.
    pub fn rpo_at(&self, now_ms: u64) -> Option<RpoSample> {
        self.last_point_ms.map(|t| {
            let rpo_ms = now_ms.saturating_sub(t);
            RpoSample { rpo_ms, breached: rpo_ms > self.policy.rpo_threshold.as_millis() as u64 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_quiesces_every_app_interval_and_measures_rpo() {
        let mut s = CycleSchedule::new(CyclePolicy::failback());
        assert_eq!(s.consistency_at(0), Consistency::App);
        s.record(&RecoveryPoint { seq: 1, time_ms: 0, consistency: Consistency::App });
        assert_eq!(s.consistency_at(30 * 60_000), Consistency::Crash);
        assert_eq!(s.consistency_at(60 * 60_000), Consistency::App);
        assert_eq!(s.next_due_ms(10), 300_000);
        assert_eq!(s.rpo_at(10 * 60_000), Some(RpoSample { rpo_ms: 600_000, breached: false }));
        assert!(s.rpo_at(16 * 60_000).unwrap().breached);
    }
}
