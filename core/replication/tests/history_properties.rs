//! Property tests: random write histories across several disks of one consistency
//! group. Every retained point materialises to exactly the source's bytes at that point,
//! before and after pruning, and after reopening the journal.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use homeward_replication::{
    cycle::{CycleSink, MasterTarget, WireBlock},
    journal::{Consistency, DiskSet, Journal, JournalConfig, RecoveryPoint},
    transport::{MemoryTransport, Transport},
};
use proptest::prelude::*;

const DISKS: usize = 3;
const SIZE: u64 = 24 << 10;

#[derive(Debug, Clone)]
struct Write {
    disk: u32,
    offset: u64,
    len: u64,
    fill: Option<u8>,
}

fn write() -> impl Strategy<Value = Write> {
    (0..DISKS as u32, 0..SIZE, 1..6000u64, proptest::option::weighted(0.8, any::<u8>())).prop_map(|(disk, offset, len, fill)| {
        let len = len.min(SIZE - offset).max(1);
        let offset = offset.min(SIZE - len);
        Write { disk, offset, len, fill }
    })
}

fn history() -> impl Strategy<Value = Vec<Vec<Write>>> {
    proptest::collection::vec(proptest::collection::vec(write(), 0..6), 1..10)
}

fn data(w: &Write, cycle: usize) -> Vec<u8> {
    match w.fill {
        // Vary bytes inside the write so misplaced offsets are caught.
        Some(f) => (0..w.len).map(|i| f.wrapping_add((i as u8).wrapping_mul(31)).wrapping_add(cycle as u8)).collect(),
        None => vec![0; w.len as usize],
    }
}

fn memory_set(prefix: &str) -> (Vec<MemoryTransport>, DiskSet) {
    let mem: Vec<_> = (0..DISKS).map(|i| MemoryTransport::new(format!("{prefix}{i}"), SIZE)).collect();
    let set = mem.iter().enumerate().map(|(i, m)| (i as u32, Arc::new(m.clone()) as Arc<dyn Transport>)).collect();
    (mem, set)
}

async fn check_points(journal: &mut Journal, replicas: &DiskSet, expected: &BTreeMap<u64, Vec<Vec<u8>>>) -> Result<(), TestCaseError> {
    for p in journal.points() {
        let (mem, targets) = memory_set("t");
        journal.materialise(p.seq, replicas, &targets).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, m) in mem.iter().enumerate() {
            prop_assert!(m.contents() == expected[&p.seq][i], "point {} disk {} differs", p.seq, i);
        }
    }
    Ok(())
}

async fn run(history: Vec<Vec<Write>>, retention_cycles: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments so pruning has many boundaries to work with.
    let config = JournalConfig { segment_bytes: 6 << 10 };
    let (replica_mem, replicas) = memory_set("r");
    let base = RecoveryPoint { seq: 0, time_ms: 0, consistency: Consistency::Crash };
    let mut mt = MasterTarget::new(Journal::create(dir.path(), config, base).unwrap(), replicas.clone());
    let mut source = vec![vec![0u8; SIZE as usize]; DISKS];
    let mut expected = BTreeMap::new();
    expected.insert(0, source.clone());
    for (i, writes) in history.iter().enumerate() {
        let seq = mt.next_cycle();
        let time_ms = (i as u64 + 1) * 1000;
        mt.begin(seq, time_ms, if i % 3 == 0 { Consistency::App } else { Consistency::Crash }).await.unwrap();
        for w in writes {
            let d = data(w, i);
            source[w.disk as usize][w.offset as usize..(w.offset + w.len) as usize].copy_from_slice(&d);
            let zero = d.iter().all(|b| *b == 0);
            mt.block(WireBlock {
                disk: w.disk,
                offset: w.offset,
                len: w.len as u32,
                codec: 0,
                zero,
                payload: if zero { Bytes::new() } else { Bytes::from(d) },
            })
            .await
            .unwrap();
        }
        let point = mt.end().await.unwrap();
        prop_assert_eq!(point.seq, seq);
        expected.insert(seq, source.clone());
        for (d, m) in replica_mem.iter().enumerate() {
            prop_assert!(m.contents() == source[d], "replica {} is not the newest point", d);
        }
    }
    prop_assert_eq!(mt.journal().points().len(), history.len() + 1);
    check_points(mt.journal_mut(), &replicas, &expected).await?;

    let now = (history.len() as u64 + 1) * 1000;
    let retention = retention_cycles * 1000;
    mt.journal_mut().prune(retention, now).unwrap();
    let points = mt.journal().points();
    for seq in expected.keys() {
        let time = seq * 1000;
        if time >= now.saturating_sub(retention) {
            prop_assert!(points.iter().any(|p| p.seq == *seq), "point {} inside retention was pruned", seq);
        }
    }
    prop_assert_eq!(points.last().map(|p| p.seq), Some(history.len() as u64), "the newest point always stays");
    check_points(mt.journal_mut(), &replicas, &expected).await?;
    drop(mt);
    let (mut journal, report) = Journal::open(dir.path(), config).unwrap();
    prop_assert!(report.tail_cut.is_none());
    prop_assert_eq!(journal.points(), points);
    check_points(&mut journal, &replicas, &expected).await?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_retained_point_materialises_exactly(history in history(), retention in 0..6u64) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(history, retention))?;
    }
}

