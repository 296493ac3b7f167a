use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;

use super::*;
use crate::{
    cycle::{CycleSink, MasterTarget, WireBlock},
    transport::MemoryTransport,
};

const DISK: u64 = 64 << 10;

fn base() -> RecoveryPoint {
    RecoveryPoint { seq: 0, time_ms: 1_000, consistency: Consistency::Crash }
}

fn disks(n: u32) -> (Vec<MemoryTransport>, DiskSet) {
    let mem: Vec<_> = (0..n).map(|i| MemoryTransport::new(format!("r{i}"), DISK)).collect();
    let set = mem.iter().enumerate().map(|(i, m)| (i as u32, Arc::new(m.clone()) as Arc<dyn Transport>)).collect();
    (mem, set)
}

fn block(disk: u32, offset: u64, data: &[u8]) -> WireBlock {
    WireBlock {
        disk,
        offset,
        len: data.len() as u32,
        codec: 0,
        zero: data.iter().all(|b| *b == 0),
        payload: if data.iter().all(|b| *b == 0) { Bytes::new() } else { Bytes::copy_from_slice(data) },
    }
}

async fn cycle(mt: &mut MasterTarget, time_ms: u64, writes: &[(u32, u64, Vec<u8>)]) -> RecoveryPoint {
    let seq = mt.next_cycle();
    mt.begin(seq, time_ms, Consistency::Crash).await.unwrap();
    for (d, o, data) in writes {
        mt.block(block(*d, *o, data)).await.unwrap();
    }
    mt.end().await.unwrap()
}

async fn materialised(journal: &mut Journal, replicas: &DiskSet, point: u64) -> Vec<Vec<u8>> {
    let (mem, targets) = disks(replicas.len() as u32);
    journal.materialise(point, replicas, &targets).await.unwrap();
    mem.iter().map(MemoryTransport::contents).collect()
}

/// A master target over a new journal in `dir`, based at point 0.
fn new_target(dir: &std::path::Path, replicas: &DiskSet) -> MasterTarget {
    MasterTarget::new(Journal::create(dir, JournalConfig::default(), base()).unwrap(), replicas.clone())
}

/// Stages `writes` in order and waits until all of them are on the replicas (unflushed),
/// as a cycle does between its commits.
async fn write_blocks(journal: &mut Journal, replicas: &DiskSet, writes: Vec<BlockWrite>) -> Result<(), JournalError> {
    let cycle = journal.open_cycle.expect("a cycle is open");
    for w in writes {
        journal.stage_block(replicas, w).await?;
    }
    journal.journal_staged(cycle).await?;
    journal.settle(0).await
}

fn contents(mem: &[MemoryTransport]) -> Vec<Vec<u8>> {
    mem.iter().map(MemoryTransport::contents).collect()
}

#[tokio::test]
async fn every_point_materialises_and_the_replica_holds_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(2);
    let journal = Journal::create(dir.path(), JournalConfig::default(), base()).unwrap();
    let mut mt = MasterTarget::new(journal, replicas.clone());
    let mut expected = BTreeMap::new();
    expected.insert(0, contents(&mem));
    let p1 = cycle(&mut mt, 2_000, &[(0, 0, vec![1; 4096]), (1, 100, vec![2; 50])]).await;
    expected.insert(p1.seq, contents(&mem));
    let p2 = cycle(&mut mt, 3_000, &[(0, 2048, vec![3; 4096]), (1, 100, vec![0; 50])]).await;
    expected.insert(p2.seq, contents(&mem));
    assert_eq!(mem[0].contents()[2048..6144], vec![3; 4096][..]);
    let points: Vec<u64> = mt.journal().points().iter().map(|p| p.seq).collect();
    assert_eq!(points, vec![0, 1, 2]);
    for (seq, want) in &expected {
        let got = materialised(mt.journal_mut(), &replicas, *seq).await;
        assert_eq!(&got, want, "point {seq}");
    }
    assert!(matches!(
        materialised_err(mt.journal_mut(), &replicas, 9).await,
        JournalError::UnknownPoint(9)
    ));
}

async fn materialised_err(journal: &mut Journal, replicas: &DiskSet, point: u64) -> JournalError {
    let (_, targets) = disks(replicas.len() as u32);
    journal.materialise(point, replicas, &targets).await.unwrap_err()
}

