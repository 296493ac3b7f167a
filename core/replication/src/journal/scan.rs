//! Reading segment files back: validation at open, and the index the journal keeps.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use super::record::{self, DecodeError, HEADER_LEN, Record, RecoveryPoint, TRAILER_LEN};
use crate::error::JournalError;

/// Where one block record lives, and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub segment: u64,
    pub record_offset: u64,
    pub disk: u32,
    pub disk_offset: u64,
    pub len: u32,
}

/// What the journal knows about one cycle.
#[derive(Debug, Clone)]
pub(crate) struct CycleEntry {
    pub point: RecoveryPoint,
    pub segment: u64,
    pub begin_offset: u64,
    pub blocks: Vec<BlockRef>,
    /// Applied to the replicas and flushed: the cycle's point exists. An uncommitted
    /// cycle may have reached the replicas in part and is rolled back by its undo.
    pub committed: bool,
}

/// A segment file and the point its undo data rolls back to.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub index: u64,
    pub path: PathBuf,
    pub base: RecoveryPoint,
    pub len: u64,
}

/// The whole index, rebuilt from the segment files.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub segments: Vec<SegmentInfo>,
    pub cycles: BTreeMap<u64, CycleEntry>,
    pub oldest_base: Option<RecoveryPoint>,
    pub rewinding: Option<u64>,
    pub next_lsn: u64,
    pub max_cycle: u64,
    /// Completed rewinds: (segment holding the `RewindDone`, point rewound to).
    pub rewinds: Vec<(u64, u64)>,
}

impl Index {
    /// The oldest point still materialisable: the first segment base that no later rewind
    /// has rolled back past.
    pub fn live_oldest_base(&self) -> Option<RecoveryPoint> {
        self.segments
            .iter()
            .find(|s| !self.rewinds.iter().any(|(seg, p)| *seg >= s.index && *p < s.base.seq))
            .map(|s| s.base)
    }
}

/// A torn or corrupt tail that was found at open and cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The segment file that was truncated.
    pub segment: PathBuf,
    /// The offset it was truncated at (the start of the first bad record).
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
}

pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("segment-{index:010}.hwj"))
}

