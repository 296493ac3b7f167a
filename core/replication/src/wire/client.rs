//! The process-server role's side of the protocol: a session with a master target that
//! sends cycles with a bounded window of unacknowledged blocks, and runs initial sync,
//! resync and verification against the remote replicas.

use std::{collections::BTreeMap, sync::Arc};

use tokio::{
    io::{AsyncWriteExt, BufReader, BufWriter},
    net::{TcpStream, tcp::{OwnedReadHalf, OwnedWriteHalf}},
};
use tracing::{Instrument, info, info_span, warn};

use super::{
    frame::{FrameError, read_frame, write_frame_parts},
    limit::BandwidthLimiter,
    message::{DiskDecl, Hello, Message, PROTOCOL, VERSION, Welcome},
};
use crate::{
    compress::{Codec, CodecChoice},
    cycle::{CycleReport, CycleSink, DiskChanges, WireBlock, now_ms, send_cycle},
    error::{ReplicationError, WireError},
    extent::Extent,
    hash::{BlockHasher, DEFAULT_BLOCK, Digest, HashTree, block_digests},
    journal::{Consistency, RecoveryPoint},
    progress::ProgressReporter,
    resync::{Verified, runs},
    transport::Transport,
};

/// How a session sends.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Unacknowledged blocks allowed in flight (raised to twice the master target's ack
    /// interval if smaller, so the two can never wait on each other).
    pub window: u32,
    /// Bandwidth limit in bytes per second, if any.
    pub bandwidth: Option<u64>,
    /// Compression codec, resolved against the peer's address at connect time.
    pub codec: CodecChoice,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self { window: 64, bandwidth: None, codec: CodecChoice::default() }
    }
}

/// A session from a process server to a master target.
#[derive(Debug)]
pub struct ProcessServerSession {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    peer: String,
    welcome: Welcome,
    window: u64,
    limiter: Option<BandwidthLimiter>,
    codec: Codec,
    sent: u64,
    acked: u64,
    open: Option<u64>,
}

/// What a sync of a group did, disk by disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The cycle (recovery point) that carried the sync, if anything was sent.
    pub cycle: Option<CycleReport>,
    /// Per disk: `true` if it was fully copied (no replica existed), `false` if compared.
    pub full_copy: BTreeMap<u32, bool>,
    /// Per disk: blocks found differing (or allocated, for full copies) and sent.
    pub blocks_sent: BTreeMap<u32, u64>,
    /// Verification verdict of the whole group.
    pub verified: Verified,
    /// Per disk: the verified hash-tree root.
    pub roots: BTreeMap<u32, Digest>,
}

impl ProcessServerSession {
    /// Connects to `addr`, declares the group's disks and reads the master target's state.
    pub async fn connect(addr: &str, group: &str, disks: &[(u32, u64)], options: SessionOptions) -> Result<Self, WireError> {
        let stream = TcpStream::connect(addr).await.map_err(|source| WireError::Io { peer: addr.to_string(), source })?;
        let _ = stream.set_nodelay(true);
        let local = stream.peer_addr().is_ok_and(|a| a.ip().is_loopback());
        let codec = options.codec.resolve(local, options.bandwidth.is_some());
        info!(peer = addr, %codec, "wire codec");
        let (r, w) = stream.into_split();
        let hello = Hello {
            protocol: PROTOCOL.into(),
            version: VERSION,
            group: group.into(),
            disks: disks.iter().map(|(id, size)| DiskDecl { id: *id, size: *size }).collect(),
        };
        let mut session = Self {
            reader: BufReader::with_capacity(1 << 16, r),
            writer: BufWriter::with_capacity(1 << 20, w),
            peer: addr.to_string(),
            welcome: Welcome { version: 0, next_cycle: 0, newest_point: None, disks: Vec::new(), ack_every: 1, notes: Vec::new() },
            window: options.window as u64,
            limiter: options.bandwidth.map(BandwidthLimiter::new),
            codec,
            sent: 0,
            acked: 0,
            open: None,
        };
        session.send(&Message::Hello(hello)).await?;
        match session.recv().await? {
            Message::Welcome(w) => {
                for note in &w.notes {
                    warn!(peer = %session.peer, note, "master target reported");
                }
                session.window = session.window.max(2 * w.ack_every as u64);
                session.welcome = w;
                Ok(session)
            }
            Message::Refuse { reason } => Err(WireError::Refused { peer: session.peer, reason }),
            other => Err(WireError::BadFrame { peer: session.peer, reason: format!("expected Welcome, got {other:?}") }),
        }
    }

    /// The master target's answer to the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The codec this session's cycles use.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The cycle the master target expects next.
    pub fn next_cycle(&self) -> u64 {
        self.welcome.next_cycle
    }