#[tokio::test]
async fn reopen_finds_the_same_points_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(1);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 10, vec![5; 100])]).await;
    let at1 = contents(&mem);
    drop(mt);
    let (journal, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!(report, OpenReport { tail_cut: None, discarded_cycle: None, pending: Pending::None });
    let mut mt = MasterTarget::new(journal, replicas.clone());
    assert_eq!(mt.next_cycle(), 2);
    cycle(&mut mt, 3_000, &[(0, 0, vec![6; 200])]).await;
    assert_eq!(materialised(mt.journal_mut(), &replicas, 1).await, at1);
}

#[tokio::test]
async fn a_torn_tail_is_cut_reported_and_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(1);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 1000])]).await;
    let before = contents(&mem);
    drop(mt);
    // A second cycle whose block record was half written when the machine died (so its
    // write, which waits for the record's fsync, never started).
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    journal.begin_cycle(3_000, Consistency::Crash).unwrap();
    journal.append(&Record::Block { cycle: 2, disk: 0, offset: 0, undo: Some(vec![1; 3000]), len: 3000 }).unwrap();
    drop(journal);
    let seg = scan::segment_path(dir.path(), 0);
    let len = std::fs::metadata(&seg).unwrap().len();
    let torn_at = tear_last_record(&seg);
    assert!(torn_at < len);
    let (mut journal, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let cut = report.tail_cut.expect("tail reported");
    assert_eq!((cut.segment.clone(), cut.offset), (seg.clone(), torn_at));
    assert_eq!(report.discarded_cycle, Some(2));
    assert_eq!(report.pending, Pending::RollBack(2));
    assert_eq!(journal.resume(&replicas).await.unwrap(), Pending::RollBack(2));
    assert_eq!(journal.next_cycle(), 2);
    assert_eq!(contents(&mem), before, "the torn cycle never reached the replica");
    assert_eq!(journal.points().len(), 2);
    journal.verify().unwrap();
}

/// Rewrites the segment as if the process died halfway through its last record: finds
/// the last record and truncates in its middle. Returns that record's offset.
fn tear_last_record(seg: &std::path::Path) -> u64 {
    let bytes = std::fs::read(seg).unwrap();
    let mut at = 0usize;
    let mut last = 0usize;
    while at < bytes.len() {
        let (_, _, len) = record::decode(&bytes[at..]).unwrap();
        last = at;
        at += len;
    }
    let mid = last + (at - last) / 2;
    std::fs::OpenOptions::new().write(true).open(seg).unwrap().set_len(mid as u64).unwrap();
    last as u64
}

#[tokio::test]
async fn a_flipped_byte_inside_the_journal_is_reported_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replicas) = disks(1);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 1000]), (0, 4096, vec![2; 1000])]).await;
    cycle(&mut mt, 3_000, &[(0, 0, vec![3; 1000])]).await;
    drop(mt);
    let seg = scan::segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    // Find the second record of cycle 1 (its first block) and flip a byte in its data.
    let mut at = 0usize;
    let mut block_offset = None;
    while at < bytes.len() {
        let (rec, _, len) = record::decode(&bytes[at..]).unwrap();
        if matches!(rec, Record::Block { cycle: 1, .. }) && block_offset.is_none() {
            block_offset = Some((at, len));
        }
        at += len;
    }
    let (victim, victim_len) = block_offset.unwrap();
    bytes[victim + victim_len / 2] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    match Journal::open(dir.path(), JournalConfig::default()).unwrap_err() {
        JournalError::Corrupt { segment, offset, reason } => {
            assert_eq!((segment, offset), (seg.clone(), victim as u64));
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(Journal::verify_dir(dir.path()), Err(JournalError::Corrupt { .. })));
}

fn write(disk: u32, offset: u64, data: &[u8]) -> BlockWrite {
    BlockWrite { disk, offset, len: data.len() as u32, data: Some(Bytes::copy_from_slice(data)) }
}