#[derive(Debug, Clone)]
enum Op {
    Cycle(Vec<Write>),
    /// Roll the replicas back to the retained point at this index (modulo the count).
    Rewind(usize),
    /// Close and reopen the journal, as after a restart.
    Reopen,
    /// Prune with a retention of this many cycle intervals.
    Prune(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec(write(), 1..5).prop_map(Op::Cycle),
        1 => any::<usize>().prop_map(Op::Rewind),
        1 => Just(Op::Reopen),
        1 => (0..5u64).prop_map(Op::Prune),
    ]
}

async fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig { segment_bytes: 6 << 10 };
    let (replica_mem, replicas) = memory_set("r");
    let base = RecoveryPoint { seq: 0, time_ms: 0, consistency: Consistency::Crash };
    let mut mt = MasterTarget::new(Journal::create(dir.path(), config, base).unwrap(), replicas.clone());
    let mut current = vec![vec![0u8; SIZE as usize]; DISKS];
    let mut expected: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::from([(0, current.clone())]);
    let mut clock = 0u64;
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Cycle(writes) => {
                clock += 1000;
                let seq = mt.next_cycle();
                mt.begin(seq, clock, Consistency::Crash).await.unwrap();
                for w in &writes {
                    let d = data(w, i);
                    current[w.disk as usize][w.offset as usize..(w.offset + w.len) as usize].copy_from_slice(&d);
                    let zero = d.iter().all(|b| *b == 0);
                    let payload = if zero { Bytes::new() } else { Bytes::from(d) };
                    mt.block(WireBlock { disk: w.disk, offset: w.offset, len: w.len as u32, codec: 0, zero, payload }).await.unwrap();
                }
                mt.end().await.unwrap();
                expected.insert(seq, current.clone());
            }
            Op::Rewind(k) => {
                let points = mt.journal().points();
                let p = points[k % points.len()].seq;
                mt.journal_mut().rewind_replicas(p, &replicas).await.unwrap();
                current = expected[&p].clone();
                expected.retain(|s, _| *s <= p);
            }
            Op::Reopen => {
                drop(mt);
                let (journal, report) = Journal::open(dir.path(), config).unwrap();
                prop_assert!(report.tail_cut.is_none() && report.discarded_cycle.is_none());
                mt = MasterTarget::new(journal, replicas.clone());
            }
            Op::Prune(keep) => {
                mt.journal_mut().prune(keep * 1000, clock).unwrap();
            }
        }
        for (d, m) in replica_mem.iter().enumerate() {
            prop_assert!(m.contents() == current[d], "replica {} is not the newest point after op {}", d, i);
        }
        let points: Vec<u64> = mt.journal().points().iter().map(|p| p.seq).collect();
        prop_assert!(points.iter().all(|p| expected.contains_key(p)), "a dropped point came back: {:?}", points);
        prop_assert_eq!(points.last().copied(), expected.keys().next_back().copied(), "the newest point is retained");
    }
    check_points(mt.journal_mut(), &replicas, &expected).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn rewinds_reopens_and_prunes_keep_every_point_exact(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run_ops(ops))?;
    }
}

/// Rewinding to the base point after several segment rolls drops every cycle.
#[test]
fn rewind_to_the_base_after_segment_rolls() {
    let w = |disk, offset, len, fill| Write { disk, offset, len, fill };
    let ops = vec![
        Op::Cycle(vec![w(0, 0, 1, None)]),
        Op::Cycle(vec![w(0, 0, 1, None)]),
        Op::Cycle(vec![w(0, 0, 1, None)]),
        Op::Cycle(vec![w(0, 0, 5941, Some(7))]),
        Op::Cycle(vec![w(1, 13548, 4220, Some(150)), w(1, 20264, 4136, Some(165))]),
        Op::Rewind(0),
    ];
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(run_ops(ops)).unwrap();
}
