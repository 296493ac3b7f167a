//! A disk held in memory: for tests, benchmarks and embedding.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{Transport, TransportFuture, check_range};
use crate::extent::{Extent, normalize};

/// A disk in memory that tracks which 4 KiB pages were ever written, so it reports
/// allocated extents the way a sparse file does.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    data: Vec<u8>,
    allocated: Vec<bool>,
}

const GRAIN: u64 = 4096;

impl MemoryTransport {
    /// A zero-filled, fully unallocated disk of `size` bytes.
    pub fn new(name: impl Into<String>, size: u64) -> Self {
        let pages = size.div_ceil(GRAIN) as usize;
        Self {
            name: name.into(),
            inner: Arc::new(Mutex::new(Inner { data: vec![0; size as usize], allocated: vec![false; pages] })),
        }
    }

    /// A copy of the whole disk's bytes.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().expect("memory disk lock").data.clone()
    }

    fn write_sync(&self, offset: u64, data: &[u8], allocate: bool) -> Result<(), crate::error::TransportError> {
        let mut inner = self.inner.lock().expect("memory disk lock");
        check_range(&self.name, offset, data.len() as u64, inner.data.len() as u64)?;
        inner.data[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        if !data.is_empty() {
            let first = offset / GRAIN;
            let last = (offset + data.len() as u64 - 1) / GRAIN;
            for page in first..=last {
                inner.allocated[page as usize] = allocate || inner.allocated[page as usize];
            }
        }
        Ok(())
    }
}

impl Transport for MemoryTransport {
    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        let size = self.inner.lock().expect("memory disk lock").data.len() as u64;
        Box::pin(async move { Ok(size) })
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        let inner = self.inner.lock().expect("memory disk lock");
        let size = inner.data.len() as u64;
        let extents = inner
            .allocated
            .iter()
            .enumerate()
            .filter(|(_, a)| **a)
            .map(|(i, _)| {
                let start = i as u64 * GRAIN;
                Extent::new(start, GRAIN.min(size - start))
            })
            .collect();
        Box::pin(async move { Ok(normalize(extents)) })
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        let inner = self.inner.lock().expect("memory disk lock");
        let result = check_range(&self.name, offset, len as u64, inner.data.len() as u64)
            .map(|()| Bytes::copy_from_slice(&inner.data[offset as usize..offset as usize + len]));
        Box::pin(async move { result })
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        let result = self.write_sync(offset, &data, true);
        Box::pin(async move { result })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        let result = self.write_sync(offset, &vec![0; len as usize], false);
        Box::pin(async move { result })
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
