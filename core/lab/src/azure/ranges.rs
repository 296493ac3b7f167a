//! Page-range bookkeeping for page blobs.
//!
//! Every byte range that was ever written or cleared is remembered with the global sequence
//! number of the operation that last touched it and whether it now holds valid pages. That
//! is enough to answer Get Page Ranges exactly, and the `prevsnapshot` diff as well: a range
//! touched after the previous snapshot's sequence number has changed since it.

use std::collections::BTreeMap;

/// Sorted, disjoint half-open byte ranges.
pub(crate) type Ranges = Vec<(u64, u64)>;

/// State of one byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Touch {
    /// Sequence number of the last write or clear.
    pub seq: u64,
    /// `true` after a write, `false` after a clear.
    pub valid: bool,
}

/// Non-overlapping half-open ranges `[start, end)` keyed by start.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeMap {
    segs: BTreeMap<u64, (u64, Touch)>,
}

impl RangeMap {
    /// Records that `[start, end)` was written (`valid`) or cleared at `seq`.
    pub fn set(&mut self, start: u64, end: u64, touch: Touch) {
        if start >= end {
            return;
        }
        let overlapping: Vec<u64> = self
            .segs
            .range(..end)
            .rev()
            .take_while(|(_, (e, _))| *e > start)
            .map(|(s, _)| *s)
            .collect();
        for s in overlapping {
            let (e, t) = self.segs.remove(&s).expect("key collected above");
            if s < start {
                self.segs.insert(s, (start, t));
            }
            if e > end {
                self.segs.insert(end, (e, t));
            }
        }
        self.segs.insert(start, (end, touch));
    }

    /// Valid ranges, merged where adjacent, clipped to `[lo, hi)`.
    pub fn valid(&self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        merge(self.segs.iter().filter(|(_, (_, t))| t.valid).map(|(s, (e, _))| (*s, *e)), lo, hi)
    }

    /// What changed after `since_seq`, relative to `prev` (the map as it was at that point):
    /// ranges written since (valid now) and ranges cleared since that held data in `prev`.
    pub fn diff(&self, prev: &RangeMap, since_seq: u64, lo: u64, hi: u64) -> (Ranges, Ranges) {
        let touched = |valid: bool| {
            self.segs
                .iter()
                .filter(move |(_, (_, t))| t.seq > since_seq && t.valid == valid)
                .map(|(s, (e, _))| (*s, *e))
        };
        let changed = merge(touched(true), lo, hi);
        let cleared_since = merge(touched(false), lo, hi);
        let cleared = intersect(&cleared_since, &prev.valid(lo, hi));
        (changed, cleared)
    }

    /// A copy where every valid range is stamped with `seq` and cleared history is dropped,
    /// for a blob that starts a new lineage (a full copy).
    pub fn restamped(&self, seq: u64) -> RangeMap {
        let mut out = RangeMap::default();
        for (s, e) in self.valid(0, u64::MAX) {
            out.set(s, e, Touch { seq, valid: true });
        }
        out
    }
}

fn merge(iter: impl Iterator<Item = (u64, u64)>, lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in iter {
        let (s, e) = (s.max(lo), e.min(hi));
        if s >= e {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// Intersection of two sorted lists of disjoint ranges.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (mut i, mut j) = (0, 0);
    let mut out: Vec<(u64, u64)> = Vec::new();
    while i < a.len() && j < b.len() {
        let s = a[i].0.max(b[j].0);
        let e = a[i].1.min(b[j].1);
        if s < e {
            match out.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(seq: u64) -> Touch {
        Touch { seq, valid: true }
    }
    fn c(seq: u64) -> Touch {
        Touch { seq, valid: false }
    }

    #[test]
    fn writes_merge_and_clears_split() {
        let mut m = RangeMap::default();
        m.set(0, 1024, w(1));
        m.set(1024, 4096, w(2));
        m.set(512, 1536, c(3));
        assert_eq!(m.valid(0, u64::MAX), vec![(0, 512), (1536, 4096)]);
        assert_eq!(m.valid(1000, 2048), vec![(1536, 2048)]);
    }

    #[test]
    fn diff_reports_changed_and_cleared_since_a_point() {
        let mut m = RangeMap::default();
        m.set(0, 4096, w(1));
        let prev = m.clone();
        m.set(8192, 9216, w(3)); // new data
        m.set(1024, 2048, c(4)); // cleared data that existed at the snapshot
        m.set(20480, 21504, w(5));
        m.set(20480, 21504, c(6)); // written and cleared after the snapshot: no change
        m.set(30000 / 512 * 512, 30208, c(7)); // cleared but never held data: no change
        let (changed, cleared) = m.diff(&prev, 2, 0, u64::MAX);
        assert_eq!(changed, vec![(8192, 9216)]);
        assert_eq!(cleared, vec![(1024, 2048)]);
    }
}
