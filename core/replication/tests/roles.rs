//! End to end: the process-server and master-target roles as separate OS processes over
//! TCP, plus crash tests that SIGKILL the master target during journal append and during
//! apply, restart it and resume.

mod common;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use common::{Rng, assert_same, roles::{MasterTargetProcess, run_process_server, spawn_process_server}, sparse, write_at};
use homeward_replication::{
    extent::{Extent, normalize},
    journal::{DiskSet, Journal, JournalConfig},
    transport::{MemoryTransport, Transport},
};

const SIZE: u64 = 4 << 20;

struct Lab {
    dir: tempfile::TempDir,
    rng: Rng,
    /// Source contents at each recovery point, by point.
    history: BTreeMap<u64, Vec<Vec<u8>>>,
}

impl Lab {
    fn new(seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..2 {
            sparse(&dir.path().join(format!("src{i}.img")), SIZE);
        }
        let mut history = BTreeMap::new();
        history.insert(0, vec![vec![0u8; SIZE as usize]; 2]);
        Lab { dir, rng: Rng(seed), history }
    }
    fn src(&self, i: u32) -> std::path::PathBuf {
        self.dir.path().join(format!("src{i}.img"))
    }
    fn replica(&self, i: u32) -> std::path::PathBuf {
        self.dir.path().join(format!("replica{i}.img"))
    }
    fn journal(&self) -> std::path::PathBuf {
        self.dir.path().join("journal")
    }
    fn sources(&self) -> Vec<Vec<u8>> {
        (0..2).map(|i| std::fs::read(self.src(i)).unwrap()).collect()
    }
    /// Scribbles on both sources; writes the changed areas to a file and returns its path
    /// and the number of blocks the cycle will carry.
    fn mutate(&mut self, name: &str) -> (String, usize) {
        let mut changes: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        let mut blocks = 0;
        for disk in 0..2u32 {
            let mut extents = Vec::new();
            for _ in 0..4 {
                let offset = self.rng.below(SIZE / 65536) * 65536;
                let len = 4096 * (1 + self.rng.below(16));
                let data = if self.rng.below(4) == 0 { vec![0u8; len as usize] } else { self.rng.bytes(len as usize) };
                write_at(&self.src(disk), offset, &data);
                extents.push((offset, len));
            }
            // The cycle merges overlapping areas and cuts them at 1 MiB boundaries.
            let merged = normalize(extents.iter().map(|(o, l)| Extent::new(*o, *l)).collect());
            blocks += merged.iter().map(|e| e.split_aligned(1 << 20).count()).sum::<usize>();
            changes.insert(disk.to_string(), extents);
        }
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&changes).unwrap()).unwrap();
        (path.display().to_string(), blocks)
    }
    fn disks(&self) -> Vec<(u32, std::path::PathBuf)> {
        (0..2).map(|i| (i, self.src(i))).collect()
    }
    fn mt(&self, fault: Option<&str>) -> MasterTargetProcess {
        let r0 = self.replica(0);
        let r1 = self.replica(1);
        MasterTargetProcess::start(&self.journal(), &[(0, &r0), (1, &r1)], fault)
    }
    fn ps(&self, addr: &str, args: &[&str]) -> serde_json::Value {
        let disks = self.disks();
        let refs: Vec<(u32, &Path)> = disks.iter().map(|(i, p)| (*i, p.as_path())).collect();
        run_process_server(addr, &refs, args)
    }
    /// Checks the replicas hold the newest source state and every retained point
    /// materialises to the sources as they were.
    async fn check(&self, expect_points: &[u64]) -> BTreeMap<u64, usize> {
        let sources = self.sources();
        for i in 0..2u32 {
            assert_same(&std::fs::read(self.replica(i)).unwrap(), &sources[i as usize], &format!("replica {i}"));
        }
        let (mut journal, report) = Journal::open(self.journal(), JournalConfig::default()).unwrap();
        assert!(report.tail_cut.is_none() && report.discarded_cycle.is_none(), "{report:?}");
        let replicas: DiskSet = (0..2u32)
            .map(|i| (i, Arc::new(homeward_replication::transport::FileTransport::open(self.replica(i), false).unwrap()) as Arc<dyn Transport>))
            .collect();
        let points: Vec<u64> = journal.points().iter().map(|p| p.seq).collect();
        assert_eq!(points, expect_points);
        for p in points {
            let mem: Vec<MemoryTransport> = (0..2).map(|i| MemoryTransport::new(format!("t{i}"), SIZE)).collect();
            let targets: DiskSet = mem.iter().enumerate().map(|(i, m)| (i as u32, Arc::new(m.clone()) as Arc<dyn Transport>)).collect();
            journal.materialise(p, &replicas, &targets).await.unwrap();
            let got: Vec<Vec<u8>> = mem.iter().map(MemoryTransport::contents).collect();
            for (i, disk) in got.iter().enumerate() {
                assert_same(disk, &self.history[&p][i], &format!("point {p} disk {i}"));
            }
        }
        journal.cycle_blocks()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sync_then_replicate_cycles() {
    let mut lab = Lab::new(11);
    lab.mutate("seed.json");
    // A seed replica for disk 1 that differs in a few blocks; disk 0 has no replica yet.
    std::fs::copy(lab.src(1), lab.replica(1)).unwrap();
    write_at(&lab.replica(1), 65536 * 3 + 5, b"drift");
    write_at(&lab.replica(1), SIZE - 10, b"drift");
    // Point 0 is the replicas as the master target found them: the seed, and an empty disk.
    lab.history.insert(0, vec![vec![0u8; SIZE as usize], std::fs::read(lab.replica(1)).unwrap()]);
    let mt = lab.mt(None);
    let report = lab.ps(&mt.addr, &["--sync"]);
    assert_eq!(report["full_copy"]["0"], true);
    assert_eq!(report["full_copy"]["1"], false);
    assert_eq!(report["blocks_sent"]["1"], 2, "only the drifted blocks of the seed are sent");
    assert_eq!(report["verified"], "Identical");
    lab.history.insert(1, lab.sources());
    for cycle in 2..=4u64 {
        let (changes, blocks) = lab.mutate(&format!("c{cycle}.json"));
        let mut args = vec!["--changes", &changes, "--cycle"];
        let seq = cycle.to_string();
        args.push(&seq);
        if cycle == 3 {
            args.push("--app-consistent");
        }
        args.extend(["--bwlimit", "500000000", "--codec", if cycle == 4 { "lz4" } else { "zstd" }]);
        let out = lab.ps(&mt.addr, &args);
        assert_eq!(out["skipped"], false);
        assert_eq!(out["blocks"], blocks as u64);
        lab.history.insert(cycle, lab.sources());
    }
    // Offering an old cycle again is a no-op; skipping ahead is refused.
    let (changes, _) = lab.mutate("c9.json");
    assert_eq!(lab.ps(&mt.addr, &["--changes", &changes, "--cycle", "3"])["skipped"], true);
    let disks = lab.disks();
    let refs: Vec<(u32, &Path)> = disks.iter().map(|(i, p)| (*i, p.as_path())).collect();
    let out = spawn_process_server(&mt.addr, &refs, &["--changes", &changes, "--cycle", "9"]).wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expects cycle 5"));
    mt.kill();
    // Undo the unsent scribble so sources match the newest point again.
    for i in 0..2 {
        std::fs::write(lab.src(i), &lab.history[&4][i as usize]).unwrap();
    }
    lab.check(&[0, 1, 2, 3, 4]).await;
}

/// Kills the master target at `fault` while it handles cycle 2, restarts it and resumes.
async fn crash_and_resume(seed: u64, kind: &str) {
    let mut lab = Lab::new(seed);
    lab.mutate("seed.json");
    let mt = lab.mt(None);
    lab.ps(&mt.addr, &["--sync"]);
    lab.history.insert(1, lab.sources());
    mt.kill();

    let (changes, blocks) = lab.mutate("c2.json");
    let at = lab.rng.below(blocks as u64);
    let fault = format!("{kind}:2:{at}");
    let mt = lab.mt(Some(&fault));
    let disks = lab.disks();
    let refs: Vec<(u32, &Path)> = disks.iter().map(|(i, p)| (*i, p.as_path())).collect();
    let ps = spawn_process_server(&mt.addr, &refs, &["--changes", &changes, "--cycle", "2"]);
    mt.wait_for("FAULT");
    mt.kill();
    let out = ps.wait_with_output().unwrap();
    assert!(!out.status.success(), "the process server notices the lost master target");

    let mt = lab.mt(None);
    let resumed = lab.ps(&mt.addr, &["--changes", &changes, "--cycle", "2"]);
    // Killed mid-append or mid-apply, the cycle was not committed: the restarted master
    // target rolled back whatever of it reached the replicas, and it is sent again.
    assert_eq!(resumed["skipped"], false, "{fault}");
    lab.history.insert(2, lab.sources());
    let (changes, _) = lab.mutate("c3.json");
    lab.ps(&mt.addr, &["--changes", &changes, "--cycle", "3"]);
    lab.history.insert(3, lab.sources());
    mt.kill();
    let per_cycle = lab.check(&[0, 1, 2, 3]).await;
    assert_eq!(per_cycle[&2], blocks, "{fault}: cycle 2 is journaled exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_journal_append_then_resume() {
    for seed in [21, 22] {
        crash_and_resume(seed, "append").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_apply_then_resume() {
    for seed in [31, 32] {
        crash_and_resume(seed, "apply").await;
    }
}
