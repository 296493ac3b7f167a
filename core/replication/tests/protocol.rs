//! The process-server / master-target protocol in one process over loopback: handshake
//! refusal, damaged frames, aborted cycles, backpressure, and verification that never
//! accepts a differing replica.

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::{AtomicU32, Ordering}},
    time::Duration,
};

use bytes::Bytes;
use homeward_replication::{
    ReplicationError, TransportError, WireError,
    cycle::DiskChanges,
    extent::Extent,
    journal::{Consistency, JournalConfig},
    resync::{ResyncOptions, Verified, resync},
    transport::{MemoryTransport, Transport, TransportFuture},
    cycle::MasterTarget,
    journal::{DiskSet, Journal, RecoveryPoint},
    compress::{Codec, CodecChoice},
    wire::{LoopbackMasterTarget, MasterTargetConfig, MasterTargetServer, Message, ProcessServerSession, SessionOptions, VERSION, Welcome, read_frame, write_frame},
};
use tokio::{io::AsyncWriteExt, net::TcpListener};

/// A master target serving on an ephemeral loopback port; stopped when dropped.
struct Served {
    addr: String,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(disks: u32) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = MasterTargetConfig {
        journal_dir: dir.path().join("journal"),
        replicas: (0..disks).map(|i| (i, dir.path().join(format!("r{i}.img")))).collect(),
        journal: JournalConfig::default(),
        fault: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let _ = MasterTargetServer::new(config).serve(listener).await;
    });
    Served { addr, task, _dir: dir }
}

fn source(size: u64, seed: u8) -> Arc<dyn Transport> {
    let m = MemoryTransport::new("src", size);
    let data: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(seed)).collect();
    futures_block_on(m.write_at(0, Bytes::from(data))).unwrap();
    Arc::new(m)
}

fn futures_block_on<T>(f: TransportFuture<'_, T>) -> Result<T, TransportError> {
    // MemoryTransport futures are ready immediately.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = f;
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => panic!("memory transport future was not ready"),
    }
}

