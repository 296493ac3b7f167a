//! `cargo bench -p homeward-replication`: the data path's figures, each printed as a ratio
//! against a baseline measured in the same run on the same machine.
//!
//! `HOMEWARD_BENCH_SIZE` sets the image size (bytes, or with a K/M/G suffix; default 4G);
//! `HOMEWARD_BENCH_DIR` where the images go (default: the system temp dir);
//! `HOMEWARD_BENCH_ONLY` a comma-separated subset of `compression,copy,cycle,tcp,resync,memory`
//! to run (default: all), for quick iteration on one figure. Cold runs evict
//! the images from the page cache with `posix_fadvise(DONTNEED)`, which needs no root.
//!
//! The cold 1% resync is also compared with `rsync --inplace --no-whole-file -B65536`
//! and with bdsync (64 KiB blocks, diff then patch) when they are installed: rsync from
//! `PATH`, bdsync from `HOMEWARD_BENCH_BDSYNC` or `PATH`. Neither is needed otherwise.
//!
//! The figures are noisy on the virtual machines this was measured on: the same
//! `qemu-img convert` took 0.7 s in one round and 5 s in the next, its CPU time rising
//! with it, and the profile of a slow round is the kernel copying into fresh page-cache
//! pages. The likely cause is the balloon device's free page reporting: memory freed by
//! one step is handed back to the host a couple of seconds later, and the next step to
//! fill the page cache pays a fault on the host for each page. Waiting two seconds
//! before each step made every round slow, and touching 4 GiB of memory first made most
//! of them fast again. Which step is hit depends on timing, not on the code, so the
//! figures that allow it are medians of several rounds, each with its baseline measured
//! right beside it.

use std::{
    collections::BTreeMap,
    os::{fd::AsRawFd, unix::fs::FileExt},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use homeward_replication::{
    compress::{Codec, CodecChoice},
    copy::copy_allocated_unflushed,
    cycle::{DiskChanges, MasterTarget, send_cycle},
    extent::{Extent, total_len},
    journal::{Consistency, Journal, JournalConfig, RecoveryPoint},
    resync::{ResyncOptions, resync},
    transport::{FileTransport, Transport},
    wire::{MasterTargetConfig, MasterTargetServer, ProcessServerSession, SessionOptions},
};

const BLOCK: u64 = 64 << 10;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("HOMEWARD_BENCH_SIZE is a number") * mult
}

/// Text-like and random material to cut blocks from.
struct Material {
    text: Vec<u8>,
    random: Vec<u8>,
}

impl Material {
    fn new(rng: &mut Rng) -> Self {
        let words = [
            "the", "disk", "replica", "journal", "block", "failback", "azure", "vmware", "snapshot", "point", "error", "INFO",
            "2026-11-21T10:00:00Z", "user=admin", "GET /index.html", "200", "{\"id\": 42,", "select * from", "kernel:",
        ];
        let mut text = Vec::with_capacity(4 << 20);
        while text.len() < 4 << 20 {
            text.extend_from_slice(words[rng.below(words.len() as u64) as usize].as_bytes());
            text.push(if rng.below(9) == 0 { b'\n' } else { b' ' });
            if rng.below(5) == 0 {
                text.extend_from_slice(format!("{} ", rng.below(1_000_000)).as_bytes());
            }
        }
        let random = (0..(4 << 20) / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
        Self { text, random }
    }

    /// A block-sized piece: 60% text-like, 40% random.
    fn block(&self, rng: &mut Rng, len: usize) -> &[u8] {
        let src = if rng.below(10) < 6 { &self.text } else { &self.random };
        let at = rng.below((src.len() - len) as u64) as usize;
        &src[at..at + len]
    }
}

/// A VM-like sparse image: runs of 1-64 blocks that are holes (45%), allocated zeros
/// (5%), or text-like/random data (50%).
fn make_image(path: &Path, size: u64, rng: &mut Rng, material: &Material) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let blocks = size / BLOCK;
    let mut b = 0;
    while b < blocks {
        let run = (1 + rng.below(64)).min(blocks - b);
        let kind = rng.below(100);
        for i in 0..run {
            let offset = (b + i) * BLOCK;
            match kind {
                0..45 => {}
                45..50 => f.write_all_at(&vec![0u8; BLOCK as usize], offset).unwrap(),
                _ => f.write_all_at(material.block(rng, BLOCK as usize), offset).unwrap(),
            }
        }
        b += run;
    }
    f.sync_all().unwrap();
}

