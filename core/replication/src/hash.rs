//! Block hashing with BLAKE3 and the hash tree used to verify two disks are identical.

use futures::{StreamExt, TryStreamExt};

use crate::{
    error::TransportError,
    extent::{Extent, align_to_blocks},
    progress::ProgressReporter,
    transport::Transport,
};

/// The comparison granularity: a 64 KiB block, as in the figures.
pub const DEFAULT_BLOCK: u64 = 64 << 10;
/// Bytes per read while hashing: many blocks per request keeps the disk streaming.
pub const HASH_READ: u64 = 8 << 20;
/// Reads in flight per disk while hashing.
pub const HASH_IN_FLIGHT: usize = 4;

/// A BLAKE3 digest.
pub type Digest = [u8; 32];

/// The digest of a block of `len` zeros, which is what every hole reads as.
pub fn zero_digest(len: u64) -> Digest {
    let mut h = blake3::Hasher::new();
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(4096) as usize;
        h.update(&zeros[..n]);
        left -= n as u64;
    }
    *h.finalize().as_bytes()
}

/// Whether every byte of `data` is zero.
///
/// `iter().all(|b| *b == 0)` stops at the first non-zero byte, which keeps the compiler
/// from vectorising it: on zero blocks it runs at about 1 byte per cycle and, done on
/// every block the data path moves, costs as much as hashing. ORing fixed-size pieces
/// vectorises and only checks for an early exit once per piece.
pub fn is_zero(data: &[u8]) -> bool {
    const PIECE: usize = 512;
    let mut pieces = data.chunks_exact(PIECE);
    for piece in &mut pieces {
        if piece.iter().fold(0u8, |acc, b| acc | b) != 0 {
            return false;
        }
    }
    pieces.remainder().iter().fold(0u8, |acc, b| acc | b) == 0
}

/// Hashes `data` (which starts at a block boundary) block by block.
pub fn digest_blocks(data: &[u8], block: u64) -> impl Iterator<Item = Digest> + '_ {
    data.chunks(block as usize).map(|c| *blake3::hash(c).as_bytes())
}

/// The digest of every `block`-sized block of `disk` (the last may be shorter). Only the
/// allocated extents are read; holes get the zero digest without any I/O.
pub async fn block_digests(
    disk: &dyn Transport,
    block: u64,
    progress: Option<&ProgressReporter>,
) -> Result<Vec<Digest>, TransportError> {
    let size = disk.size().await?;
    let count = size.div_ceil(block) as usize;
    let full_zero = zero_digest(block);
    let mut digests: Vec<Digest> = (0..count)
        .map(|i| if (i as u64 + 1) * block <= size { full_zero } else { zero_digest(size - i as u64 * block) })
        .collect();
    let allocated = align_to_blocks(&disk.allocated_extents().await?, block, size);
    let read = HASH_READ.max(block) / block * block;
    let reads: Vec<Extent> = allocated.iter().flat_map(|e| e.split_aligned(read).collect::<Vec<_>>()).collect();
    let mut stream = futures::stream::iter(reads)
        .map(|r| async move { Ok::<_, TransportError>((r, disk.block_digests_at(r.offset, r.len, block).await?)) })
        .buffer_unordered(HASH_IN_FLIGHT);
    while let Some((r, list)) = stream.try_next().await? {
        let first = (r.offset / block) as usize;
        digests[first..first + list.len()].copy_from_slice(&list);
        if let Some(p) = progress {
            p.advance(r.len, list.len() as u64, 0);
        }
    }
    Ok(digests)
}

/// A binary hash tree over block digests. Equal roots mean equal disks; unequal roots
/// are narrowed to the differing blocks by descending only into differing subtrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    levels: Vec<Vec<Digest>>,
}

fn node(left: &Digest, right: Option<&Digest>) -> Digest {
    let mut h = blake3::Hasher::new();
    // A domain byte keeps an inner node from ever equalling a leaf.
    h.update(&[1]);
    h.update(left);
    if let Some(r) = right {
        h.update(r);
    }
    *h.finalize().as_bytes()
}

impl HashTree {
    /// Builds the tree over `leaves`.
    pub fn new(leaves: Vec<Digest>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().expect("level").len() > 1 {
            let up = levels.last().expect("level").chunks(2).map(|c| node(&c[0], c.get(1))).collect();
            levels.push(up);
        }
        Self { levels }
    }

    /// The root digest (of an empty disk: the zero-length digest).
    pub fn root(&self) -> Digest {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or_else(|| zero_digest(0))
    }

    /// The leaves.
    pub fn leaves(&self) -> &[Digest] {
        &self.levels[0]
    }

    /// Indices of the blocks whose digests differ from `other`'s. Trees over different
    /// block counts differ everywhere.
    pub fn differing_blocks(&self, other: &HashTree) -> Vec<u64> {
        if self.levels.len() != other.levels.len() || self.leaves().len() != other.leaves().len() {
            return (0..self.leaves().len().max(other.leaves().len()) as u64).collect();
        }
        let mut frontier = vec![0usize];
        for depth in (0..self.levels.len()).rev() {
            let (a, b) = (&self.levels[depth], &other.levels[depth]);
            let differing: Vec<usize> = frontier.into_iter().filter(|i| i < &a.len() && a[*i] != b[*i]).collect();
            if depth == 0 {
                return differing.into_iter().map(|i| i as u64).collect();
            }
            frontier = differing.into_iter().flat_map(|i| [2 * i, 2 * i + 1]).collect();
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_finds_exactly_the_differing_leaves() {
        let leaves: Vec<Digest> = (0..37u8).map(|i| *blake3::hash(&[i]).as_bytes()).collect();
        let a = HashTree::new(leaves.clone());
        let mut changed = leaves;
        changed[0] = [9; 32];
        changed[36] = [7; 32];
        changed[17] = [1; 32];
        let b = HashTree::new(changed);
        assert_ne!(a.root(), b.root());
        assert_eq!(a.differing_blocks(&b), vec![0, 17, 36]);
        assert!(a.differing_blocks(&a.clone()).is_empty());
    }

    #[test]
    fn is_zero_sees_any_non_zero_byte() {
        let mut data = vec![0u8; 4096 + 100];
        assert!(is_zero(&data) && is_zero(&[]));
        for at in [0, 511, 512, 4095, 4096, 4195] {
            data[at] = 1;
            assert!(!is_zero(&data), "byte {at}");
            data[at] = 0;
        }
    }

    #[test]
    fn zero_digest_matches_hashing_zeros() {
        assert_eq!(zero_digest(65536), *blake3::hash(&vec![0u8; 65536]).as_bytes());
        assert_eq!(zero_digest(100), *blake3::hash(&[0u8; 100]).as_bytes());
    }
}