/// The segment files in `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let io = |source| JournalError::Io { op: "list", path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(index) = name.strip_prefix("segment-").and_then(|r| r.strip_suffix(".hwj")).and_then(|n| n.parse().ok()) {
            out.push((index, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the undo bytes of the block record at `offset` of `file`, verifying its
/// checksum, as a slice of the buffer read (no decode copy). `None` means zeros.
pub(crate) fn read_undo_at(file: &File, path: &Path, offset: u64) -> Result<Option<bytes::Bytes>, JournalError> {
    let mut header = [0u8; HEADER_LEN];
    let corrupt = |reason: String| JournalError::Corrupt { segment: path.to_path_buf(), offset, reason };
    file.read_exact_at(&mut header, offset).map_err(|e| corrupt(format!("cannot read header: {e}")))?;
    let payload = record::header_payload_len(&header).map_err(|e| corrupt(format!("{e:?}")))?;
    // Not zero-filled first: at apply rates the memset costs as much as the read.
    let buf = crate::transport::read_exact_uninit(file, offset, HEADER_LEN + payload + TRAILER_LEN)
        .map_err(|e| corrupt(format!("cannot read record: {e}")))?;
    let range = record::undo_range(&buf).map_err(|e| corrupt(format!("{e:?}")))?;
    Ok(range.map(|r| bytes::Bytes::from(buf).slice(r)))
}

/// One segment's records, read sequentially. Stops at the end of the valid prefix.
struct SegmentReader {
    file: File,
    offset: u64,
    buf: Vec<u8>,
}

enum Next {
    Record(Record, u64, u64),
    End,
    Bad(u64, String),
}

impl SegmentReader {
    fn next(&mut self) -> Next {
        let at = self.offset;
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut self.file, &mut header) {
            Ok(0) => return Next::End,
            Ok(n) if n < HEADER_LEN => return Next::Bad(at, "truncated record header".into()),
            Ok(_) => {}
            Err(e) => return Next::Bad(at, format!("read failed: {e}")),
        }
        let payload = match record::header_payload_len(&header) {
            Ok(p) => p,
            Err(e) => return Next::Bad(at, describe(e)),
        };
        self.buf.clear();
        self.buf.extend_from_slice(&header);
        self.buf.resize(HEADER_LEN + payload + TRAILER_LEN, 0);
        match read_full(&mut self.file, &mut self.buf[HEADER_LEN..]) {
            Ok(n) if n < payload + TRAILER_LEN => return Next::Bad(at, "truncated record".into()),
            Ok(_) => {}
            Err(e) => return Next::Bad(at, format!("read failed: {e}")),
        }
        match record::decode(&self.buf) {
            Ok((r, lsn, len)) => {
                self.offset += len as u64;
                Next::Record(r, lsn, at)
            }
            Err(e) => Next::Bad(at, describe(e)),
        }
    }
}

fn describe(e: DecodeError) -> String {
    match e {
        DecodeError::Truncated => "truncated record".into(),
        DecodeError::Invalid(why) => why,
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Whether a valid record starts anywhere after `from` in the file. If one does, the bad
/// record is not a torn tail but damage inside the journal.
fn valid_record_after(file: &File, from: u64, len: u64) -> bool {
    const WINDOW: usize = 4 << 20;
    let magic = record::MAGIC.to_le_bytes();
    let mut at = from + 1;
    let mut window = vec![0u8; WINDOW];
    while at + (HEADER_LEN as u64) <= len {
        let n = ((len - at) as usize).min(WINDOW);
        if file.read_exact_at(&mut window[..n], at).is_err() {
            return false;
        }
        for i in 0..n.saturating_sub(3) {
            if window[i..i + 4] == magic {
                let candidate = at + i as u64;
                let mut header = [0u8; HEADER_LEN];
                if file.read_exact_at(&mut header, candidate).is_err() {
                    continue;
                }
                let Ok(payload) = record::header_payload_len(&header) else { continue };
                let total = (HEADER_LEN + payload + TRAILER_LEN) as u64;
                if candidate + total > len {
                    continue;
                }
                let mut buf = vec![0u8; total as usize];
                if file.read_exact_at(&mut buf, candidate).is_ok() && record::decode(&buf).is_ok() {
                    return true;
                }
            }
        }
        // Overlap by 3 bytes so a magic split across windows is still seen.
        at += (n as u64).saturating_sub(3).max(1);
    }
    false
}

/// Rebuilds the index from every segment in `dir`. A bad record at the very end of the
/// newest segment is a torn tail: it is cut (the file truncated) when `repair` is set and
/// reported. Any other bad record is corruption and fails the open with its segment and
/// offset.
pub(crate) fn scan(dir: &Path, repair: bool) -> Result<(Index, Option<TailCut>), JournalError> {
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(JournalError::Protocol(format!("{} holds no journal segments", dir.display())));
    }
    let mut index = Index::default();
    let mut cut = None;
    let last = segments.len() - 1;
    for (i, (seg_index, path)) in segments.iter().enumerate() {
        let io = |op, source| JournalError::Io { op, path: path.clone(), source };
        let file = File::open(path).map_err(|e| io("open", e))?;
        let file_len = file.metadata().map_err(|e| io("stat", e))?.len();
        // Checked before anything else: the torn-tail repair below must never mistake an
        // older format for damage and cut it.
        let mut magic = [0u8; 4];
        if file.read_exact_at(&mut magic, 0).is_ok() && u32::from_le_bytes(magic) == record::MAGIC_V1 {
            return Err(JournalError::OldFormat { segment: path.clone() });
        }
        let mut reader = SegmentReader { file, offset: 0, buf: Vec::new() };
        let mut seg = SegmentInfo { index: *seg_index, path: path.clone(), base: base_before_header(), len: 0 };
        let mut first = true;
        loop {
            match reader.next() {
                Next::End => break,
                Next::Bad(offset, reason) => {
                    let tail = i == last && !valid_record_after(&reader.file, offset, file_len);
                    if !tail {
                        return Err(JournalError::Corrupt { segment: path.clone(), offset, reason });
                    }
                    if repair {
                        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| io("open for truncate", e))?;
                        f.set_len(offset).map_err(|e| io("truncate", e))?;
                        f.sync_all().map_err(|e| io("fsync", e))?;
                    }
                    tracing::warn!(segment = %path.display(), offset, %reason, "journal tail is torn; cut");
                    cut = Some(TailCut { segment: path.clone(), offset, reason });
                    break;
                }
                Next::Record(record, lsn, offset) => {
                    let corrupt = |reason: String| JournalError::Corrupt { segment: path.clone(), offset, reason };
                    if lsn < index.next_lsn {
                        return Err(corrupt(format!("record sequence {lsn} goes backwards")));
                    }
                    index.next_lsn = lsn + 1;
                    if first {
                        let Record::SegmentStart { index: idx, base } = record else {
                            return Err(corrupt("segment does not start with a segment header".into()));
                        };
                        if idx != *seg_index {
                            return Err(corrupt(format!("header says segment {idx}, file name says {seg_index}")));
                        }
                        seg.base = base;
                        // After pruning, the base may be the only trace of the cycles before
                        // it; sequence numbers must continue after it, never reuse it.
                        index.max_cycle = index.max_cycle.max(base.seq);
                        if index.oldest_base.is_none() {
                            index.oldest_base = Some(base);
                        }
                        first = false;
                    } else {
                        apply_record(&mut index, record, *seg_index, offset).map_err(corrupt)?;
                    }
                    seg.len = reader.offset;
                }
            }
        }
        if first {
            // A segment whose header itself was torn: it was being created at the crash.
            if i == last && i > 0 {
                std::fs::remove_file(path).map_err(|e| io("remove torn segment", e))?;
                continue;
            }
            return Err(JournalError::Corrupt { segment: path.clone(), offset: 0, reason: "segment header missing".into() });
        }
        index.segments.push(seg);
    }
    index.oldest_base = index.live_oldest_base();
    Ok((index, cut))
}

/// The base a segment has until its `SegmentStart` header is read; the header record
/// replaces it before any cycle of the segment is indexed.
fn base_before_header() -> RecoveryPoint {
    RecoveryPoint { seq: 0, time_ms: 0, consistency: record::Consistency::Crash }
}

fn apply_record(index: &mut Index, record: Record, segment: u64, offset: u64) -> Result<(), String> {
    match record {
        Record::SegmentStart { .. } => return Err("segment header in the middle of a segment".into()),
        Record::Begin { point } => {
            if let Some((seq, c)) = index.cycles.last_key_value()
                && !c.committed
            {
                return Err(format!("cycle {} begins while cycle {seq} is not committed", point.seq));
            }
            if point.seq <= index.max_cycle {
                return Err(format!("cycle {} does not follow cycle {}", point.seq, index.max_cycle));
            }
            index.max_cycle = point.seq;
            index.cycles.insert(
                point.seq,
                CycleEntry { point, segment, begin_offset: offset, blocks: Vec::new(), committed: false },
            );
        }
        Record::Block { cycle, disk, offset: disk_offset, len, .. } => {
            let entry = index.cycles.get_mut(&cycle).filter(|c| !c.committed).ok_or(format!("block of cycle {cycle} outside an open cycle"))?;
            entry.blocks.push(BlockRef { segment, record_offset: offset, disk, disk_offset, len });
        }
        Record::Commit { cycle, blocks } => {
            let entry = index.cycles.get_mut(&cycle).ok_or(format!("commit of unknown cycle {cycle}"))?;
            if entry.blocks.len() as u64 != blocks {
                return Err(format!("cycle {cycle} commits {blocks} blocks but holds {}", entry.blocks.len()));
            }
            entry.committed = true;
        }
        Record::Rewind { point } => index.rewinding = Some(point),
        Record::RewindDone { point } => {
            index.rewinds.push((segment, point));
            index.cycles.retain(|seq, _| *seq <= point);
            if index.oldest_base.is_some_and(|b| b.seq > point) {
                index.oldest_base = None;
            }
            index.rewinding = None;
        }
    }
    Ok(())
}
