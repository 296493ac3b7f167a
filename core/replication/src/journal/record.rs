//! The on-disk record format of journal segments.
//!
//! ```text
//! magic u32 | kind u8 | 0u8 x3 | payload_len u32 | lsn u64 | payload | crc32c u32
//! ```
//! All integers are little endian. The CRC32C covers everything before it, so a torn
//! write, a flipped bit or a record from another file all fail the check.

use serde::{Deserialize, Serialize};

/// Marks the start of every record ("HWJ2"): format 2, whose block records hold undo
/// bytes only.
pub const MAGIC: u32 = 0x324A_5748;
/// The magic of format 1 ("HWJ1"), whose block records also held redo bytes and whose
/// cycles were applied after their commit. Such a journal is refused, never repaired.
pub const MAGIC_V1: u32 = 0x314A_5748;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 20;
/// Bytes after the payload.
pub const TRAILER_LEN: usize = 4;
/// No record is larger than this; a header claiming more is corrupt.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// How consistent a recovery point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// As after a power cut: the file systems recover, applications may replay logs.
    Crash,
    /// Taken from a quiesced snapshot: applications flushed their state.
    App,
}

/// A point in time the journal can materialise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// The cycle that produced the point; points are ordered by it.
    pub seq: u64,
    /// When the snapshot behind the point was taken, in ms since the Unix epoch.
    pub time_ms: u64,
    /// Crash- or app-consistent.
    pub consistency: Consistency,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record of every segment; `base` is the point the segment's undo data rolls
    /// back to.
    SegmentStart { index: u64, base: RecoveryPoint },
    /// A cycle starts; its point will carry this time and consistency.
    Begin { point: RecoveryPoint },
    /// One write of the cycle and the bytes it overwrites on the replica (undo). `None`
    /// stands for all zeros. The record is synced before the replica is written.
    Block { cycle: u64, disk: u32, offset: u64, undo: Option<Vec<u8>>, len: u32 },
    /// Every block of the cycle is applied to the replicas and flushed: its point exists.
    Commit { cycle: u64, blocks: u64 },
    /// The replicas are being rolled back to `point`; later cycles are dropped.
    Rewind { point: u64 },
    /// The rewind to `point` is complete.
    RewindDone { point: u64 },
}

const K_SEGMENT: u8 = 1;
const K_BEGIN: u8 = 2;
const K_BLOCK: u8 = 3;
const K_COMMIT: u8 = 4;
// Kind 5 was format 1's "applied" mark; format 2 commits only applied cycles.
const K_REWIND: u8 = 6;
const K_REWIND_DONE: u8 = 7;

fn put_point(out: &mut Vec<u8>, p: &RecoveryPoint) {
    out.extend_from_slice(&p.seq.to_le_bytes());
    out.extend_from_slice(&p.time_ms.to_le_bytes());
    out.push(match p.consistency {
        Consistency::Crash => 0,
        Consistency::App => 1,
    });
}