    async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        let (kind, head, bulk) = m.encode_parts();
        if let Some(l) = self.limiter.as_mut() {
            l.consume((head.len() + bulk.len()) as u64 + 9).await;
        }
        let peer = self.peer.clone();
        write_frame_parts(&mut self.writer, kind, &[&head, bulk]).await.map_err(|source| WireError::Io { peer, source })
    }

    async fn recv(&mut self) -> Result<Message, WireError> {
        let peer = self.peer.clone();
        self.writer.flush().await.map_err(|source| WireError::Io { peer: peer.clone(), source })?;
        let frame = read_frame(&mut self.reader).await.map_err(|e| match e {
            FrameError::Io(source) => WireError::Io { peer: peer.clone(), source },
            FrameError::Bad(reason) => WireError::BadFrame { peer: peer.clone(), reason },
        })?;
        let msg = Message::decode(frame.kind, frame.payload).map_err(|reason| WireError::BadFrame { peer: peer.clone(), reason })?;
        match msg {
            Message::Error { message } => Err(WireError::Remote { peer, message }),
            m => Ok(m),
        }
    }

    /// The digests of a remote replica under `hasher` (whose key travels with the request).
    pub async fn remote_digests(&mut self, disk: u32, hasher: &BlockHasher) -> Result<Vec<Digest>, WireError> {
        self.send(&Message::HashRequest { disk, block: hasher.block(), key: hasher.key().to_vec() }).await?;
        let mut digests = Vec::new();
        loop {
            match self.recv().await? {
                Message::Hashes { disk: d, first, digests: page } if d == disk && first == digests.len() as u64 => digests.extend(page),
                Message::HashesEnd { disk: d, blocks } if d == disk && blocks == digests.len() as u64 => return Ok(digests),
                other => {
                    return Err(WireError::BadFrame { peer: self.peer.clone(), reason: format!("unexpected answer to a digest request: {other:?}") });
                }
            }
        }
    }

    /// Sends one change-tracked cycle of the group (see [`send_cycle`]). `seq` must be
    /// [`ProcessServerSession::next_cycle`].
    pub async fn cycle(
        &mut self,
        disks: &[DiskChanges],
        time_ms: u64,
        consistency: Consistency,
        progress: Option<&ProgressReporter>,
    ) -> Result<CycleReport, ReplicationError> {
        let seq = self.welcome.next_cycle;
        let codec = self.codec;
        let report = send_cycle(self, seq, disks, time_ms, consistency, codec, progress).await?;
        self.welcome.next_cycle = report.point.seq + 1;
        self.welcome.newest_point = Some(report.point);
        // Every replica now holds data; later syncs must compare, not copy.
        self.welcome.disks.iter_mut().for_each(|d| d.existed = true);
        Ok(report)
    }

    /// Initial sync or resync of the whole group, then verification. A disk whose
    /// replica was just created gets its allocated extents copied; a disk with an existing
    /// replica (the original VM's disk, or any seed) is hashed on both sides at once and
    /// only differing blocks are sent. Everything travels as one journaled cycle. Then
    /// both sides are hashed again and compared as hash trees; differing blocks are sent
    /// again in a repair cycle and reported, and if they still differ the sync fails.
    pub async fn sync(
        &mut self,
        disks: &BTreeMap<u32, Arc<dyn Transport>>,
        consistency: Consistency,
        progress: Option<&ProgressReporter>,
    ) -> Result<SyncReport, ReplicationError> {
        let span = info_span!("sync", peer = %self.peer, disks = disks.len());
        async {
            let block = DEFAULT_BLOCK;
            // One key for the whole sync: the verification below reuses the first pass's
            // source digests.
            let hasher = BlockHasher::new(block);
            let existed: BTreeMap<u32, bool> = self.welcome.disks.iter().map(|d| (d.id, d.existed)).collect();
            let mut changes = Vec::new();
            let mut report = SyncReport {
                cycle: None,
                full_copy: BTreeMap::new(),
                blocks_sent: BTreeMap::new(),
                verified: Verified::Identical,
                roots: BTreeMap::new(),
            };
            let mut local_trees = BTreeMap::new();
            for (id, source) in disks {
                let size = source.size().await?;
                let full = !existed.get(id).copied().unwrap_or(true);
                let changed = if full {
                    let allocated = source.allocated_extents().await?;
                    report.blocks_sent.insert(*id, allocated.iter().map(|e| e.len.div_ceil(block)).sum());
                    local_trees.insert(*id, None);
                    allocated
                } else {
                    let (local, remote) = tokio::join!(block_digests(source.as_ref(), &hasher, progress), self.remote_digests(*id, &hasher));
                    let (local, remote) = (local?, remote?);
                    let differing: Vec<u64> = (0..local.len()).filter(|i| remote.get(*i) != Some(&local[*i])).map(|i| i as u64).collect();
                    report.blocks_sent.insert(*id, differing.len() as u64);
                    local_trees.insert(*id, Some(HashTree::new(local)));
                    blocks_to_extents(&differing, block, size)
                };
                report.full_copy.insert(*id, full);
                changes.push(DiskChanges { disk: *id, source: source.clone(), changed });
            }
            if changes.iter().any(|c| !c.changed.is_empty()) {
                report.cycle = Some(self.cycle(&changes, now_ms(), consistency, progress).await?);
            }
            // Verification: the source side's tree is reused when it was hashed above (the
            // source is a snapshot); the replica side is always hashed again remotely.
            let mut repairs = Vec::new();
            let mut repaired_blocks = 0u64;
            for (id, source) in disks {
                let local = match local_trees.remove(id).flatten() {
                    Some(t) => t,
                    None => HashTree::new(block_digests(source.as_ref(), &hasher, None).await?),
                };
                let remote = HashTree::new(self.remote_digests(*id, &hasher).await?);
                let bad = local.differing_blocks(&remote);
                if !bad.is_empty() {
                    warn!(disk = id, blocks = bad.len(), "verification found differing blocks; sending them again");
                    repaired_blocks += bad.len() as u64;
                    let size = source.size().await?;
                    repairs.push((DiskChanges { disk: *id, source: source.clone(), changed: blocks_to_extents(&bad, block, size) }, local));
                } else {
                    report.roots.insert(*id, local.root());
                }
            }
            if !repairs.is_empty() {
                let changes: Vec<DiskChanges> = repairs.iter().map(|(c, _)| c.clone()).collect();
                self.cycle(&changes, now_ms(), consistency, None).await?;
                for (c, local) in repairs {
                    let remote = HashTree::new(self.remote_digests(c.disk, &hasher).await?);
                    let still = local.differing_blocks(&remote).len() as u64;
                    if still > 0 {
                        return Err(ReplicationError::VerifyFailed { disk: format!("disk {}", c.disk), blocks: still });
                    }
                    report.roots.insert(c.disk, local.root());
                }
                report.verified = Verified::Repaired { blocks: repaired_blocks };
            }
            info!(?report.verified, "sync verified");
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Ends the session politely.
    pub async fn close(mut self) -> Result<(), WireError> {
        self.send(&Message::Bye).await?;
        let peer = self.peer.clone();
        self.writer.flush().await.map_err(|source| WireError::Io { peer, source })
    }

    async fn wait_acks(&mut self, until_in_flight: u64) -> Result<(), WireError> {
        while self.sent - self.acked > until_in_flight {
            match self.recv().await? {
                Message::Ack { blocks } => self.acked = self.acked.max(blocks),
                other => {
                    return Err(WireError::BadFrame { peer: self.peer.clone(), reason: format!("expected Ack, got {other:?}") });
                }
            }
        }
        Ok(())
    }
}

/// Block indices as byte extents, merged into runs and clipped to the disk.
fn blocks_to_extents(blocks: &[u64], block: u64, size: u64) -> Vec<Extent> {
    runs(blocks, u64::MAX)
        .into_iter()
        .map(|(first, n)| {
            let offset = first * block;
            Extent::new(offset, (n * block).min(size - offset))
        })
        .collect()
}

impl CycleSink for ProcessServerSession {
    async fn begin(&mut self, seq: u64, time_ms: u64, consistency: Consistency) -> Result<(), ReplicationError> {
        self.sent = 0;
        self.acked = 0;
        self.open = Some(seq);
        Ok(self.send(&Message::Begin { seq, time_ms, consistency }).await?)
    }

    async fn block(&mut self, block: WireBlock) -> Result<(), ReplicationError> {
        self.send(&Message::Block(block)).await?;
        self.sent += 1;
        // Backpressure: never more than `window` blocks the master target has not journaled.
        let window = self.window;
        self.wait_acks(window.saturating_sub(1)).await?;
        Ok(())
    }

    async fn end(&mut self) -> Result<RecoveryPoint, ReplicationError> {
        let seq = self.open.take().ok_or_else(|| WireError::BadFrame { peer: self.peer.clone(), reason: "end without begin".into() })?;
        self.send(&Message::End { seq, blocks: self.sent }).await?;
        loop {
            match self.recv().await? {
                Message::Ack { blocks } => self.acked = self.acked.max(blocks),
                Message::Applied { point } if point.seq == seq => return Ok(point),
                other => {
                    return Err(WireError::BadFrame { peer: self.peer.clone(), reason: format!("expected Applied, got {other:?}") }.into());
                }
            }
        }
    }
}