#[tokio::test]
async fn an_uncommitted_cycle_that_reached_the_replicas_is_rolled_back_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(2);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 5000]), (1, 9000, vec![2; 700])]).await;
    let at1 = contents(&mem);
    let size_at1 = mt.journal().size_bytes();
    drop(mt);
    // Cycle 2 writes two batches, the second overlapping the first and a hole, then the
    // machine dies before its commit.
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    journal.begin_cycle(3_000, Consistency::App).unwrap();
    write_blocks(&mut journal, &replicas, vec![write(0, 4000, &[3; 2000]), write(1, 9100, &[4; 100])]).await.unwrap();
    write_blocks(&mut journal, &replicas, vec![write(0, 3000, &[5; 4000]), write(0, 20_000, &[6; 10])]).await.unwrap();
    assert_ne!(contents(&mem), at1, "the writes reached the replicas");
    drop(journal);
    let (mut journal, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!((report.discarded_cycle, report.pending), (Some(2), Pending::RollBack(2)));
    assert!(journal.begin_cycle(3_000, Consistency::Crash).is_err(), "new cycles wait for the resume");
    assert_eq!(journal.resume(&replicas).await.unwrap(), Pending::RollBack(2));
    assert_eq!(contents(&mem), at1, "rolled back newest first to the cycle's start");
    assert_eq!(journal.size_bytes(), size_at1, "the cycle's records are cut");
    assert_eq!(journal.points().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(journal.next_cycle(), 2, "the cycle is sent again under its number");
    let (_, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!((report.discarded_cycle, report.pending), (None, Pending::None));
}

#[tokio::test]
async fn an_aborted_cycle_leaves_the_replicas_and_journal_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(1);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 100, vec![1; 300])]).await;
    let at1 = contents(&mem);
    mt.begin(2, 3_000, Consistency::Crash).await.unwrap();
    mt.block(block(0, 0, &[7; 1000])).await.unwrap();
    write_blocks(mt.journal_mut(), &replicas, vec![write(0, 200, &[8; 50])]).await.unwrap();
    assert_ne!(contents(&mem), at1);
    assert_eq!(mt.abort_cycle().await.unwrap(), Some(2));
    assert_eq!(contents(&mem), at1);
    assert_eq!(mt.abort_cycle().await.unwrap(), None, "nothing left to abort");
    let p = cycle(&mut mt, 4_000, &[(0, 0, vec![9; 10])]).await;
    assert_eq!(p.seq, 2);
    assert_eq!(materialised(mt.journal_mut(), &replicas, 1).await, at1);
}

#[tokio::test]
async fn a_write_whose_length_does_not_match_its_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replicas) = disks(1);
    let mut journal = Journal::create(dir.path(), JournalConfig::default(), base()).unwrap();
    journal.begin_cycle(2_000, Consistency::Crash).unwrap();
    let bad = BlockWrite { disk: 0, offset: 0, len: 10, data: Some(Bytes::from_static(b"short")) };
    assert!(matches!(write_blocks(&mut journal, &replicas, vec![bad]).await, Err(JournalError::Protocol(_))));
    let unknown = write(7, 0, &[1; 10]);
    assert!(matches!(write_blocks(&mut journal, &replicas, vec![unknown]).await, Err(JournalError::Protocol(_))));
}

#[test]
fn a_format_1_journal_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let seg = scan::segment_path(dir.path(), 0);
    let mut old = record::MAGIC_V1.to_le_bytes().to_vec();
    old.extend_from_slice(&[1u8; 60]);
    std::fs::write(&seg, &old).unwrap();
    match Journal::open(dir.path(), JournalConfig::default()).unwrap_err() {
        JournalError::OldFormat { segment } => assert_eq!(segment, seg),
        other => panic!("expected OldFormat, got {other:?}"),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), old);
}

#[tokio::test]
async fn pruning_keeps_points_inside_retention_exact_and_bounds_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(1);
    let config = JournalConfig { segment_bytes: 8 << 10 };
    let mut mt = MasterTarget::new(Journal::create(dir.path(), config, base()).unwrap(), replicas.clone());
    let mut expected = BTreeMap::new();
    for i in 1..=30u64 {
        let p = cycle(&mut mt, 1_000 + i * 1_000, &[(0, (i * 777) % (DISK - 3000), vec![i as u8; 3000])]).await;
        expected.insert(p.seq, (p.time_ms, contents(&mem)));
    }
    let size_before = mt.journal().size_bytes();
    let now = 31_000;
    let report = mt.journal_mut().prune(10_000, now).unwrap();
    assert!(!report.segments_removed.is_empty());
    assert!(mt.journal().size_bytes() < size_before);
    let points = mt.journal().points();
    let oldest = points.first().unwrap().seq;
    for (seq, (time, _)) in &expected {
        if *time >= now - 10_000 {
            assert!(points.iter().any(|p| p.seq == *seq), "point {seq} inside retention was pruned");
        }
    }
    assert!(points.iter().all(|p| expected.contains_key(&p.seq)));
    assert!(oldest > 0);
    for p in &points {
        assert_eq!(materialised(mt.journal_mut(), &replicas, p.seq).await, expected[&p.seq].1, "point {}", p.seq);
    }
    drop(mt);
    let (mut journal, _) = Journal::open(dir.path(), config).unwrap();
    assert_eq!(journal.points(), points, "the pruned journal reopens with the same points");
    let p = points[1].seq;
    assert_eq!(materialised(&mut journal, &replicas, p).await, expected[&p].1);
}

