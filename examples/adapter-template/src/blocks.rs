//! Pure block logic: hashing 64 KiB blocks, merging extents, comparing two hash lists into
//! changed and cleared extents, and the compact binary form the hashes take in the
//! key-value store. Nothing here touches the host, so it is unit-tested natively.

/// The change-tracking granularity. Snapshot copies skip all-zero blocks of this size.
pub const BLOCK_SIZE: u64 = 64 * 1024;

/// Blocks per stored segment (4 GiB of disk): one segment of 16-byte hashes is at most
/// 1 MiB, far below the store's 16 MiB value limit, and any disk size fits in segments.
pub const SEGMENT_BLOCKS: u64 = 65_536;

/// A block's hash: the first 16 bytes of its BLAKE3 hash, or all zeros for a block that
/// reads as zeros. 128 bits keep a missed change (a collision) out of reach while halving
/// what the store holds.
pub type BlockHash = [u8; 16];

/// The hash recorded for an all-zero (unallocated, trimmed) block.
pub const ZERO_BLOCK: BlockHash = [0; 16];

/// Number of blocks of a disk (the last one may be partial).
pub fn block_count(capacity: u64) -> u64 {
    capacity.div_ceil(BLOCK_SIZE)
}

/// Number of stored segments for a disk; an empty disk still has one (empty) segment so a
/// recorded change id always has a first key.
pub fn segment_count(capacity: u64) -> u64 {
    block_count(capacity).div_ceil(SEGMENT_BLOCKS).max(1)
}

/// True when every byte is zero.
pub fn is_zero(data: &[u8]) -> bool {
    // Eight bytes at a time: this runs over every byte of every snapshot.
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    words
        .into_iter()
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && tail.iter().all(|&b| b == 0)
}

/// Hashes one block's bytes.
pub fn hash_block(data: &[u8]) -> BlockHash {
    if is_zero(data) {
        return ZERO_BLOCK;
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(data).as_bytes()[..16]);
    if out == ZERO_BLOCK {
        // Keep the zero hash meaning "reads as zeros" even for a (astronomically unlikely)
        // data block whose truncated hash is zero.
        out[15] = 1;
    }
    out
}

/// A byte range of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub length: u64,
}

/// A sorted, disjoint list of spans built in ascending order; touching spans merge.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Spans(Vec<Span>);

impl Spans {
    /// Appends `[offset, offset + length)`, which must not start before the last span ends.
    pub fn push(&mut self, offset: u64, length: u64) {
        if length == 0 {
            return;
        }
        if let Some(last) = self.0.last_mut() {
            debug_assert!(
                offset >= last.offset + last.length,
                "spans must be pushed in order"
            );
            if last.offset + last.length == offset {
                last.length += length;
                return;
            }
        }
        self.0.push(Span { offset, length });
    }

    /// The merged spans.
    pub fn into_vec(self) -> Vec<Span> {
        self.0
    }
}

/// What differs between two states of a range of a disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Blocks holding data that differs from before.
    pub changed: Vec<Span>,
    /// Blocks that read as zeros now but did not before.
    pub cleared: Vec<Span>,
}

/// Compares the hashes of blocks `first_block ..` (`new`, and `old` for the same blocks)
/// within the byte range `window` of a disk of `capacity` bytes. `old = None` compares
/// against an all-zero disk, which is the `"*"` answer: every block holding data is
/// changed, and nothing is cleared. Blocks missing from `old` count as zero.
pub fn diff(
    first_block: u64,
    old: Option<&[BlockHash]>,
    new: &[BlockHash],
    window: Span,
    capacity: u64,
) -> Diff {
    let window_end = (window.offset + window.length).min(capacity);
    let mut changed = Spans::default();
    let mut cleared = Spans::default();
    for (i, new_hash) in new.iter().enumerate() {
        let block_start = (first_block + i as u64) * BLOCK_SIZE;
        let start = block_start.max(window.offset);
        let end = (block_start + BLOCK_SIZE).min(window_end);
        if start >= end {
            continue;
        }
        let old_hash = old.and_then(|o| o.get(i)).copied().unwrap_or(ZERO_BLOCK);
        if *new_hash == old_hash {
            continue;
        }
        if *new_hash == ZERO_BLOCK {
            cleared.push(start, end - start);
        } else {
            changed.push(start, end - start);
        }
    }
    Diff {
        changed: changed.into_vec(),
        cleared: cleared.into_vec(),
    }
}

