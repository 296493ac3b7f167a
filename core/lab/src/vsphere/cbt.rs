//! Changed block tracking: which byte extents of a disk were written between change ids.
//!
//! A change id has vSphere's shape, `<16 hex bytes>/<n>`: the first part identifies one
//! tracking epoch (it changes when tracking is switched off and on, which invalidates old
//! ids), `n` counts the points cut so far, one per snapshot. Extents are kept at 512-byte
//! sector granularity, so a sector-aligned write is reported exactly.

use std::collections::BTreeMap;

use crate::vmdk::SECTOR;

/// A set of disjoint, sorted byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentSet {
    // start -> end (exclusive); invariant: disjoint and not adjacent.
    map: BTreeMap<u64, u64>,
}

impl ExtentSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, start+len)`, widened to whole sectors, merging neighbours.
    pub fn insert(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut s = start / SECTOR * SECTOR;
        let mut e = (start + len).div_ceil(SECTOR) * SECTOR;
        let overlapping: Vec<(u64, u64)> = self
            .map
            .range(..=e)
            .filter(|(_, end)| **end >= s)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, b) in overlapping {
            self.map.remove(&a);
            s = s.min(a);
            e = e.max(b);
        }
        self.map.insert(s, e);
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &ExtentSet) {
        for (s, e) in &other.map {
            self.insert(*s, e - s);
        }
    }

    /// Ranges as `(start, length)`, in order.
    #[cfg(test)]
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.map.iter().map(|(s, e)| (*s, e - s)).collect()
    }

    /// Ranges at or after `from`, clipped to `[from, to)`.
    pub fn clipped(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        self.map
            .iter()
            .filter(|(s, e)| **e > from && **s < to)
            .map(|(s, e)| {
                let s = (*s).max(from);
                let e = (*e).min(to);
                (s, e - s)
            })
            .collect()
    }
}

/// Why a change id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeIdError {
    /// Not of the form `<epoch>/<n>`.
    #[error("change id '{0}' is malformed")]
    Malformed(String),
    /// From another tracking epoch (tracking was reset since) or beyond the newest point.
    #[error("change id '{0}' does not belong to this disk's current change tracking")]
    Unknown(String),
}

/// The change tracking state of one virtual disk.
#[derive(Debug, Clone)]
pub struct ChangeTracker {
    epoch: String,
    // history[i]: sectors written between point i and point i+1.
    history: Vec<ExtentSet>,
    current: ExtentSet,
}

impl Default for ChangeTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeTracker {
    /// Starts tracking with a fresh epoch; point 0 is "now".
    pub fn new() -> Self {
        let b = uuid::Uuid::new_v4().into_bytes();
        let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        let epoch = format!("{}-{}", hex[..8].join(" "), hex[8..].join(" "));
        ChangeTracker {
            epoch,
            history: Vec::new(),
            current: ExtentSet::new(),
        }
    }

    /// Records a write.
    pub fn record(&mut self, start: u64, len: u64) {
        self.current.insert(start, len);
    }

    /// Cuts a new point (a snapshot was taken) and returns its index.
    pub fn cut(&mut self) -> usize {
        self.history.push(std::mem::take(&mut self.current));
        self.history.len()
    }

    /// The change id naming point `n`.
    pub fn change_id(&self, point: usize) -> String {
        format!("{}/{point}", self.epoch)
    }

    /// The newest point's change id.
    pub fn latest_change_id(&self) -> String {
        self.change_id(self.history.len())
    }

    /// Resolves a change id to its point.
    pub fn point_of(&self, change_id: &str) -> Result<usize, ChangeIdError> {
        let (epoch, n) = change_id
            .rsplit_once('/')
            .ok_or_else(|| ChangeIdError::Malformed(change_id.into()))?;
        let n: usize = n
            .parse()
            .map_err(|_| ChangeIdError::Malformed(change_id.into()))?;
        if epoch != self.epoch || n > self.history.len() {
            return Err(ChangeIdError::Unknown(change_id.into()));
        }
        Ok(n)
    }

    /// Sectors written after `since` and up to point `until` (or up to now when `None`).
    pub fn changed_since(
        &self,
        since: &str,
        until: Option<usize>,
    ) -> Result<ExtentSet, ChangeIdError> {
        let from = self.point_of(since)?;
        let to = until.unwrap_or(self.history.len());
        if from > to || to > self.history.len() {
            return Err(ChangeIdError::Unknown(since.into()));
        }
        let mut out = ExtentSet::new();
        for h in &self.history[from..to] {
            out.extend(h);
        }
        if until.is_none() {
            out.extend(&self.current);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_and_round_to_sectors() {
        let mut s = ExtentSet::new();
        s.insert(1000, 10);
        assert_eq!(s.ranges(), vec![(512, 512)]);
        s.insert(4096, 512);
        s.insert(1024, 3072);
        assert_eq!(s.ranges(), vec![(512, 4096)]);
        assert_eq!(s.clipped(1024, 2048), vec![(1024, 1024)]);
    }

    #[test]
    fn change_ids_partition_writes_by_point() {
        let mut t = ChangeTracker::new();
        let p0 = t.latest_change_id();
        t.record(0, 512);
        let p1 = t.cut();
        t.record(8192, 1024);
        let p2 = t.cut();
        t.record(65536, 512);
        assert_eq!(
            t.changed_since(&p0, Some(p1)).unwrap().ranges(),
            vec![(0, 512)]
        );
        assert_eq!(
            t.changed_since(&t.change_id(p1), Some(p2))
                .unwrap()
                .ranges(),
            vec![(8192, 1024)]
        );
        assert_eq!(
            t.changed_since(&p0, None).unwrap().ranges(),
            vec![(0, 512), (8192, 1024), (65536, 512)]
        );
        let other = ChangeTracker::new();
        assert!(matches!(
            other.changed_since(&p0, None),
            Err(ChangeIdError::Unknown(_))
        ));
        assert!(matches!(
            t.changed_since("nonsense", None),
            Err(ChangeIdError::Malformed(_))
        ));
    }
}