#[tokio::test]
async fn rewinding_the_replica_rolls_back_and_drops_newer_points() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(2);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 100]), (1, 0, vec![1; 100])]).await;
    let at1 = contents(&mem);
    cycle(&mut mt, 3_000, &[(0, 50, vec![2; 100])]).await;
    cycle(&mut mt, 4_000, &[(1, 70, vec![3; 100])]).await;
    mt.journal_mut().rewind_replicas(1, &replicas).await.unwrap();
    assert_eq!(contents(&mem), at1);
    assert_eq!(mt.journal().points().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1]);
    let p4 = cycle(&mut mt, 5_000, &[(0, 0, vec![4; 10])]).await;
    assert_eq!(p4.seq, 4, "sequence numbers are never reused");
    let at4 = contents(&mem);
    drop(mt);
    let (mut journal, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!(report.pending, Pending::None);
    assert_eq!(journal.points().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1, 4]);
    assert_eq!(materialised(&mut journal, &replicas, 1).await, at1);
    assert_eq!(materialised(&mut journal, &replicas, 4).await, at4);
}

/// A disk whose writes start failing after a number of them, as when the master target
/// dies in the middle of rolling a replica back.
#[derive(Debug)]
struct FailingDisk {
    inner: MemoryTransport,
    writes_left: std::sync::atomic::AtomicI64,
}

impl Transport for FailingDisk {
    fn describe(&self) -> String {
        "failing".into()
    }
    fn size(&self) -> crate::transport::TransportFuture<'_, u64> {
        self.inner.size()
    }
    fn allocated_extents(&self) -> crate::transport::TransportFuture<'_, Vec<crate::extent::Extent>> {
        self.inner.allocated_extents()
    }
    fn read_at(&self, offset: u64, len: usize) -> crate::transport::TransportFuture<'_, Bytes> {
        self.inner.read_at(offset, len)
    }
    fn write_at(&self, offset: u64, data: Bytes) -> crate::transport::TransportFuture<'_, ()> {
        if self.writes_left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 0 {
            return Box::pin(async {
                Err(crate::error::TransportError::Io { op: "write", target: "failing".into(), source: std::io::Error::other("gone") })
            });
        }
        self.inner.write_at(offset, data)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> crate::transport::TransportFuture<'_, ()> {
        self.inner.write_zeroes(offset, len)
    }
    fn flush(&self) -> crate::transport::TransportFuture<'_, ()> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn an_interrupted_rewind_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(1);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 5000])]).await;
    let at1 = contents(&mem);
    for i in 0..4u64 {
        cycle(&mut mt, 3_000 + i, &[(0, i * 3000, vec![2 + i as u8; 4000]), (0, 40_000 + i * 100, vec![9; 50])]).await;
    }
    drop(mt);
    // The rewind dies after two of its eight undo writes.
    let failing = FailingDisk { inner: mem[0].clone(), writes_left: 2.into() };
    let broken: DiskSet = BTreeMap::from([(0u32, Arc::new(failing) as Arc<dyn Transport>)]);
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert!(journal.rewind_replicas(1, &broken).await.is_err());
    assert_ne!(contents(&mem), at1, "the rewind stopped halfway");
    drop(journal);
    let (mut journal, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!(report.pending, Pending::Rewind(1));
    assert_eq!(journal.resume(&replicas).await.unwrap(), Pending::Rewind(1));
    assert_eq!(contents(&mem), at1);
    assert_eq!(journal.points().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1]);
    let (_, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!(report.pending, Pending::None);
}

