//! The master-target role: accepts process-server sessions, journals and applies cycles,
//! and answers digest requests for resync and verification.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use tokio::{
    io::{AsyncWriteExt, BufReader, BufWriter},
    net::{TcpListener, TcpStream, tcp::{OwnedReadHalf, OwnedWriteHalf}},
};
use tracing::{Instrument, info, info_span, warn};

use super::{
    frame::{FrameError, read_frame, write_frame_parts},
    message::{DiskState, Hello, Message, PROTOCOL, VERSION, Welcome},
};
use crate::{
    cycle::{CycleSink, MasterTarget, now_ms},
    error::{ReplicationError, WireError},
    hash::{BlockHasher, block_digests},
    journal::{Consistency, FaultHook, Journal, JournalConfig, RecoveryPoint},
    transport::{FileTransport, Transport},
};

/// Blocks per acknowledgement.
pub const ACK_EVERY: u32 = 16;
/// Digests per `Hashes` frame (2 MiB of digests).
const DIGESTS_PER_FRAME: usize = 65536;

/// Configuration of a master target serving one consistency group.
#[derive(Clone)]
pub struct MasterTargetConfig {
    /// The journal directory on the retention volume.
    pub journal_dir: PathBuf,
    /// Replica image files by disk id; missing files are created (sparse) at the size the
    /// process server declares.
    pub replicas: BTreeMap<u32, PathBuf>,
    /// Journal tuning.
    pub journal: JournalConfig,
    /// A crash-test hook installed on the journal.
    pub fault: Option<FaultHook>,
}

impl std::fmt::Debug for MasterTargetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterTargetConfig").field("journal_dir", &self.journal_dir).field("replicas", &self.replicas).finish()
    }
}

/// A master target: its config, and once a session has declared the disks, its journal
/// and replicas.
#[derive(Debug)]
pub struct MasterTargetServer {
    config: MasterTargetConfig,
    target: Option<MasterTarget>,
    created: BTreeMap<u32, bool>,
    notes: Vec<String>,
}

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    peer: String,
}

impl Conn {
    async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        let (kind, head, bulk) = m.encode_parts();
        let peer = self.peer.clone();
        write_frame_parts(&mut self.writer, kind, &[&head, bulk]).await.map_err(|source| WireError::Io { peer, source })
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        let peer = self.peer.clone();
        self.writer.flush().await.map_err(|source| WireError::Io { peer, source })
    }

    /// The next message, or `None` when the peer closed the connection cleanly.
    async fn recv(&mut self) -> Result<Option<Message>, WireError> {
        self.flush().await?;
        match read_frame(&mut self.reader).await {
            Ok(f) => Message::decode(f.kind, f.payload).map(Some).map_err(|reason| WireError::BadFrame { peer: self.peer.clone(), reason }),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(FrameError::Io(source)) => Err(WireError::Io { peer: self.peer.clone(), source }),
            Err(FrameError::Bad(reason)) => Err(WireError::BadFrame { peer: self.peer.clone(), reason }),
        }
    }
}

impl MasterTargetServer {
    /// A server for `config`. Nothing is opened until the first session.
    pub fn new(config: MasterTargetConfig) -> Self {
        Self { config, target: None, created: BTreeMap::new(), notes: Vec::new() }
    }

    /// A server for a master target the caller has already opened, with replicas on any
    /// transport (adapter disks, page blobs), so the pipeline can run the protocol over
    /// loopback inside one process. Sessions must declare disks the target holds, at
    /// their sizes.
    pub fn for_target(target: MasterTarget) -> Self {
        let config = MasterTargetConfig {
            journal_dir: target.journal().dir().to_path_buf(),
            replicas: BTreeMap::new(),
            journal: JournalConfig::default(),
            fault: None,
        };
        Self { config, target: Some(target), created: BTreeMap::new(), notes: Vec::new() }
    }

    /// The master target, once a session has opened it.
    pub fn target(&self) -> Option<&MasterTarget> {
        self.target.as_ref()
    }

