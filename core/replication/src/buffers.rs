//! Read buffers that go back to a bounded pool when their last [`Bytes`] is dropped.
//!
//! A cycle reads every changed block twice, from the source and as undo from the
//! replica, and holds those buffers until its batch has landed. Fresh buffers of that
//! size come from the allocator as fresh pages, so each cycle paid for a page fault and
//! a zeroed page per 4 KiB read (12–15% of a warm cycle's CPU in perf). Buffers that
//! come back here keep their pages, and the next cycle reads into memory already mapped.
//!
//! What the pool keeps while nothing uses it is capped at [`POOL_BYTES`]; beyond that,
//! returned buffers are freed. Only sizes from [`MIN_POOLED`] to [`MAX_POOLED`] are
//! pooled, in power-of-two classes, so a buffer is at most twice the bytes it holds.

use std::sync::Mutex;

use bytes::Bytes;

/// The most bytes the data path's pool keeps while nothing uses them. The pool is a cache
/// inside the data path's 256 MiB memory budget, and what it keeps stays resident beside
/// whatever runs next: in the bench, cycles followed by a 64 GiB sparse resync in one
/// process peaked at 270 MiB with 32 MiB kept, and at 224 MiB with this.
pub const POOL_BYTES: usize = 16 << 20;
/// Smaller reads are not pooled: their pages are not worth the bookkeeping.
pub const MIN_POOLED: usize = 4 << 10;
/// Larger reads are not pooled: a cycle reads at most 1 MiB at a time
/// ([`crate::cycle::MAX_BLOCK`]), and rounding larger reads up to a class would cost up
/// to twice their bytes.
pub const MAX_POOLED: usize = 1 << 20;

const CLASSES: usize = (MAX_POOLED.trailing_zeros() - MIN_POOLED.trailing_zeros() + 1) as usize;

/// Free buffers by class, and the bytes they hold.
struct Free {
    by_class: [Vec<Vec<u8>>; CLASSES],
    kept: usize,
}

/// A pool of read buffers keeping at most `cap` bytes unused.
pub struct Pool {
    free: Mutex<Free>,
    cap: usize,
}

/// The data path's pool.
static POOL: Pool = Pool::new(POOL_BYTES);

/// The class of a buffer that holds `len` bytes, or `None` if such reads are not pooled.
fn class_of(len: usize) -> Option<usize> {
    (MIN_POOLED..=MAX_POOLED)
        .contains(&len)
        .then(|| (len.next_power_of_two().trailing_zeros() - MIN_POOLED.trailing_zeros()) as usize)
}

impl Pool {
    /// An empty pool that keeps at most `cap` bytes of unused buffers.
    pub const fn new(cap: usize) -> Self {
        Self { free: Mutex::new(Free { by_class: [const { Vec::new() }; CLASSES], kept: 0 }), cap }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        // A panic while holding the lock leaves the lists consistent: every update is a
        // push or pop and a counter change made together.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer with room for at least `len` bytes: a pooled one when the pool
    /// has one of its class, else a fresh one of the class's full size so that it can go
    /// back.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let Some(class) = class_of(len) else {
            return Vec::with_capacity(len);
        };
        let reused = {
            let mut free = self.lock();
            let buf = free.by_class[class].pop();
            if let Some(buf) = &buf {
                free.kept -= buf.capacity();
            }
            buf
        };
        reused.unwrap_or_else(|| Vec::with_capacity(MIN_POOLED << class))
    }

    /// Keeps a buffer for reuse, or frees it when the pool is full or its size is not a
    /// class's.
    fn give_back(&self, mut buf: Vec<u8>) {
        let Some(class) = class_of(buf.capacity()).filter(|&c| MIN_POOLED << c == buf.capacity()) else {
            return;
        };
        buf.clear();
        let mut free = self.lock();
        if free.kept + buf.capacity() <= self.cap {
            free.kept += buf.capacity();
            free.by_class[class].push(buf);
        }
    }

    /// The bytes the pool keeps unused right now.
    pub fn kept_bytes(&self) -> usize {
        self.lock().kept
    }

    /// Wraps a filled buffer from [`Pool::take`] as [`Bytes`]; the buffer comes back to
    /// this pool when the last clone of those bytes is dropped.
    pub fn into_bytes(&'static self, buf: Vec<u8>) -> Bytes {
        if class_of(buf.capacity()).is_some() {
            Bytes::from_owner(Pooled { buf, pool: self })
        } else {
            Bytes::from(buf)
        }
    }
}

/// [`Pool::take`] from the data path's pool.
pub fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// [`Pool::into_bytes`] into the data path's pool.
pub fn into_bytes(buf: Vec<u8>) -> Bytes {
    POOL.into_bytes(buf)
}

/// A buffer from a pool that goes back to it when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused_with_its_pages() {
        static P: Pool = Pool::new(64 << 20);
        let len = 768 << 10;
        let mut buf = P.take(len);
        assert_eq!(buf.capacity(), 1 << 20, "a buffer has its class's full size");
        buf.extend(std::iter::repeat_n(7u8, len));
        let first = buf.as_ptr();
        let bytes = P.into_bytes(buf);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(P.kept_bytes(), 0, "a buffer comes back only when its last clone goes");
        assert!(clone.len() == len && clone.iter().all(|&b| b == 7));
        drop(clone);
        assert_eq!(P.kept_bytes(), 1 << 20);
        let again = P.take(len);
        assert_eq!(again.as_ptr(), first, "the same memory comes back");
        assert!(again.is_empty(), "a reused buffer holds no stale length");
        assert_eq!(P.kept_bytes(), 0);
    }

    #[test]
    fn sizes_outside_the_classes_are_not_pooled() {
        static P: Pool = Pool::new(64 << 20);
        assert_eq!(class_of(MIN_POOLED - 1), None);
        assert_eq!(class_of(MAX_POOLED + 1), None);
        assert_eq!(class_of(MIN_POOLED), Some(0));
        assert_eq!(class_of(64 << 10), Some(4));
        assert_eq!(class_of(65 << 10), Some(5));
        for len in [100, MAX_POOLED + 1] {
            let buf = P.take(len);
            assert_eq!(buf.capacity(), len);
            drop(P.into_bytes(buf));
        }
        assert_eq!(P.kept_bytes(), 0);
    }

    #[test]
    fn the_pool_keeps_at_most_its_cap() {
        static P: Pool = Pool::new(4 << 20);
        let bufs: Vec<_> = (0..6).map(|_| P.take(1 << 20)).collect();
        drop(bufs.into_iter().map(|b| P.into_bytes(b)).collect::<Vec<_>>());
        assert_eq!(P.kept_bytes(), 4 << 20, "four 1 MiB buffers fill a 4 MiB pool; the rest are freed");
    }
}