#[tokio::test]
async fn a_batch_failing_on_its_replica_while_the_next_one_lands_is_rolled_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(2);
    let mut mt = new_target(dir.path(), &replicas);
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 5000]), (1, 30_000, vec![2; 9000])]).await;
    let at1 = contents(&mem);
    let size_at1 = mt.journal().size_bytes();
    drop(mt);
    // The first batch (all on disk 0) fails partway through its replica writes; the
    // second (all on disk 1) is journaled after the first one's records and lands
    // meanwhile.
    let failing = FailingDisk { inner: mem[0].clone(), writes_left: (BATCH_WRITES as i64 * 3 / 5).into() };
    let broken: DiskSet = BTreeMap::from([(0u32, Arc::new(failing) as Arc<dyn Transport>), (1u32, replicas[&1].clone())]);
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    journal.begin_cycle(3_000, Consistency::Crash).unwrap();
    let batch = BATCH_WRITES as u64;
    let first_two = (0..batch).map(|i| write(0, i * 60, &[3; 16])).chain((0..batch).map(|i| write(1, i * 60, &[4; 16])));
    let mut failure = None;
    for w in first_two.chain((0..batch).map(|i| write(1, 40_000 + i * 40, &[5; 8]))) {
        if let Err(e) = journal.stage_block(&broken, w).await {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => e,
        None => journal.commit_cycle(&broken).await.expect_err("a replica write failed"),
    };
    assert!(matches!(failure, JournalError::Transport(_)), "{failure}");
    assert_ne!(contents(&mem), at1, "the writes reached the replicas");
    assert_eq!(journal.abort_cycle(&replicas).await.unwrap(), Some(2));
    assert_eq!(contents(&mem), at1, "both batches rolled back");
    assert_eq!(journal.size_bytes(), size_at1, "the cycle's records are cut");
    assert_eq!(journal.next_cycle(), 2);
    let (_, report) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!((report.discarded_cycle, report.pending), (None, Pending::None));
}

#[tokio::test]
async fn rewinding_to_the_base_across_segments_drops_every_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, replicas) = disks(2);
    let config = JournalConfig { segment_bytes: 6 << 10 };
    let mut mt = MasterTarget::new(Journal::create(dir.path(), config, base()).unwrap(), replicas.clone());
    let at0 = contents(&mem);
    for i in 0..3u64 {
        cycle(&mut mt, 2_000 + i, &[(0, 0, vec![0; 1])]).await;
    }
    cycle(&mut mt, 3_000, &[(0, 0, vec![7; 5941])]).await;
    cycle(&mut mt, 4_000, &[(1, 13548, vec![150; 4220]), (1, 20264, vec![165; 4136])]).await;
    mt.journal_mut().rewind_replicas(0, &replicas).await.unwrap();
    assert_eq!(mt.journal().points().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0]);
    assert_eq!(contents(&mem), at0);
}

#[tokio::test]
async fn sequence_numbers_continue_after_pruning_every_cycle_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replicas) = disks(1);
    let mut mt = new_target(dir.path(), &replicas);
    for i in 0..3u64 {
        cycle(&mut mt, 2_000 + i, &[(0, i * 10, vec![1; 10])]).await;
    }
    mt.journal_mut().prune(0, 10_000).unwrap();
    assert_eq!(mt.journal().points().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3]);
    drop(mt);
    let (journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_eq!(journal.next_cycle(), 4);
}

#[tokio::test]
async fn writes_into_holes_of_a_file_replica_roll_back_to_holes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.img");
    let file = crate::transport::FileTransport::create(&path, 1 << 20).unwrap();
    file.write_at(0, Bytes::from(vec![5u8; 65536])).await.unwrap();
    let replica: Arc<dyn Transport> = Arc::new(file.clone());
    let replicas: DiskSet = BTreeMap::from([(0, replica)]);
    let at0 = std::fs::read(&path).unwrap();
    let mut mt = new_target(&dir.path().join("journal"), &replicas);
    // Over data, into a hole, and across the edge between them.
    cycle(&mut mt, 2_000, &[(0, 0, vec![1; 65536]), (0, 256 << 10, vec![2; 65536]), (0, 61_440, vec![3; 8192])]).await;
    let at1 = std::fs::read(&path).unwrap();
    cycle(&mut mt, 3_000, &[(0, 256 << 10, vec![4; 65536])]).await;
    mt.journal_mut().rewind_replicas(1, &replicas).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), at1, "point 1 restored over what was a hole");
    mt.journal_mut().rewind_replicas(0, &replicas).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), at0, "the base restored byte for byte");
    let extents = file.allocated_extents().await.unwrap();
    assert!(
        !extents.iter().any(|e| e.offset < (320 << 10) && e.end() > (256 << 10)),
        "the written hole is a hole again: {extents:?}"
    );
}