#[tokio::test]
async fn auto_sends_raw_over_loopback_and_compresses_under_a_bandwidth_limit() {
    let served = serve(1).await;
    let src = source(1 << 20, 3);
    let changes = [DiskChanges { disk: 0, source: src.clone(), changed: vec![Extent::new(0, 300_000)] }];
    let mut s = ProcessServerSession::connect(&served.addr, "g", &[(0, 1 << 20)], SessionOptions::default()).await.unwrap();
    assert_eq!(s.codec(), Codec::None);
    let raw = s.cycle(&changes, 10, Consistency::Crash, None).await.unwrap();
    assert_eq!(raw.bytes_sent, raw.bytes_changed, "the loopback carries raw blocks");
    s.close().await.unwrap();
    let limited = SessionOptions { bandwidth: Some(1 << 30), ..SessionOptions::default() };
    let mut s = ProcessServerSession::connect(&served.addr, "g", &[(0, 1 << 20)], limited).await.unwrap();
    assert_eq!(s.codec(), Codec::Zstd(1));
    let packed = s.cycle(&changes, 11, Consistency::Crash, None).await.unwrap();
    assert!(packed.bytes_sent < packed.bytes_changed, "a limited link gets compressed blocks");
    assert_eq!(packed.point.seq, raw.point.seq + 1);
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_different_protocol_version_is_refused_naming_both() {
    let served = serve(1).await;
    let mut stream = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    let hello = serde_json::json!({ "protocol": "homeward-replication", "version": 99, "group": "g", "disks": [] });
    write_frame(&mut stream, 1, &serde_json::to_vec(&hello).unwrap()).await.unwrap();
    stream.flush().await.unwrap();
    let frame = read_frame(&mut stream).await.unwrap();
    match Message::decode(frame.kind, frame.payload).unwrap() {
        Message::Refuse { reason } => assert!(reason.contains("v99") && reason.contains(&format!("v{VERSION}")), "{reason}"),
        other => panic!("expected Refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_damaged_frame_aborts_the_cycle_and_the_next_session_resends_it() {
    let served = serve(1).await;
    let src = source(1 << 20, 7);
    let s = ProcessServerSession::connect(&served.addr, "g", &[(0, 1 << 20)], SessionOptions::default()).await.unwrap();
    assert_eq!(s.next_cycle(), 1);
    drop(s);
    // By hand: begin cycle 1, one good block, then a block whose checksum is wrong.
    let mut stream = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    let hello = serde_json::json!({ "protocol": "homeward-replication", "version": VERSION, "group": "g", "disks": [{ "id": 0, "size": 1 << 20 }] });
    write_frame(&mut stream, 1, &serde_json::to_vec(&hello).unwrap()).await.unwrap();
    let welcome = read_frame(&mut stream).await.unwrap();
    assert_eq!(welcome.kind, 2);
    let (k, p) = Message::Begin { seq: 1, time_ms: 5, consistency: Consistency::Crash }.encode();
    write_frame(&mut stream, k, &p).await.unwrap();
    let block = homeward_replication::cycle::WireBlock { disk: 0, offset: 0, len: 4, codec: 0, zero: false, payload: Bytes::from_static(b"evil") };
    let (k, p) = Message::Block(block.clone()).encode();
    write_frame(&mut stream, k, &p).await.unwrap();
    let mut bad = Vec::new();
    write_frame(&mut bad, k, &p).await.unwrap();
    let last = bad.len() - 6;
    bad[last] ^= 0xff;
    stream.write_all(&bad).await.unwrap();
    let answer = read_frame(&mut stream).await.unwrap();
    match Message::decode(answer.kind, answer.payload).unwrap() {
        Message::Error { message } => assert!(message.contains("checksum"), "{message}"),
        other => panic!("expected Error, got {other:?}"),
    }
    drop(stream);
    // The aborted cycle left nothing behind: cycle 1 is still next and goes through whole.
    let zstd = SessionOptions { codec: CodecChoice::Fixed(Codec::Zstd(1)), ..SessionOptions::default() };
    let mut s = ProcessServerSession::connect(&served.addr, "g", &[(0, 1 << 20)], zstd).await.unwrap();
    assert_eq!(s.next_cycle(), 1);
    let changes = [DiskChanges { disk: 0, source: src.clone(), changed: vec![Extent::new(0, 300_000)] }];
    let (progress, watch) = homeward_replication::progress::ProgressReporter::new(300_000, 1);
    let report = s.cycle(&changes, 10, Consistency::App, Some(&progress)).await.unwrap();
    assert_eq!(report.point.seq, 1);
    let seen = watch.borrow().clone();
    assert_eq!((seen.bytes_done, seen.blocks_done, seen.bytes_sent), (300_000, 1, report.bytes_sent));
    assert!(report.bytes_sent < report.bytes_changed, "compressible data is compressed on the wire");
    let mut roots = BTreeMap::new();
    roots.insert(0u32, src.clone());
    let sync = s.sync(&roots, Consistency::Crash, None).await.unwrap();
    assert_eq!(sync.verified, Verified::Identical);
    assert!(!sync.full_copy[&0]);
    assert_eq!(sync.blocks_sent[&0], (1 << 20) / 65536 - 300_000 / 65536, "only blocks past the first cycle differ");
    s.close().await.unwrap();
}

/// A master target over an in-memory replica, as the pipeline opens one on adapter disks.
fn opened_target(dir: &std::path::Path, replica: &Arc<MemoryTransport>) -> MasterTarget {
    let journal = Journal::create(dir, JournalConfig::default(), RecoveryPoint { seq: 0, time_ms: 1, consistency: Consistency::Crash }).unwrap();
    let mut replicas = DiskSet::new();
    replicas.insert(0, replica.clone() as Arc<dyn Transport>);
    MasterTarget::new(journal, replicas)
}

#[tokio::test]
async fn a_loopback_master_target_serves_an_opened_target_and_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Arc::new(MemoryTransport::new("replica", 1 << 20));
    // A session declaring the wrong size is refused, naming the replica, and changes nothing.
    let server = LoopbackMasterTarget::start(opened_target(&dir.path().join("a"), &replica)).await.unwrap();
    match server.connect("g", &[(0, 4096)], SessionOptions::default()).await.unwrap_err() {
        WireError::Refused { reason, .. } => assert!(reason.contains("replica") && reason.contains("4096"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(server.finish().await.is_err());
    // A good session: one cycle through the protocol, then the target comes back with
    // the point journaled and the replica holding the source's bytes.
    let src = source(1 << 20, 3);
    let server = LoopbackMasterTarget::start(opened_target(&dir.path().join("b"), &replica)).await.unwrap();
    let mut session = server.connect("g", &[(0, 1 << 20)], SessionOptions::default()).await.unwrap();
    let changes = [DiskChanges { disk: 0, source: src.clone(), changed: vec![Extent::new(0, 1 << 20)] }];
    let report = session.cycle(&changes, 10, Consistency::App, None).await.unwrap();
    session.close().await.unwrap();
    let target = server.finish().await.unwrap();
    assert_eq!(target.journal().newest_point().map(|p| (p.seq, p.consistency)), Some((report.point.seq, Consistency::App)));
    assert_eq!(replica.contents(), futures_block_on(src.read_at(0, 1 << 20)).unwrap().to_vec());
}

#[tokio::test]
async fn a_sender_failing_mid_cycle_ends_the_loopback_session_and_the_cycle_is_cut() {
    const SIZE: u64 = 96 << 20;
    let dir = tempfile::tempdir().unwrap();
    // The replica holds data, so rolling back what reached it is visible.
    let replica = Arc::new(MemoryTransport::new("replica", SIZE));
    let before = source(SIZE, 5).read_at(0, SIZE as usize).await.unwrap();
    replica.write_at(0, before.clone()).await.unwrap();
    let journal_dir = dir.path().join("j");
    let server = LoopbackMasterTarget::start(opened_target(&journal_dir, &replica)).await.unwrap();
    let options = SessionOptions { codec: CodecChoice::Fixed(Codec::None), ..SessionOptions::default() };
    let mut session = server.connect("g", &[(0, SIZE)], options).await.unwrap();
    // Reads fail after 80 MiB: more than two journal batches have been written to the
    // replica by then.
    let src: Arc<dyn Transport> = Arc::new(FaultyDisk::failing_reads_from(source(SIZE, 9), 80 << 20));
    let changed = vec![Extent::new(0, SIZE)];
    let changes = [DiskChanges { disk: 0, source: src, changed }];
    let err = session.cycle(&changes, 10, Consistency::Crash, None).await.unwrap_err();
    assert!(err.to_string().contains("read at"), "{err}");
    drop(session);
    // `finish` returns (bounded here only so a regression fails instead of hanging).
    let ended = tokio::time::timeout(Duration::from_secs(60), server.finish()).await.expect("the session ends when the sender hangs up");
    // A hang-up mid-cycle (a clean close, or a reset when acknowledgements were left
    // unread) is a connection error, never a finished session.
    let err = ended.unwrap_err();
    assert!(matches!(err, ReplicationError::Wire(WireError::Io { .. })), "{err:?}");
    // Nothing of the failed cycle survives: cycle 1 is next and the replica is as before.
    let (journal, report) = Journal::open(&journal_dir, JournalConfig::default()).unwrap();
    assert_eq!((journal.next_cycle(), report.discarded_cycle), (1, None));
    assert!(replica.contents() == before[..], "the replica was rolled back");
}

#[tokio::test]
async fn the_sender_stops_at_its_window_until_the_master_target_acknowledges() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let hello = read_frame(&mut stream).await.unwrap();
        assert_eq!(hello.kind, 1);
        let welcome =
            Welcome { version: 1, next_cycle: 1, newest_point: None, disks: vec![], ack_every: 16, notes: vec![] };
        let (k, p) = Message::Welcome(welcome).encode();
        write_frame(&mut stream, k, &p).await.unwrap();
        stream.flush().await.unwrap();
        let mut blocks = 0u64;
        let mut counts = Vec::new();
        for _round in 0..2 {
            // Read until nothing more arrives: a sender without backpressure would go on.
            while let Ok(frame) = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut stream)).await {
                if frame.unwrap().kind == 5 {
                    blocks += 1;
                }
            }
            counts.push(blocks);
            let (k, p) = Message::Ack { blocks }.encode();
            write_frame(&mut stream, k, &p).await.unwrap();
            stream.flush().await.unwrap();
        }
        counts
    });
    let src = source(8 << 20, 3);
    let mut s = ProcessServerSession::connect(&addr, "g", &[(0, 8 << 20)], SessionOptions { window: 40, ..Default::default() }).await.unwrap();
    let changes = [DiskChanges { disk: 0, source: src, changed: (0..120).map(|i| Extent::new(i * 65536, 4096)).collect() }];
    let sender = tokio::spawn(async move { s.cycle(&changes, 1, Consistency::Crash, None).await });
    let counts = fake.await.unwrap();
    assert_eq!(counts, vec![40, 80], "exactly one window of blocks is in flight before each ack");
    // The fake master target has gone; the sender reports the broken session.
    let err = sender.await.unwrap().unwrap_err();
    assert!(matches!(err, ReplicationError::Wire(WireError::Io { .. })), "{err:?}");
}