/// Encodes `record` with sequence number `lsn`, ready to append.
pub fn encode(record: &Record, lsn: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    let kind = match record {
        Record::SegmentStart { index, base } => {
            payload.extend_from_slice(&index.to_le_bytes());
            put_point(&mut payload, base);
            K_SEGMENT
        }
        Record::Begin { point } => {
            put_point(&mut payload, point);
            K_BEGIN
        }
        Record::Block { cycle, disk, offset, undo, len } => {
            payload.reserve(BLOCK_PREFIX + undo.as_ref().map_or(0, Vec::len));
            payload.extend_from_slice(&cycle.to_le_bytes());
            payload.extend_from_slice(&disk.to_le_bytes());
            payload.extend_from_slice(&offset.to_le_bytes());
            payload.extend_from_slice(&len.to_le_bytes());
            payload.push(u8::from(undo.is_none()));
            if let Some(u) = undo {
                payload.extend_from_slice(u);
            }
            K_BLOCK
        }
        Record::Commit { cycle, blocks } => {
            payload.extend_from_slice(&cycle.to_le_bytes());
            payload.extend_from_slice(&blocks.to_le_bytes());
            K_COMMIT
        }
        Record::Rewind { point } => {
            payload.extend_from_slice(&point.to_le_bytes());
            K_REWIND
        }
        Record::RewindDone { point } => {
            payload.extend_from_slice(&point.to_le_bytes());
            K_REWIND_DONE
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The bytes of a block record around its data, for appending it without copying the
/// data: write `head`, the undo bytes (if any), then `crc`. The result is byte for byte
/// what [`encode`] makes of the same `Record::Block`.
pub(crate) struct BlockParts {
    pub head: [u8; HEADER_LEN + BLOCK_PREFIX],
    pub crc: [u8; TRAILER_LEN],
}

/// Fixed payload bytes of a block record before its data.
const BLOCK_PREFIX: usize = 25;

pub(crate) fn encode_block_parts(
    lsn: u64,
    cycle: u64,
    disk: u32,
    offset: u64,
    len: u32,
    undo: Option<&[u8]>,
) -> BlockParts {
    let payload_len = BLOCK_PREFIX + undo.map_or(0, <[u8]>::len);
    let mut head = [0u8; HEADER_LEN + BLOCK_PREFIX];
    head[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    head[4] = K_BLOCK;
    head[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    head[12..20].copy_from_slice(&lsn.to_le_bytes());
    head[20..28].copy_from_slice(&cycle.to_le_bytes());
    head[28..32].copy_from_slice(&disk.to_le_bytes());
    head[32..40].copy_from_slice(&offset.to_le_bytes());
    head[40..44].copy_from_slice(&len.to_le_bytes());
    head[44] = u8::from(undo.is_none());
    let mut crc = crc32c::crc32c(&head);
    if let Some(data) = undo {
        crc = crc32c::crc32c_append(crc, data);
    }
    BlockParts { head, crc: crc.to_le_bytes() }
}

/// Where the undo bytes of the block record at the start of `buf` are, after checking the
/// record's checksum and kind; `None` when they are zeros. Lets a reader hand out the
/// bytes as a slice of its buffer instead of decoding a copy.
pub(crate) fn undo_range(buf: &[u8]) -> Result<Option<std::ops::Range<usize>>, DecodeError> {
    let payload_len = header_payload_len(buf)?;
    let total = HEADER_LEN + payload_len + TRAILER_LEN;
    if buf.len() < total {
        return Err(DecodeError::Truncated);
    }
    let stored = u32::from_le_bytes(buf[HEADER_LEN + payload_len..total].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c(&buf[..HEADER_LEN + payload_len]);
    if stored != actual {
        return Err(DecodeError::Invalid(format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")));
    }
    if buf[4] != K_BLOCK || payload_len < BLOCK_PREFIX {
        return Err(DecodeError::Invalid(format!("expected a block record, found kind {}", buf[4])));
    }
    let len = u32::from_le_bytes(buf[40..44].try_into().expect("4 bytes")) as usize;
    let has_undo = buf[44] & 1 == 0;
    let data_start = HEADER_LEN + BLOCK_PREFIX;
    if data_start + len * usize::from(has_undo) != HEADER_LEN + payload_len {
        return Err(DecodeError::Invalid("block record length does not match its data".into()));
    }
    Ok(has_undo.then_some(data_start..data_start + len))
}

/// Why bytes do not hold a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record claims: a torn write, or the end of the file.
    Truncated,
    /// The bytes are there but wrong.
    Invalid(String),
}

/// Reads the payload length from a header, validating magic and bounds.
pub fn header_payload_len(header: &[u8]) -> Result<usize, DecodeError> {
    if header.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let magic = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(DecodeError::Invalid(format!("bad magic {magic:#010x}")));
    }
    let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Invalid(format!("payload length {len} exceeds the {MAX_PAYLOAD}-byte limit")));
    }
    Ok(len as usize)
}

/// Decodes the record at the start of `buf`; returns it, its lsn and its total length.
pub fn decode(buf: &[u8]) -> Result<(Record, u64, usize), DecodeError> {
    let payload_len = header_payload_len(buf)?;
    let total = HEADER_LEN + payload_len + TRAILER_LEN;
    if buf.len() < total {
        return Err(DecodeError::Truncated);
    }
    let body = &buf[..HEADER_LEN + payload_len];
    let stored = u32::from_le_bytes(buf[HEADER_LEN + payload_len..total].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c(body);
    if stored != actual {
        return Err(DecodeError::Invalid(format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")));
    }
    let kind = buf[4];
    let lsn = u64::from_le_bytes(buf[12..20].try_into().expect("8 bytes"));
    let record = parse_payload(kind, &buf[HEADER_LEN..HEADER_LEN + payload_len]).map_err(DecodeError::Invalid)?;
    Ok((record, lsn, total))
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("payload too short".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn point(&mut self) -> Result<RecoveryPoint, String> {
        let seq = self.u64()?;
        let time_ms = self.u64()?;
        let consistency = match self.u8()? {
            0 => Consistency::Crash,
            1 => Consistency::App,
            other => return Err(format!("unknown consistency {other}")),
        };
        Ok(RecoveryPoint { seq, time_ms, consistency })
    }
    fn finish(&self) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err(format!("{} trailing payload bytes", self.0.len())) }
    }
}

fn parse_payload(kind: u8, payload: &[u8]) -> Result<Record, String> {
    let mut c = Cursor(payload);
    let record = match kind {
        K_SEGMENT => Record::SegmentStart { index: c.u64()?, base: c.point()? },
        K_BEGIN => Record::Begin { point: c.point()? },
        K_BLOCK => {
            let cycle = c.u64()?;
            let disk = c.u32()?;
            let offset = c.u64()?;
            let len = c.u32()?;
            let flags = c.u8()?;
            if flags > 1 {
                return Err(format!("unknown block flags {flags:#04x}"));
            }
            let undo = if flags & 1 == 0 { Some(c.take(len as usize)?.to_vec()) } else { None };
            Record::Block { cycle, disk, offset, undo, len }
        }
        K_COMMIT => Record::Commit { cycle: c.u64()?, blocks: c.u64()? },
        K_REWIND => Record::Rewind { point: c.u64()? },
        K_REWIND_DONE => Record::RewindDone { point: c.u64()? },
        other => return Err(format!("unknown record kind {other}")),
    };
    c.finish()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let p = RecoveryPoint { seq: 3, time_ms: 99, consistency: Consistency::App };
        vec![
            Record::SegmentStart { index: 2, base: p },
            Record::Begin { point: p },
            Record::Block { cycle: 3, disk: 1, offset: 4096, undo: None, len: 10 },
            Record::Block { cycle: 3, disk: 1, offset: 0, undo: Some(vec![1, 2]), len: 2 },
            Record::Commit { cycle: 3, blocks: 2 },
            Record::Rewind { point: 1 },
            Record::RewindDone { point: 1 },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for (i, r) in samples().into_iter().enumerate() {
            let bytes = encode(&r, i as u64);
            let (back, lsn, len) = decode(&bytes).unwrap();
            assert_eq!((back, lsn, len), (r, i as u64, bytes.len()));
        }
    }

    #[test]
    fn block_parts_match_the_encoded_record() {
        for (undo, len) in [(Some(vec![1u8; 300]), 300), (None, 7)] {
            let record = Record::Block { cycle: 9, disk: 2, offset: 1 << 40, undo: undo.clone(), len };
            let parts = encode_block_parts(77, 9, 2, 1 << 40, len, undo.as_deref());
            let mut joined = parts.head.to_vec();
            joined.extend(undo.iter().flatten());
            joined.extend_from_slice(&parts.crc);
            assert_eq!(joined, encode(&record, 77));
            let got = undo_range(&joined).unwrap().map(|r| joined[r].to_vec());
            assert_eq!(got, undo);
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let bytes = encode(&samples()[2], 7);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]), Err(DecodeError::Truncated));
    }

}