    /// Gives the master target back, once a session has opened it.
    pub fn into_target(self) -> Option<MasterTarget> {
        self.target
    }

    /// Checks that every disk `hello` declares is a replica of the open target, at its size.
    async fn check_declared(target: &MasterTarget, hello: &Hello) -> Result<(), ReplicationError> {
        for d in &hello.disks {
            let replica = target.replicas().get(&d.id).ok_or_else(|| WireError::Refused {
                peer: "process server".into(),
                reason: format!("this master target has no replica for disk {}", d.id),
            })?;
            let size = replica.size().await?;
            if size != d.size {
                return Err(ReplicationError::SizeMismatch { disk: replica.describe(), source_size: d.size, target_size: size });
            }
        }
        Ok(())
    }

    /// Serves sessions on `listener` one after another, forever.
    pub async fn serve(&mut self, listener: TcpListener) -> Result<(), WireError> {
        loop {
            let (stream, peer) = listener.accept().await.map_err(|source| WireError::Io { peer: "listener".into(), source })?;
            if let Err(e) = self.session(stream).await {
                warn!(%peer, error = %e, "session ended with an error");
            }
        }
    }

    /// Opens replicas and journal for the disks `hello` declares, resuming after a crash.
    async fn open(&mut self, hello: &Hello) -> Result<(), ReplicationError> {
        if let Some(target) = &self.target {
            return Self::check_declared(target, hello).await;
        }
        let mut replicas: BTreeMap<u32, Arc<dyn Transport>> = BTreeMap::new();
        for d in &hello.disks {
            let path = self.config.replicas.get(&d.id).ok_or_else(|| WireError::Refused {
                peer: "process server".into(),
                reason: format!("this master target has no replica configured for disk {}", d.id),
            })?;
            let existed = path.exists();
            let t = if existed { FileTransport::open(path, true)? } else { FileTransport::create(path, d.size)? };
            let size = t.size().await?;
            if size != d.size {
                return Err(ReplicationError::SizeMismatch { disk: path.display().to_string(), source_size: d.size, target_size: size });
            }
            self.created.insert(d.id, !existed);
            replicas.insert(d.id, Arc::new(t));
        }
        let dir = &self.config.journal_dir;
        let has_journal = dir.exists() && std::fs::read_dir(dir).map(|mut r| r.next().is_some()).unwrap_or(false);
        let mut journal = if has_journal {
            let (j, report) = Journal::open(dir, self.config.journal)?;
            if let Some(cut) = &report.tail_cut {
                self.notes.push(format!("cut a torn journal tail in {} at offset {}: {}", cut.segment.display(), cut.offset, cut.reason));
            }
            if let Some(c) = report.discarded_cycle {
                self.notes.push(format!("rolled back uncommitted cycle {c}; it must be sent again"));
            }
            j
        } else {
            Journal::create(dir, self.config.journal, RecoveryPoint { seq: 0, time_ms: now_ms(), consistency: Consistency::Crash })?
        };
        if let Some(hook) = &self.config.fault {
            journal.set_fault_hook(hook.clone());
        }
        let mut target = MasterTarget::new(journal, replicas);
        let pending = target.resume().await?;
        info!(?pending, next_cycle = target.next_cycle(), "master target open");
        self.target = Some(target);
        Ok(())
    }