/// A disk with a fault: it silently loses its next `lose` writes, as a failing controller
/// might, or its reads fail from `fail_reads_from` on, as a disk that goes away mid-cycle.
#[derive(Debug)]
struct FaultyDisk {
    inner: Arc<dyn Transport>,
    lose: AtomicU32,
    fail_reads_from: u64,
}

impl FaultyDisk {
    fn losing_writes(inner: Arc<dyn Transport>, lose: u32) -> Self {
        Self { inner, lose: AtomicU32::new(lose), fail_reads_from: u64::MAX }
    }

    fn failing_reads_from(inner: Arc<dyn Transport>, offset: u64) -> Self {
        Self { inner, lose: AtomicU32::new(0), fail_reads_from: offset }
    }
}

impl Transport for FaultyDisk {
    fn describe(&self) -> String {
        "faulty".into()
    }
    fn size(&self) -> TransportFuture<'_, u64> {
        self.inner.size()
    }
    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        self.inner.allocated_extents()
    }
    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        if offset >= self.fail_reads_from {
            return Box::pin(async move { Err(TransportError::Invalid { target: "faulty".into(), message: format!("read at {offset} failed") }) });
        }
        self.inner.read_at(offset, len)
    }
    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        if self.lose.load(Ordering::SeqCst) > 0 {
            self.lose.fetch_sub(1, Ordering::SeqCst);
            return Box::pin(async { Ok(()) });
        }
        self.inner.write_at(offset, data)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        self.inner.write_zeroes(offset, len)
    }
    fn flush(&self) -> TransportFuture<'_, ()> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn verification_repairs_a_lost_write_and_refuses_a_disk_that_keeps_losing_them() {
    let src = source(256 << 10, 5);
    let dst = Arc::new(MemoryTransport::new("dst", 256 << 10));
    let flaky = FaultyDisk::losing_writes(dst.clone(), 1);
    let report = resync(src.as_ref(), &flaky, ResyncOptions::default(), None).await.unwrap();
    assert!(matches!(report.verified, Verified::Repaired { blocks } if blocks > 0), "{report:?}");
    assert_eq!(dst.contents(), futures_block_on(src.read_at(0, 256 << 10)).unwrap().to_vec());

    let broken = FaultyDisk::losing_writes(Arc::new(MemoryTransport::new("dst", 256 << 10)), u32::MAX);
    let err = resync(src.as_ref(), &broken, ResyncOptions::default(), None).await.unwrap_err();
    assert!(matches!(err, ReplicationError::VerifyFailed { blocks, .. } if blocks > 0), "{err:?}");
}