/// What a stored segment says about the disk it was taken from; a mismatch with the disk
/// as it is now means the change id belongs to another disk (recreated under the same
/// label) and the caller must resync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The disk's UUID when the hashes were taken.
    pub disk_uuid: String,
    /// The disk's capacity when the hashes were taken.
    pub capacity: u64,
    /// The segment's index: it holds blocks `index * SEGMENT_BLOCKS ..`.
    pub index: u32,
}

const MAGIC: &[u8; 5] = b"HWCT1";
const ZERO_RUN: u8 = 0;
const HASH_RUN: u8 = 1;

/// Encodes one segment: a header, then runs of zero blocks (a count only) and runs of
/// data blocks (a count and their hashes), so a sparse disk costs a few bytes per hole.
pub fn encode_segment(header: &SegmentHeader, hashes: &[BlockHash]) -> Vec<u8> {
    let uuid = header.disk_uuid.as_bytes();
    let mut out = Vec::with_capacity(32 + uuid.len());
    out.extend_from_slice(MAGIC);
    out.push(u8::try_from(uuid.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&uuid[..uuid.len().min(255)]);
    out.extend_from_slice(&header.capacity.to_le_bytes());
    out.extend_from_slice(&header.index.to_le_bytes());
    out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
    let mut rest = hashes;
    while let Some(first) = rest.first() {
        let zero = *first == ZERO_BLOCK;
        let run = rest
            .iter()
            .take_while(|h| (**h == ZERO_BLOCK) == zero)
            .count();
        out.push(if zero { ZERO_RUN } else { HASH_RUN });
        out.extend_from_slice(&(run as u32).to_le_bytes());
        if !zero {
            for h in &rest[..run] {
                out.extend_from_slice(h);
            }
        }
        rest = &rest[run..];
    }
    out
}

/// Decodes what [`encode_segment`] wrote; the error says what is wrong with the bytes.
pub fn decode_segment(bytes: &[u8]) -> Result<(SegmentHeader, Vec<BlockHash>), String> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a block-hash record (bad magic)".into());
    }
    let uuid_len = r.take(1)?[0] as usize;
    let disk_uuid = String::from_utf8(r.take(uuid_len)?.to_vec())
        .map_err(|_| "disk UUID is not UTF-8".to_string())?;
    let capacity = r.u64()?;
    let index = r.u32()?;
    let count = r.u32()? as usize;
    if count as u64 > SEGMENT_BLOCKS {
        return Err(format!(
            "segment claims {count} blocks, more than {SEGMENT_BLOCKS}"
        ));
    }
    let mut hashes = Vec::with_capacity(count);
    while hashes.len() < count {
        let tag = r.take(1)?[0];
        let run = r.u32()? as usize;
        if run == 0 || hashes.len() + run > count {
            return Err(format!(
                "run of {run} blocks overflows the segment's {count}"
            ));
        }
        match tag {
            ZERO_RUN => hashes.resize(hashes.len() + run, ZERO_BLOCK),
            HASH_RUN => {
                for chunk in r.take(run * 16)?.chunks_exact(16) {
                    hashes.push(chunk.try_into().expect("chunks_exact yields 16 bytes"));
                }
            }
            other => return Err(format!("unknown run tag {other}")),
        }
    }
    if !r.0.is_empty() {
        return Err(format!("{} trailing bytes", r.0.len()));
    }
    Ok((
        SegmentHeader {
            disk_uuid,
            capacity,
            index,
        },
        hashes,
    ))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = BLOCK_SIZE;

    fn h(n: u8) -> BlockHash {
        hash_block(&[n; 100])
    }

    fn span(offset: u64, length: u64) -> Span {
        Span { offset, length }
    }

    #[test]
    fn zero_blocks_hash_to_the_zero_marker_and_data_does_not() {
        assert_eq!(hash_block(&vec![0u8; B as usize]), ZERO_BLOCK);
        assert_eq!(hash_block(&[]), ZERO_BLOCK);
        let mut block = vec![0u8; B as usize];
        block[B as usize - 1] = 1;
        assert_ne!(hash_block(&block), ZERO_BLOCK);
        let mut other = block.clone();
        other[0] = 1;
        assert_ne!(hash_block(&block), hash_block(&other));
        assert_eq!(hash_block(&block), hash_block(&block.clone()));
    }

    #[test]
    fn is_zero_checks_unaligned_heads_and_tails() {
        let mut data = [0u8; 67];
        assert!(is_zero(&data[1..]));
        data[66] = 9;
        assert!(!is_zero(&data[1..]));
        data[66] = 0;
        data[1] = 9;
        assert!(!is_zero(&data[1..]));
    }

    #[test]
    fn spans_merge_only_when_touching() {
        let mut s = Spans::default();
        s.push(0, 10);
        s.push(10, 5);
        s.push(20, 0);
        s.push(30, 5);
        assert_eq!(s.into_vec(), vec![span(0, 15), span(30, 5)]);
    }

    #[test]
    fn star_reports_every_data_block_merged_and_nothing_cleared() {
        let new = [h(1), h(2), ZERO_BLOCK, h(3)];
        let d = diff(0, None, &new, span(0, 4 * B), 4 * B);
        assert_eq!(d.changed, vec![span(0, 2 * B), span(3 * B, B)]);
        assert!(d.cleared.is_empty());
    }

    #[test]
    fn changed_and_cleared_are_separate() {
        let old = [h(1), h(2), h(3), ZERO_BLOCK, h(5)];
        let new = [h(1), h(9), ZERO_BLOCK, h(4), ZERO_BLOCK];
        let d = diff(0, Some(&old), &new, span(0, 5 * B), 5 * B);
        assert_eq!(d.changed, vec![span(B, B), span(3 * B, B)]);
        assert_eq!(d.cleared, vec![span(2 * B, B), span(4 * B, B)]);
    }

    #[test]
    fn a_zero_block_that_was_zero_is_not_cleared() {
        let old = [ZERO_BLOCK, h(1)];
        let new = [ZERO_BLOCK, h(1)];
        assert_eq!(
            diff(0, Some(&old), &new, span(0, 2 * B), 2 * B),
            Diff::default()
        );
    }

    #[test]
    fn diff_clips_to_window_and_capacity_and_offsets_by_first_block() {
        let new = [h(1), h(2), h(3)];
        // Blocks 10..13 of a disk ending 100 bytes into block 12; window starts mid block 10.
        let capacity = 12 * B + 100;
        let d = diff(10, None, &new, span(10 * B + 7, u64::MAX / 2), capacity);
        assert_eq!(d.changed, vec![span(10 * B + 7, 2 * B - 7 + 100)]);
    }

    #[test]
    fn missing_old_blocks_count_as_zero() {
        let old = [h(1)];
        let new = [h(1), h(2), ZERO_BLOCK];
        let d = diff(0, Some(&old), &new, span(0, 3 * B), 3 * B);
        assert_eq!(d.changed, vec![span(B, B)]);
        assert!(d.cleared.is_empty());
    }

    #[test]
    fn segments_round_trip_and_stay_small_when_sparse() {
        let header = SegmentHeader {
            disk_uuid: "u-1".into(),
            capacity: 123 * B,
            index: 3,
        };
        let mut hashes = vec![ZERO_BLOCK; 1000];
        hashes[0] = h(1);
        hashes[500] = h(2);
        hashes[501] = h(3);
        let bytes = encode_segment(&header, &hashes);
        assert!(
            bytes.len() < 120,
            "sparse segment took {} bytes",
            bytes.len()
        );
        assert_eq!(decode_segment(&bytes).unwrap(), (header.clone(), hashes));
        let empty = encode_segment(&header, &[]);
        assert_eq!(decode_segment(&empty).unwrap(), (header, vec![]));
    }

    #[test]
    fn corrupt_segments_are_refused() {
        let header = SegmentHeader {
            disk_uuid: "u".into(),
            capacity: B,
            index: 0,
        };
        let bytes = encode_segment(&header, &[h(1), h(2)]);
        assert!(decode_segment(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_segment(&extra).is_err());
        assert!(decode_segment(b"nope").is_err());
    }

    #[test]
    fn segment_counts() {
        assert_eq!(segment_count(0), 1);
        assert_eq!(segment_count(1), 1);
        assert_eq!(segment_count(SEGMENT_BLOCKS * B), 1);
        assert_eq!(segment_count(SEGMENT_BLOCKS * B + 1), 2);
    }
}