    /// Serves one process-server session to its end.
    pub async fn session(&mut self, stream: TcpStream) -> Result<(), ReplicationError> {
        let peer = stream.peer_addr().map_or_else(|_| "unknown".into(), |a| a.to_string());
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let mut conn = Conn { reader: BufReader::with_capacity(1 << 20, r), writer: BufWriter::with_capacity(1 << 16, w), peer: peer.clone() };
        let span = info_span!("master_target_session", %peer);
        async {
            let result = self.run(&mut conn).await;
            if let Err(e) = &result {
                // Best effort: the peer may already be gone.
                let _ = conn.send(&Message::Error { message: e.to_string() }).await;
                let _ = conn.flush().await;
                if let Some(t) = self.target.as_mut() {
                    t.abort_cycle().await?;
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn run(&mut self, conn: &mut Conn) -> Result<(), ReplicationError> {
        let Some(Message::Hello(hello)) = conn.recv().await? else {
            return Err(WireError::BadFrame { peer: conn.peer.clone(), reason: "expected Hello".into() }.into());
        };
        if hello.protocol != PROTOCOL || hello.version != VERSION {
            let reason = format!(
                "process server speaks {} v{}, this master target speaks {PROTOCOL} v{VERSION}; upgrade one side",
                hello.protocol, hello.version
            );
            conn.send(&Message::Refuse { reason: reason.clone() }).await?;
            conn.flush().await?;
            return Err(WireError::Refused { peer: conn.peer.clone(), reason }.into());
        }
        if let Err(e) = self.open(&hello).await {
            conn.send(&Message::Refuse { reason: e.to_string() }).await?;
            conn.flush().await?;
            return Err(e);
        }
        let target = self.target.as_mut().expect("opened");
        // A previous session may have failed while rolling back its cycle.
        target.resume().await?;
        let welcome = Welcome {
            version: VERSION,
            next_cycle: target.next_cycle(),
            newest_point: target.journal().newest_point(),
            disks: hello.disks.iter().map(|d| DiskState { id: d.id, existed: !self.created.get(&d.id).copied().unwrap_or(false) }).collect(),
            ack_every: ACK_EVERY,
            notes: std::mem::take(&mut self.notes),
        };
        conn.send(&Message::Welcome(welcome)).await?;
        let mut received = 0u64;
        let mut open_cycle = None;
        loop {
            let Some(msg) = conn.recv().await? else {
                // A sender that hangs up inside a cycle failed; the session's error path
                // cuts the cycle from the journal.
                return match open_cycle {
                    None => Ok(()),
                    Some(seq) => Err(WireError::Io {
                        peer: conn.peer.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("the process server hung up in the middle of cycle {seq}")),
                    }
                    .into()),
                };
            };
            match msg {
                Message::Begin { seq, time_ms, consistency } => {
                    target.begin(seq, time_ms, consistency).await?;
                    received = 0;
                    open_cycle = Some(seq);
                }
                Message::Block(b) => {
                    target.block(b).await?;
                    received += 1;
                    if received.is_multiple_of(ACK_EVERY as u64) {
                        conn.send(&Message::Ack { blocks: received }).await?;
                    }
                }
                Message::End { seq, blocks } => {
                    if blocks != received {
                        return Err(WireError::BadFrame {
                            peer: conn.peer.clone(),
                            reason: format!("cycle {seq} ended after {blocks} blocks but {received} arrived"),
                        }
                        .into());
                    }
                    let point = target.end().await?;
                    open_cycle = None;
                    // Replicas now hold data: later syncs compare instead of copying.
                    self.created.values_mut().for_each(|c| *c = false);
                    conn.send(&Message::Applied { point }).await?;
                }
                Message::HashRequest { disk, block, key } => {
                    let hasher = BlockHasher::with_key(block, &key).map_err(|reason| WireError::BadFrame { peer: conn.peer.clone(), reason })?;
                    let replica = target.replicas().get(&disk).cloned().ok_or_else(|| WireError::BadFrame {
                        peer: conn.peer.clone(),
                        reason: format!("digests asked for unknown disk {disk}"),
                    })?;
                    let digests = block_digests(replica.as_ref(), &hasher, None).await?;
                    for (i, page) in digests.chunks(DIGESTS_PER_FRAME).enumerate() {
                        let first = (i * DIGESTS_PER_FRAME) as u64;
                        conn.send(&Message::Hashes { disk, first, digests: page.to_vec() }).await?;
                    }
                    conn.send(&Message::HashesEnd { disk, blocks: digests.len() as u64 }).await?;
                }
                Message::Bye => {
                    conn.flush().await?;
                    return Ok(());
                }
                other => {
                    return Err(WireError::BadFrame { peer: conn.peer.clone(), reason: format!("unexpected message {other:?}") }.into());
                }
            }
        }
    }
}