/// Overwrites `fraction` of the image's blocks with new data; returns their extents.
fn change_blocks(path: &Path, size: u64, fraction: f64, rng: &mut Rng, material: &Material) -> Vec<Extent> {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let blocks = size / BLOCK;
    let mut chosen: Vec<u64> = (0..(blocks as f64 * fraction) as u64).map(|_| rng.below(blocks)).collect();
    chosen.sort_unstable();
    chosen.dedup();
    for b in &chosen {
        f.write_all_at(material.block(rng, BLOCK as usize), b * BLOCK).unwrap();
    }
    f.sync_all().unwrap();
    chosen.into_iter().map(|b| Extent::new(b * BLOCK, BLOCK)).collect()
}

fn evict(paths: &[&Path]) {
    for p in paths {
        let f = std::fs::File::open(p).unwrap();
        f.sync_all().unwrap();
        // SAFETY: fadvise on a valid fd; only drops clean cached pages of this file.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn peak_rss_mib() -> f64 {
    // SAFETY: as above.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `time` as a multiple of `against`.
fn ratio(time: Duration, against: Duration) -> f64 {
    secs(time) / secs(against).max(1e-9)
}

fn sparse_copy(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("--sparse=always").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "cp failed");
    // Written back now, so no later flush pays for this copy's dirty pages.
    std::fs::File::open(to).unwrap().sync_all().unwrap();
}

/// Reads a cycle baseline keeps in flight: "many", as the engine's cycle does.
const BASELINE_IN_FLIGHT: usize = 16;

/// Baseline for a cycle: read only the changed blocks with `in_flight` reads at once
/// (many, or one for the naive replay), write them to a scratch image, one flush.
async fn read_changed_and_write(src: &FileTransport, scratch: &FileTransport, changed: &[Extent], in_flight: usize) -> Duration {
    let start = Instant::now();
    futures::stream::iter(changed.iter().copied())
        .map(|e| async move {
            let data = src.read_at(e.offset, e.len as usize).await?;
            scratch.write_at(e.offset, data).await
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    scratch.flush().await.unwrap();
    start.elapsed()
}

/// The same baseline with plain `pwrite`s, as `cp` or `dd` would write: the kernel starts
/// writing back only at the flush. `FileTransport` starts writeback as it writes, which
/// makes [`read_changed_and_write`] the stricter baseline of the two.
async fn read_changed_and_pwrite(src: &FileTransport, scratch: &Path, changed: &[Extent]) -> Duration {
    let file = Arc::new(std::fs::OpenOptions::new().write(true).open(scratch).unwrap());
    let start = Instant::now();
    futures::stream::iter(changed.iter().copied())
        .map(|e| {
            let file = file.clone();
            async move {
                let data = src.read_at(e.offset, e.len as usize).await.unwrap();
                tokio::task::spawn_blocking(move || file.write_all_at(&data, e.offset).unwrap()).await.unwrap();
            }
        })
        .buffer_unordered(BASELINE_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    let f = file.clone();
    tokio::task::spawn_blocking(move || f.sync_data().unwrap()).await.unwrap();
    start.elapsed()
}

/// The least I/O an undo journal adds to [`read_changed_and_write`], timed on fresh
/// scratch files beside the images: the changed blocks' old bytes are read from the
/// replica too (holes skipped, as the engine does) and appended to a scratch journal,
/// and both scratch files are flushed at the end. No records, no checksums, no ordering
/// of journal before replica: what any undo journal must move, not a design of one.
async fn undo_floor_on_scratch(dir: &Path, size: u64, src: &FileTransport, replica: &FileTransport, changed: &[Extent]) -> Duration {
    let (image_path, journal_path) = (dir.join("scratch-floor.img"), dir.join("scratch-floor.journal"));
    let image = FileTransport::create(&image_path, size).unwrap();
    let journal = FileTransport::create(&journal_path, 0).unwrap();
    let appended = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    futures::stream::iter(changed.iter().copied())
        .map(|e| {
            let (image, journal, appended) = (&image, &journal, &appended);
            async move {
                let (new, old) = futures::try_join!(src.read_at(e.offset, e.len as usize), replica.read_data_at(e.offset, e.len as usize))?;
                if let Some(old) = old {
                    let at = appended.fetch_add(old.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    journal.write_at(at, old).await?;
                }
                image.write_at(e.offset, new).await
            }
        })
        .buffer_unordered(BASELINE_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    futures::try_join!(image.flush(), journal.flush()).unwrap();
    let took = start.elapsed();
    drop((image, journal));
    std::fs::remove_file(&image_path).unwrap();
    std::fs::remove_file(&journal_path).unwrap();
    took
}

/// [`read_changed_and_write`] into a fresh sparse scratch image, removed afterwards.
async fn baseline_on_scratch(path: &Path, size: u64, src: &FileTransport, changed: &[Extent], in_flight: usize) -> Duration {
    let scratch = FileTransport::create(path, size).unwrap();
    let took = read_changed_and_write(src, &scratch, changed, in_flight).await;
    drop(scratch);
    std::fs::remove_file(path).unwrap();
    took
}

/// Writes as many bytes as `changed` covers to a throwaway file beside the images and
/// deletes it, untimed.
///
/// Called before every timed warm run: a run fills the page cache with about that much,
/// and on this VM it did so up to three times faster right after the page cache had
/// freed as much memory (the host takes back memory that stays free, and touching it
/// again faults in the host). Whichever baseline or cycle ran first after other work
/// was the slow one; settled alike, the order of the runs no longer decides the ratios.
fn settle_memory(dir: &Path, changed: &[Extent]) {
    let bytes = total_len(changed);
    let path = dir.join("settle.tmp");
    let file = std::fs::File::create(&path).unwrap();
    let piece = vec![0x5a_u8; 1 << 20];
    let mut at = 0;
    while at < bytes.max(64 << 20) {
        file.write_all_at(&piece, at).unwrap();
        at += piece.len() as u64;
    }
    drop(file);
    std::fs::remove_file(&path).unwrap();
}

/// One in-process cycle of `changed`, timed.
async fn timed_cycle(mt: &mut MasterTarget, seq: u64, src: &Arc<FileTransport>, changed: &[Extent]) -> Duration {
    let disks = [DiskChanges { disk: 0, source: src.clone(), changed: changed.to_vec() }];
    let start = Instant::now();
    let r = send_cycle(mt, seq, &disks, seq, Consistency::Crash, Codec::None, None).await.unwrap();
    let took = start.elapsed();
    assert_eq!(r.bytes_changed, total_len(changed));
    took
}

/// Baseline for a resync: `cat` both images to /dev/null side by side.
fn cat_both(a: &Path, b: &Path) -> Duration {
    let start = Instant::now();
    let spawn = |p: &Path| Command::new("sh").arg("-c").arg(format!("cat '{}' > /dev/null", p.display())).spawn().unwrap();
    let (mut x, mut y) = (spawn(a), spawn(b));
    assert!(x.wait().unwrap().success() && y.wait().unwrap().success());
    start.elapsed()
}

/// Where a comparison tool is, if installed.
fn tool(name: &str, env: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = env.and_then(std::env::var_os).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// Times other tools bringing a fresh copy of `stale` level with `src` from a cold cache,
/// and prints how much faster our cold resync (`engine`, the median of its rounds) was.
fn compare_tools(dir: &Path, src: &Path, stale: &Path, engine: Duration) {
    let target = dir.join("tool-run.img");
    let q = |p: &Path| format!("'{}'", p.display());
    let mut tools: Vec<(&str, String, &str)> = Vec::new();
    match tool("rsync", None) {
        Some(rsync) => tools.push(("rsync --inplace --no-whole-file -B65536", format!("{} --inplace --no-whole-file -B65536 {} {}", q(&rsync), q(src), q(&target)), ">= 1.7x")),
        None => println!("rsync: not installed, comparison skipped (apt install rsync)"),
    }
    match tool("bdsync", Some("HOMEWARD_BENCH_BDSYNC")) {
        Some(b) => {
            let diff = dir.join("bdsync.diff");
            tools.push((
                "bdsync --blocksize=65536, diff + patch",
                format!(
                    "{b} --blocksize=65536 '{b} --server' {} {} > {d} && {b} --patch={} < {d}",
                    q(src),
                    q(&target),
                    q(&target),
                    b = q(&b),
                    d = q(&diff)
                ),
                ">= 1.2x",
            ))
        }
        None => println!("bdsync: not found, comparison skipped (build it and set HOMEWARD_BENCH_BDSYNC)"),
    }
    for (name, command, goal) in tools {
        sparse_copy(stale, &target);
        evict(&[src, &target]);
        let start = Instant::now();
        let ok = Command::new("sh").arg("-c").arg(&command).status().unwrap().success();
        let took = start.elapsed();
        assert!(ok, "{name} failed: {command}");
        let same = Command::new("cmp").arg("-s").arg(src).arg(&target).status().unwrap().success();
        println!(
            "cold 1% resync against {name:<40} {:>7.3}s vs ours {:>7.3}s: ours {:.2}x faster  goal {goal}{}",
            secs(took),
            secs(engine),
            ratio(took, engine),
            if same { "" } else { "  (its result differs from the source!)" }
        );
        std::fs::remove_file(&target).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("bdsync.diff"));
}

fn compression_figures(src: &Path, size: u64, rng: &mut Rng) {
    let f = std::fs::File::open(src).unwrap();
    let mut samples = Vec::new();
    while samples.len() < 512 {
        let mut buf = vec![0u8; BLOCK as usize];
        f.read_exact_at(&mut buf, rng.below(size / BLOCK) * BLOCK).unwrap();
        if buf.iter().any(|b| *b != 0) {
            samples.push(buf);
        }
    }
    let raw: usize = samples.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut x = 0u8;
    for _ in 0..8 {
        for s in &samples {
            x ^= blake3::hash(s).as_bytes()[0];
        }
    }
    println!("blake3 of 64 KiB blocks: {:.0} MiB/s per core (checksum byte {x})", 8.0 * raw as f64 / (1 << 20) as f64 / secs(start.elapsed()));
    for (name, codec) in [("zstd-1", Codec::Zstd(1)), ("zstd-3", Codec::Zstd(3)), ("lz4", Codec::Lz4)] {
        let start = Instant::now();
        let packed: usize = samples.iter().map(|s| codec.compress(s).map_or(s.len(), |p| p.len())).sum();
        let t = start.elapsed();
        println!(
            "compression {name:<8} ratio {:>5.2}  {:>7.0} MiB/s per core",
            raw as f64 / packed as f64,
            raw as f64 / (1 << 20) as f64 / secs(t)
        );
    }
}

/// Successive cycles measured in process, each against both baselines on its own change
/// set: the disk here is noisy, so the figures are the medians of the rounds' ratios.
const CYCLE_ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn cycle_figures(dir: &Path, size: u64, fraction: f64, rng: &mut Rng, material: &Material) {
    let src_path = dir.join("src.img");
    let replica_path = dir.join("replica.img");
    let src = Arc::new(FileTransport::open(&src_path, false).unwrap());

    // In process (the default single-machine setup): undo journaled ahead of the replica,
    // applied as it arrives, one commit.
    let journal_dir = dir.join(format!("journal-{fraction}"));
    let replica: Arc<dyn Transport> = Arc::new(FileTransport::open(&replica_path, true).unwrap());
    let replicas = BTreeMap::from([(0u32, replica.clone())]);
    let base = RecoveryPoint { seq: 0, time_ms: 0, consistency: Consistency::Crash };
    let mut mt = MasterTarget::new(Journal::create(&journal_dir, JournalConfig::default(), base).unwrap(), replicas);
    let (mut strict, mut plain, mut cold, mut cold_floor) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut naive = Vec::new();
    let pct = fraction * 100.0;
    let mut seq = 0;
    let scratch_path = dir.join("scratch.img");
    // Warm rounds first: every image is in the page cache, as after its creation (and as
    // in the resync's warm run), the replica included. The cold rounds evict them all.
    for round in 1..=CYCLE_ROUNDS {
        // The changed blocks were just written, so they are still in the page cache.
        let changed = change_blocks(&src_path, size, fraction, rng, material);
        settle_memory(dir, &changed);
        let baseline = baseline_on_scratch(&scratch_path, size, &src, &changed, BASELINE_IN_FLIGHT).await;
        let plain_path = dir.join("scratch-plain.img");
        drop(FileTransport::create(&plain_path, size).unwrap());
        settle_memory(dir, &changed);
        let plain_baseline = read_changed_and_pwrite(&src, &plain_path, &changed).await;
        std::fs::remove_file(&plain_path).unwrap();
        seq += 1;
        settle_memory(dir, &changed);
        let engine = timed_cycle(&mut mt, seq, &src, &changed).await;
        println!(
            "  cycle {pct:.0}% round {round} warm: engine {:.3}s, baselines {:.3}s (FileTransport) {:.3}s (plain pwrite)",
            secs(engine),
            secs(baseline),
            secs(plain_baseline)
        );
        strict.push(ratio(engine, baseline));
        plain.push(ratio(engine, plain_baseline));
    }
    for round in 1..=CYCLE_ROUNDS {
        // Cold: a new change set read from the disk, as a process server reading a
        // snapshot does. Every image is evicted before each timed run; the engine's undo
        // reads of the replica come from the disk too.
        let cold_changed = change_blocks(&src_path, size, fraction, rng, material);
        evict(&[&src_path]);
        let cold_baseline = baseline_on_scratch(&scratch_path, size, &src, &cold_changed, BASELINE_IN_FLIGHT).await;
        evict(&[&src_path]);
        let one_by_one = baseline_on_scratch(&scratch_path, size, &src, &cold_changed, 1).await;
        evict(&[&src_path, &replica_path]);
        let floor = undo_floor_on_scratch(dir, size, &src, replica.as_file().expect("a file"), &cold_changed).await;
        evict(&[&src_path, &replica_path]);
        seq += 1;
        let engine = timed_cycle(&mut mt, seq, &src, &cold_changed).await;
        println!(
            "  cycle {pct:.0}% round {round} cold: engine {:.3}s, baselines {:.3}s (FileTransport) {:.3}s (one block at a time) {:.3}s (undo floor)",
            secs(engine),
            secs(cold_baseline),
            secs(one_by_one),
            secs(floor)
        );
        cold.push(ratio(engine, cold_baseline));
        cold_floor.push(ratio(engine, floor));
        naive.push(secs(one_by_one));
    }
    println!(
        "cycle {pct:.0}% in process (journal+apply), warm    median of {CYCLE_ROUNDS} ratios {:>5.2}x (read changed + write + 1 flush)  {:>5.2}x (same, plain pwrite + 1 fsync)  goal <= 1.5x",
        median(strict),
        median(plain)
    );
    println!(
        "cycle {pct:.0}% in process (journal+apply), cold    median of {CYCLE_ROUNDS} ratios {:>5.2}x (read changed + write + 1 flush)  goal <= 1.5x; one block at a time took {:.3}s (median)",
        median(cold),
        median(naive)
    );
    println!(
        "cycle {pct:.0}% in process (journal+apply), cold    median of {CYCLE_ROUNDS} ratios {:>5.2}x (undo floor: the same plus reading the old bytes and appending them, 2 flushes)",
        median(cold_floor)
    );
    drop(mt);
    std::fs::remove_dir_all(&journal_dir).unwrap();
}

/// The production path: both roles in one process, the cycle crossing loopback TCP
/// through the framed protocol, once per codec. Each round cuts a new warm change set,
/// measures the baseline on it, then sends it. The replica is a synced sparse copy of
/// the source, so the cycles do real undo reads and overwrites.
async fn tcp_cycle_figures(dir: &Path, size: u64, fraction: f64, rng: &mut Rng, material: &Material) {
    let src_path = dir.join("src.img");
    let src = Arc::new(FileTransport::open(&src_path, false).unwrap());
    let replica = dir.join("replica-tcp.img");
    sparse_copy(&src_path, &replica);
    let journal_dir = dir.join("journal-tcp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = MasterTargetConfig {
        journal_dir: journal_dir.clone(),
        replicas: BTreeMap::from([(0u32, replica.clone())]),
        journal: JournalConfig::default(),
        fault: None,
    };
    let server = tokio::spawn(async move {
        let _ = MasterTargetServer::new(config).serve(listener).await;
    });
    let pct = fraction * 100.0;
    let scratch_path = dir.join("scratch.img");
    for choice in [CodecChoice::Auto, CodecChoice::Fixed(Codec::Lz4), CodecChoice::Fixed(Codec::Zstd(1))] {
        let options = SessionOptions { codec: choice, ..SessionOptions::default() };
        let mut session = ProcessServerSession::connect(&addr, "bench", &[(0, size)], options).await.unwrap();
        let codec = session.codec();
        let label = if choice == CodecChoice::Auto { format!("auto ({codec})") } else { codec.to_string() };
        let (mut ratios, mut changed_bytes, mut sent_bytes) = (Vec::new(), 0, 0);
        for round in 1..=CYCLE_ROUNDS {
            let changed = change_blocks(&src_path, size, fraction, rng, material);
            settle_memory(dir, &changed);
            let baseline = baseline_on_scratch(&scratch_path, size, &src, &changed, BASELINE_IN_FLIGHT).await;
            settle_memory(dir, &changed);
            let disks = [DiskChanges { disk: 0, source: src.clone(), changed }];
            let start = Instant::now();
            let r = session.cycle(&disks, round as u64, Consistency::Crash, None).await.unwrap();
            let engine = start.elapsed();
            println!("  cycle {pct:.0}% over TCP, {label}, round {round}: engine {:.3}s, baseline {:.3}s", secs(engine), secs(baseline));
            ratios.push(ratio(engine, baseline));
            changed_bytes += r.bytes_changed;
            sent_bytes += r.bytes_sent;
        }
        session.close().await.unwrap();
        println!(
            "cycle {pct:.0}% over TCP loopback, {label:<11} median of {CYCLE_ROUNDS} ratios {:>5.2}x (read changed + write + 1 flush)  goal <= 1.5x; wire {:.2}x smaller than the changed bytes",
            median(ratios),
            changed_bytes as f64 / sent_bytes.max(1) as f64
        );
        if codec == Codec::Zstd(1) {
            println!("wire {pct:.0}%: {changed_bytes} changed bytes, {sent_bytes} sent with zstd-1 ({:.2}x smaller)  goal: sent <= changed", changed_bytes as f64 / sent_bytes.max(1) as f64);
        }
    }
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&replica).unwrap();
    std::fs::remove_dir_all(&journal_dir).unwrap();
}

/// Rounds of each resync figure. Baseline and engine swap order from one round to the
/// next, so that neither is always the first to fill the page cache after the target's
/// copy (see the note on noise at the top).
const RESYNC_ROUNDS: usize = 3;

async fn resync_figures(dir: &Path, size: u64, fraction: f64, rng: &mut Rng, material: &Material) {
    let src_path = dir.join("src.img");
    let dst_path = dir.join("resync-target.img");
    sparse_copy(&src_path, &dst_path);
    // The source drifts without change tracking: only hashing finds what differs.
    let changed = change_blocks(&src_path, size, fraction, rng, material);
    let src = FileTransport::open(&src_path, false).unwrap();
    let hashed = allocated_bytes(&src_path) + allocated_bytes(&dst_path);
    let pct = fraction * 100.0;
    for cold in [true, false] {
        let temperature = if cold { "cold" } else { "warm" };
        let (mut ratios, mut engines, mut cpus, mut blocks_sent) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for round in 1..=RESYNC_ROUNDS {
            let target = dir.join("resync-run.img");
            sparse_copy(&dst_path, &target);
            let dst = FileTransport::open(&target, true).unwrap();
            // Warm runs are settled like the cycle's: the engine writes the differing
            // blocks into the page cache, and would otherwise pay for whatever freed
            // memory last.
            let prepare = || {
                if cold {
                    evict(&[&src_path, &target]);
                } else {
                    cat_both(&src_path, &target);
                    settle_memory(dir, &changed);
                }
            };
            let engine_first = round % 2 == 0;
            let mut baseline = Duration::ZERO;
            if !engine_first {
                prepare();
                baseline = cat_both(&src_path, &target);
            }
            prepare();
            let cpu0 = cpu_seconds();
            let start = Instant::now();
            let r = resync(&src, &dst, ResyncOptions::default(), None).await.unwrap();
            let engine = start.elapsed();
            cpus.push(cpu_seconds() - cpu0);
            blocks_sent = r.blocks_sent;
            if engine_first {
                prepare();
                baseline = cat_both(&src_path, &target);
            }
            println!(
                "  hash resync {pct:.0}% {temperature} round {round}: engine {:.3}s, baseline {:.3}s (cat both images side by side){}",
                secs(engine),
                secs(baseline),
                if engine_first { ", engine first" } else { "" }
            );
            ratios.push(ratio(engine, baseline));
            engines.push(engine);
            drop(dst);
            std::fs::remove_file(&target).unwrap();
        }
        println!(
            "hash resync {pct:.0}% {temperature:<4}                     median of {RESYNC_ROUNDS} ratios {:>5.2}x (cat both images side by side)  goal <= 1.1x",
            median(ratios)
        );
        if cold && fraction < 0.05 {
            compare_tools(dir, &src_path, &dst_path, Duration::from_secs_f64(median(engines.iter().copied().map(secs).collect())));
        }
        if !cold {
            let cpu = median(cpus);
            println!(
                "cpu {pct:.0}%: {cpu:.2} CPU-s (median) for {:.2} GiB hashed = {:.2} CPU-s per 4 GiB hashed  goal <= 1.5; {blocks_sent} blocks sent",
                hashed as f64 / (1u64 << 30) as f64,
                cpu / (hashed as f64 / (4u64 << 30) as f64),
            );
        }
    }
    std::fs::remove_file(&dst_path).unwrap();
}

/// Times `qemu-img convert -n` (plus `extra` options) onto a fresh target; `None` when
/// qemu-img is not installed.
fn qemu_convert(src: &Path, target: &Path, size: u64, extra: &[&str]) -> Option<Duration> {
    drop(FileTransport::create(target, size).unwrap());
    let start = Instant::now();
    let status = Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw"]).args(extra).arg(src).arg(target).status();
    let took = start.elapsed();
    std::fs::remove_file(target).unwrap();
    status.is_ok_and(|s| s.success()).then_some(took)
}

/// Rounds of the full copy: each runs both qemu-img baselines and ours back to back, and
/// the figures are the medians of the rounds' ratios, as the disk here is noisy.
const COPY_ROUNDS: usize = 3;

async fn full_copy_figure(dir: &Path, size: u64) {
    let src_path = dir.join("src.img");
    let qemu_target = dir.join("qemu.img");
    let target_path = dir.join("copy.img");
    let src = FileTransport::open(&src_path, false).unwrap();
    let (mut unflushed, mut flushed, mut synced) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=COPY_ROUNDS {
        // qemu-img's default cache mode for the output is "unsafe": it never flushes, like
        // our copy before its flush; `-t writeback` makes qemu-img end with one fdatasync,
        // like our copy with its flush (`copy_allocated`).
        let plain = qemu_convert(&src_path, &qemu_target, size, &[]);
        let durable = qemu_convert(&src_path, &qemu_target, size, &["-t", "writeback"]);
        let target = FileTransport::create(&target_path, size).unwrap();
        let start = Instant::now();
        let r = copy_allocated_unflushed(&src, &target, None).await.unwrap();
        let copied = start.elapsed();
        target.flush().await.unwrap();
        let engine = start.elapsed();
        let allocated = allocated_bytes(&target_path);
        drop(target);
        std::fs::remove_file(&target_path).unwrap();
        // An initial sync onto a new disk, as the pipeline runs it: the copy, then the
        // hash-tree verification, whose flush makes the target durable before the item
        // counts as protected.
        let target = FileTransport::create(&target_path, size).unwrap();
        let start = Instant::now();
        copy_allocated_unflushed(&src, &target, None).await.unwrap();
        let v = resync(&src, &target, ResyncOptions::default(), None).await.unwrap();
        let initial_sync = start.elapsed();
        assert_eq!(v.blocks_sent, 0, "the copy left nothing for the verification to repair");
        drop(target);
        std::fs::remove_file(&target_path).unwrap();
        let (Some(plain), Some(durable)) = (plain, durable) else {
            println!("full copy: engine {:.3}s (qemu-img not available for the baseline)", secs(engine));
            return;
        };
        println!(
            "  full copy round {round}: engine {:.3}s, flushed {:.3}s, copied, verified and flushed {:.3}s; baselines {:.3}s (qemu-img convert -n) \
             {:.3}s (same, -t writeback); source allocates {} MiB, target {} MiB, wrote {} MiB",
            secs(copied),
            secs(engine),
            secs(initial_sync),
            secs(plain),
            secs(durable),
            allocated_bytes(&src_path) >> 20,
            allocated >> 20,
            r.bytes_written >> 20
        );
        unflushed.push(ratio(copied, plain));
        flushed.push(ratio(engine, durable));
        synced.push(ratio(initial_sync, durable));
    }
    println!(
        "full copy of the sparse image (warm)            median of {COPY_ROUNDS} ratios {:>5.2}x (unflushed, against qemu-img convert -n, which never flushes)  \
         {:>5.2}x (flushed, against qemu-img convert -n -t writeback, one fdatasync)  goal <= 1.0x, holes never written",
        median(unflushed),
        median(flushed)
    );
    println!(
        "initial sync (copy, hash-tree verify, flush)    median of {COPY_ROUNDS} ratios {:>5.2}x (against qemu-img convert -n -t writeback, which does not verify)",
        median(synced)
    );
}

async fn big_sparse_memory(dir: &Path, size: u64, rng: &mut Rng, material: &Material) {
    // 16x the image size, with about as much data as a 1/16 slice of it.
    let big = size * 16;
    let src_path = dir.join("big-src.img");
    let f = std::fs::File::create(&src_path).unwrap();
    f.set_len(big).unwrap();
    for _ in 0..(size / BLOCK / 32) {
        f.write_all_at(material.block(rng, BLOCK as usize), rng.below(big / BLOCK) * BLOCK).unwrap();
    }
    f.sync_all().unwrap();
    let dst_path = dir.join("big-dst.img");
    let dst = FileTransport::create(&dst_path, big).unwrap();
    let src = FileTransport::open(&src_path, false).unwrap();
    let start = Instant::now();
    let r = resync(&src, &dst, ResyncOptions::default(), None).await.unwrap();
    println!(
        "memory: {} GiB sparse disk resynced in {:.2}s ({} blocks sent); peak RSS so far {:.0} MiB  goal <= 256 MiB",
        big >> 30,
        secs(start.elapsed()),
        r.blocks_sent,
        peak_rss_mib()
    );
    drop(dst);
    std::fs::remove_file(&src_path).unwrap();
    std::fs::remove_file(&dst_path).unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let size = std::env::var("HOMEWARD_BENCH_SIZE").map(|s| parse_size(&s)).unwrap_or(4 << 30) / BLOCK * BLOCK;
    let parent: PathBuf = std::env::var("HOMEWARD_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(parent).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let material = Material::new(&mut rng);
    println!("homeward-replication bench: {} MiB VM-like sparse image in {}", size >> 20, dir.path().display());
    let src_path = dir.path().join("src.img");
    let start = Instant::now();
    make_image(&src_path, size, &mut rng, &material);
    println!("image: {} MiB allocated, generated in {:.1}s", allocated_bytes(&src_path) >> 20, secs(start.elapsed()));
    let only = std::env::var("HOMEWARD_BENCH_ONLY").ok();
    let run = |what: &str| only.as_deref().is_none_or(|list| list.split(',').any(|w| w.trim() == what));
    if run("compression") {
        compression_figures(&src_path, size, &mut rng);
    }
    runtime.block_on(async {
        if run("copy") {
            full_copy_figure(dir.path(), size).await;
        }
        if run("cycle") {
            sparse_copy(&src_path, &dir.path().join("replica.img"));
            for fraction in [0.01, 0.10] {
                cycle_figures(dir.path(), size, fraction, &mut rng, &material).await;
                // Bring the replica level with the source for the next round.
                sparse_copy(&src_path, &dir.path().join("replica.img"));
            }
        }
        if run("tcp") {
            for fraction in [0.01, 0.10] {
                tcp_cycle_figures(dir.path(), size, fraction, &mut rng, &material).await;
            }
        }
        if run("resync") {
            if run("cycle") || run("tcp") {
                // The cycles changed many blocks, a lot of them in holes: a new image of the
                // same kind keeps the resync's figures those of a 4 GiB VM-like disk.
                make_image(&src_path, size, &mut rng, &material);
                println!("image for the resync: {} MiB allocated", allocated_bytes(&src_path) >> 20);
            }
            for fraction in [0.01, 0.10] {
                resync_figures(dir.path(), size, fraction, &mut rng, &material).await;
            }
        }
        println!("memory: peak RSS after the {} MiB runs {:.0} MiB  goal <= 256 MiB", size >> 20, peak_rss_mib());
        if run("memory") {
            big_sparse_memory(dir.path(), size, &mut rng, &material).await;
        }
    });
    let _ = Bytes::new();
}
