//! Byte ranges of a disk, and the block arithmetic the data path does on them.

use serde::{Deserialize, Serialize};

/// A byte range `[offset, offset + len)` of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// First byte of the range.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// A range starting at `offset` of `len` bytes.
    pub const fn new(offset: u64, len: u64) -> Self {
        Self { offset, len }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.offset + self.len
    }

    /// Splits the range into pieces of at most `max` bytes that never cross a multiple of
    /// `max`, so that pieces of different extents line up with the same blocks.
    pub fn split_aligned(&self, max: u64) -> impl Iterator<Item = Extent> + '_ {
        let mut at = self.offset;
        let end = self.end();
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let boundary = (at / max + 1) * max;
            let stop = boundary.min(end);
            let piece = Extent::new(at, stop - at);
            at = stop;
            Some(piece)
        })
    }
}

/// Sorts extents and merges the ones that overlap or touch, so every byte appears once.
pub fn normalize(mut extents: Vec<Extent>) -> Vec<Extent> {
    extents.retain(|e| e.len > 0);
    extents.sort();
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(last) if e.offset <= last.end() => {
                let end = last.end().max(e.end());
                last.len = end - last.offset;
            }
            _ => out.push(e),
        }
    }
    out
}

/// Widens every extent to whole `block`-sized blocks, clipped to `size`, and merges them.
pub fn align_to_blocks(extents: &[Extent], block: u64, size: u64) -> Vec<Extent> {
    let widened = extents
        .iter()
        .filter(|e| e.len > 0 && e.offset < size)
        .map(|e| {
            let start = e.offset / block * block;
            let end = e.end().div_ceil(block).saturating_mul(block).min(size);
            Extent::new(start, end - start)
        })
        .collect();
    normalize(widened)
}

/// Whether any of the sorted, disjoint `extents` overlaps `range`.
pub fn overlaps(extents: &[Extent], range: &Extent) -> bool {
    let i = extents.partition_point(|e| e.end() <= range.offset);
    extents.get(i).is_some_and(|e| e.offset < range.end())
}

/// Total bytes covered by `extents` (assumed not to overlap).
pub fn total_len(extents: &[Extent]) -> u64 {
    extents.iter().map(|e| e.len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_merges_overlapping_and_touching() {
        let got = normalize(vec![
            Extent::new(10, 5),
            Extent::new(0, 4),
            Extent::new(4, 2),
            Extent::new(12, 10),
            Extent::new(40, 0),
        ]);
        assert_eq!(got, vec![Extent::new(0, 6), Extent::new(10, 12)]);
    }

    #[test]
    fn split_aligned_never_crosses_block_boundaries() {
        let pieces: Vec<_> = Extent::new(100, 300).split_aligned(128).collect();
        assert_eq!(
            pieces,
            vec![Extent::new(100, 28), Extent::new(128, 128), Extent::new(256, 128), Extent::new(384, 16)]
        );
    }

    #[test]
    fn overlaps_sees_any_shared_byte_and_not_touching_ends() {
        let extents = [Extent::new(10, 10), Extent::new(40, 5)];
        assert!(overlaps(&extents, &Extent::new(0, 11)));
        assert!(overlaps(&extents, &Extent::new(19, 30)));
        assert!(overlaps(&extents, &Extent::new(44, 100)));
        assert!(!overlaps(&extents, &Extent::new(20, 20)), "touches both, shares nothing");
        assert!(!overlaps(&extents, &Extent::new(0, 10)));
        assert!(!overlaps(&extents, &Extent::new(45, 10)));
        assert!(!overlaps(&[], &Extent::new(0, 10)));
    }

    #[test]
    fn align_to_blocks_clips_to_size() {
        let got = align_to_blocks(&[Extent::new(5, 1), Extent::new(1000, 30)], 512, 1020);
        assert_eq!(got, vec![Extent::new(0, 1020)]);
        let got = align_to_blocks(&[Extent::new(5, 1), Extent::new(1000, 10)], 256, 2000);
        assert_eq!(got, vec![Extent::new(0, 256), Extent::new(768, 256)]);
    }
}
