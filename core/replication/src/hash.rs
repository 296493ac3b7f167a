//! Block digests for comparing two disks, and the hash tree used to verify them.
//!
//! A block's digest is keyed XXH3-128: XXH3 with a 192-byte secret drawn at random for
//! each comparison and shared by both sides of it. A resync is bound by how fast both
//! disks can be hashed; BLAKE3 runs at about 4.2 GiB/s per core on page-cache data here,
//! XXH3 at 7-9 GiB/s, close to the speed of reading memory, which is what lets a warm
//! resync keep pace with `cat`. What is given up is collision resistance against someone
//! who knows the key: the key lives only for one comparison and is never stored, so a
//! guest that wants two different blocks to compare equal has nothing to aim at, and the
//! chance of an accidental match is about 2^-128 per pair of blocks. The tree above the
//! leaves uses BLAKE3, truncated to the same 128 bits.

use std::sync::Arc;

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
/// Length of a comparison key: the size of XXH3's default secret (it accepts 136 or more).
pub const KEY_LEN: usize = 192;

/// A 128-bit block or tree digest.
pub type Digest = [u8; 16];

/// How the blocks of one comparison are hashed: the block size and the comparison's key.
/// Both sides of a comparison must use the same hasher; digests from different keys
/// never compare equal except by chance.
#[derive(Clone)]
pub struct BlockHasher {
    block: u64,
    key: Arc<[u8; KEY_LEN]>,
    zero: Digest,
}

impl std::fmt::Debug for BlockHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs: knowing it is what would let a collision be planned.
        f.debug_struct("BlockHasher").field("block", &self.block).finish_non_exhaustive()
    }
}

impl BlockHasher {
    /// A hasher for `block`-sized blocks with a fresh random key.
    pub fn new(block: u64) -> Self {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).expect("the operating system's random source");
        Self::from_key(block, key)
    }

    /// A hasher with the given key, as received from the other side of a comparison.
    /// Fails unless the key is exactly [`KEY_LEN`] bytes and the block size is non-zero.
    pub fn with_key(block: u64, key: &[u8]) -> Result<Self, String> {
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| format!("a comparison key is {KEY_LEN} bytes, not {}", key.len()))?;
        if block == 0 {
            return Err("the comparison block size is 0".into());
        }
        Ok(Self::from_key(block, key))
    }

    fn from_key(block: u64, key: [u8; KEY_LEN]) -> Self {
        let mut h = Self { block: block.max(1), key: Arc::new(key), zero: [0; 16] };
        h.zero = h.digest(&vec![0u8; h.block as usize]);
        h
    }

    /// The block size.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// The key, to send to the other side of the comparison.
    pub fn key(&self) -> &[u8] {
        &self.key[..]
    }

    /// The digest of `data`.
    pub fn digest(&self, data: &[u8]) -> Digest {
        twox_hash::XxHash3_128::oneshot_with_secret(&self.key[..], data).expect("a key of KEY_LEN bytes is a valid secret").to_le_bytes()
    }

    /// The digest of `len` zero bytes, which is what every hole reads as.
    pub fn zero_digest(&self, len: u64) -> Digest {
        if len == self.block { self.zero } else { self.digest(&vec![0u8; len as usize]) }
    }

    /// The digests of the blocks of `data`, which starts at a block boundary.
    pub fn digest_blocks<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = Digest> + 'a {
        data.chunks(self.block as usize).map(|c| self.digest(c))
    }

    /// The zero digests of every block of a `len`-byte range starting at a block boundary.
    pub fn zero_digests(&self, len: u64) -> Vec<Digest> {
        let block = self.block;
        (0..len.div_ceil(block)).map(|i| if (i + 1) * block <= len { self.zero } else { self.zero_digest(len - i * block) }).collect()
    }
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

/// The digest of every block of `disk` (the last may be shorter). Only the allocated
/// extents are read; holes get the zero digest without any I/O.
pub async fn block_digests(
    disk: &dyn Transport,
    hasher: &BlockHasher,
    progress: Option<&ProgressReporter>,
) -> Result<Vec<Digest>, TransportError> {
    let size = disk.size().await?;
    let block = hasher.block();
    let mut digests = hasher.zero_digests(size);
    let allocated = align_to_blocks(&disk.allocated_extents().await?, block, size);
    let read = HASH_READ.max(block) / block * block;
    let reads: Vec<Extent> = allocated.iter().flat_map(|e| e.split_aligned(read).collect::<Vec<_>>()).collect();
    let mut stream = futures::stream::iter(reads)
        .map(|r| async move { Ok::<_, TransportError>((r, disk.block_digests_at(r.offset, r.len, hasher).await?)) })
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
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
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

    /// The root digest (of an empty disk: all zeros).
    pub fn root(&self) -> Digest {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or_default()
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
        let hasher = BlockHasher::new(1);
        let leaves: Vec<Digest> = (0..37u8).map(|i| hasher.digest(&[i])).collect();
        let a = HashTree::new(leaves.clone());
        let mut changed = leaves;
        changed[0] = [9; 16];
        changed[36] = [7; 16];
        changed[17] = [1; 16];
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
    fn zero_digests_match_hashing_zeros() {
        let h = BlockHasher::new(65536);
        assert_eq!(h.zero_digest(65536), h.digest(&vec![0u8; 65536]));
        assert_eq!(h.zero_digest(100), h.digest(&[0u8; 100]));
        assert_eq!(h.zero_digests(65536 * 2 + 100), vec![h.digest(&vec![0u8; 65536]), h.digest(&vec![0u8; 65536]), h.digest(&[0u8; 100])]);
    }

    #[test]
    fn digests_depend_on_the_key_and_a_received_key_reproduces_them() {
        let (a, b) = (BlockHasher::new(4096), BlockHasher::new(4096));
        let data = vec![7u8; 8192];
        assert_ne!(a.digest(&data), b.digest(&data), "two random keys give different digests");
        let same = BlockHasher::with_key(4096, a.key()).unwrap();
        assert_eq!(a.digest_blocks(&data).collect::<Vec<_>>(), same.digest_blocks(&data).collect::<Vec<_>>());
        assert!(BlockHasher::with_key(4096, &[1, 2, 3]).unwrap_err().contains("192 bytes, not 3"));
        assert!(BlockHasher::with_key(0, a.key()).is_err());
        assert_eq!(format!("{a:?}"), "BlockHasher { block: 4096, .. }", "the key is not printed");
    }
}
