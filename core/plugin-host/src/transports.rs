//! The data path's transports that only the plugin host can provide: disks served by an
//! adapter through `disks.read`/`disks.write`, and disks opened through a native transport
//! library. Both implement [`homeward_replication::transport::Transport`], so copies,
//! resyncs and cycles run over them like over any other disk.
//!
//! [`open_disk_access`] turns what an adapter's `disks.open` returned into a transport:
//! its locator (with headers, format and data offset) opened as a window onto exactly the
//! disk's bytes, or a [`ServedTransport`] for `served`.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use bytes::{Bytes, BytesMut};
use homeward_replication::{
    TransportError,
    extent::Extent,
    transport::{AdapterLocator, DiskFormat, Transport, TransportFuture, open_adapter_locator},
};

use crate::{
    Plugin,
    bindings::disks,
    error::CallError,
    native::{NativeDisk, NativeError},
};

/// The most one `disks.read` or `disks.write` call carries. The contract allows 4 MiB;
/// 1 MiB keeps each copy through the component's linear memory (and its memory cap) small.
pub const SERVED_MAX_IO: u64 = 1 << 20;

/// Checks that `[offset, offset + len)` lies inside a disk of `size` bytes.
fn check_range(target: &str, offset: u64, len: u64, size: u64) -> Result<(), TransportError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(TransportError::Invalid {
            target: target.to_string(),
            message: format!("range {offset}+{len} is past the end of the {size}-byte disk"),
        }),
    }
}

/// A disk the adapter serves itself (`locator::served`): reads and writes go through
/// [`Plugin::read`] and [`Plugin::write`] in pieces of at most [`SERVED_MAX_IO`].
///
/// The adapter knows nothing about allocation, so the whole disk counts as allocated;
/// the engines still skip sending blocks that read as zeros.
pub struct ServedTransport {
    plugin: Arc<Plugin>,
    handle: String,
    capacity: u64,
}

impl fmt::Debug for ServedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedTransport")
            .field("plugin", &self.plugin.name())
            .field("handle", &self.handle)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl ServedTransport {
    /// A transport over the `served` handle `handle` of `plugin`, for a disk of
    /// `capacity` bytes (the `capacity-bytes` of the disk access).
    pub fn new(plugin: Arc<Plugin>, handle: impl Into<String>, capacity: u64) -> Self {
        Self { plugin, handle: handle.into(), capacity }
    }

    /// The adapter's handle.
    pub fn handle(&self) -> &str {
        &self.handle
    }

    fn call_error(&self, op: &'static str, e: CallError) -> TransportError {
        let target = self.describe();
        match e.kind() {
            // The adapter refused the request itself: retrying will not help.
            "invalid-argument" | "not-found" | "permission-denied" | "unsupported" | "conflict" => {
                TransportError::Invalid { target, message: format!("{op}: {e}") }
            }
            _ => TransportError::Unreachable { op, target, message: e.to_string() },
        }
    }

    async fn read_impl(&self, offset: u64, len: usize) -> Result<Bytes, TransportError> {
        check_range(&self.describe(), offset, len as u64, self.capacity)?;
        if len as u64 <= SERVED_MAX_IO {
            // One call: hand its buffer over without copying.
            return self.read_piece(offset, len as u32).await.map(Bytes::from);
        }
        let mut out = BytesMut::with_capacity(len);
        let end = offset + len as u64;
        let mut at = offset;
        while at < end {
            let n = (end - at).min(SERVED_MAX_IO) as u32;
            out.extend_from_slice(&self.read_piece(at, n).await?);
            at += u64::from(n);
        }
        Ok(out.freeze())
    }

    async fn read_piece(&self, offset: u64, len: u32) -> Result<Vec<u8>, TransportError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let data = self.plugin.read(&self.handle, offset, len).await.map_err(|e| self.call_error("disks.read", e))?;
        if data.len() != len as usize {
            return Err(TransportError::Malformed {
                target: self.describe(),
                message: format!("disks.read of {len} bytes at {offset} returned {} bytes", data.len()),
            });
        }
        Ok(data)
    }

    async fn write_impl(&self, offset: u64, data: &[u8]) -> Result<(), TransportError> {
        check_range(&self.describe(), offset, data.len() as u64, self.capacity)?;
        for (i, piece) in data.chunks(SERVED_MAX_IO as usize).enumerate() {
            let at = offset + i as u64 * SERVED_MAX_IO;
            self.plugin.write(&self.handle, at, piece.to_vec()).await.map_err(|e| self.call_error("disks.write", e))?;
        }
        Ok(())
    }
}

impl Transport for ServedTransport {
    fn describe(&self) -> String {
        format!("served:{}/{}", self.plugin.name(), self.handle)
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        let capacity = self.capacity;
        Box::pin(async move { Ok(capacity) })
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        let capacity = self.capacity;
        Box::pin(async move { Ok(if capacity == 0 { Vec::new() } else { vec![Extent::new(0, capacity)] }) })
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        Box::pin(self.read_impl(offset, len))
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        Box::pin(async move { self.write_impl(offset, &data).await })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            // The contract has no trim: zeros are written.
            check_range(&self.describe(), offset, len, self.capacity)?;
            let zeros = vec![0u8; len.min(SERVED_MAX_IO) as usize];
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(SERVED_MAX_IO) as usize;
                self.write_impl(at, &zeros[..n]).await?;
                at += n as u64;
            }
            Ok(())
        })
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        // `disks.write` is durable before it returns.
        Box::pin(async { Ok(()) })
    }
}

/// A disk opened through a native transport library ([`crate::native::NativeTransport`]).
///
/// The library's calls block, so each runs on tokio's blocking pool. The ABI allows one
/// call per handle at a time, so calls on one disk are serialised by a lock; open the
/// disk more than once for parallel I/O.
pub struct NativeDiskTransport {
    name: String,
    disk: Arc<Mutex<NativeDisk>>,
    size: u64,
}

impl fmt::Debug for NativeDiskTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeDiskTransport").field("name", &self.name).field("size", &self.size).finish()
    }
}

impl NativeDiskTransport {
    /// Wraps an open native disk; `name` names it in logs and errors (no secrets). Asks
    /// the library for the disk's size once: every access is checked against it, since a
    /// library may not check ranges itself.
    pub fn new(name: impl Into<String>, mut disk: NativeDisk) -> Result<Self, NativeError> {
        let size = disk.size()?;
        Ok(Self { name: name.into(), disk: Arc::new(Mutex::new(disk)), size })
    }

    fn native_error(&self, e: NativeError) -> TransportError {
        match e {
            NativeError::Io { op, errno, .. } => {
                TransportError::Io { op, target: self.describe(), source: std::io::Error::from_raw_os_error(errno) }
            }
            other => TransportError::Invalid { target: self.describe(), message: other.to_string() },
        }
    }

    /// Runs `f` on the disk on the blocking pool.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut NativeDisk) -> Result<T, NativeError> + Send + 'static,
    ) -> TransportFuture<'_, T> {
        let disk = self.disk.clone();
        Box::pin(async move {
            let joined = tokio::task::spawn_blocking(move || {
                // A panic inside a call leaves the handle usable for the ABI's purposes;
                // the poison flag carries no state worth refusing over.
                let mut disk = disk.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut disk)
            })
            .await;
            match joined {
                Ok(result) => result.map_err(|e| self.native_error(e)),
                Err(e) => Err(TransportError::Io { op: "join", target: self.describe(), source: std::io::Error::other(e) }),
            }
        })
    }
}

impl Transport for NativeDiskTransport {
    fn describe(&self) -> String {
        format!("native:{}", self.name)
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        let size = self.size;
        Box::pin(async move { Ok(size) })
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        let size = self.size;
        Box::pin(async move {
            let extents = self.blocking(|d| d.allocated_extents()).await?;
            let extents = extents
                .into_iter()
                .filter_map(|e| {
                    let end = e.offset.saturating_add(e.length).min(size);
                    (end > e.offset).then(|| Extent::new(e.offset, end - e.offset))
                })
                .collect();
            Ok(homeward_replication::extent::normalize(extents))
        })
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        if let Err(e) = check_range(&self.describe(), offset, len as u64, self.size) {
            return Box::pin(async move { Err(e) });
        }
        let read = self.blocking(move |d| {
            let mut buf = vec![0u8; len];
            d.read_at(offset, &mut buf)?;
            Ok(buf)
        });
        Box::pin(async move { read.await.map(Bytes::from) })
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        if let Err(e) = check_range(&self.describe(), offset, data.len() as u64, self.size) {
            return Box::pin(async move { Err(e) });
        }
        self.blocking(move |d| d.write_at(offset, &data))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        if let Err(e) = check_range(&self.describe(), offset, len, self.size) {
            return Box::pin(async move { Err(e) });
        }
        // ABI 1 has no trim: zeros are written.
        self.blocking(move |d| {
            let zeros = vec![0u8; len.min(1 << 20) as usize];
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(zeros.len() as u64) as usize;
                d.write_at(at, &zeros[..n])?;
                at += n as u64;
            }
            Ok(())
        })
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        self.blocking(|d| d.flush())
    }
}

/// The contract's locator as the data path's [`AdapterLocator`]. A `file` locator's
/// guest path is mapped to the host's through the plugin's preopens; a path outside
/// them is refused. `served` has no locator: `None`.
pub fn adapter_locator(plugin: &Plugin, locator: &disks::Locator) -> Result<Option<AdapterLocator>, TransportError> {
    let format = |f: disks::DiskFormat| match f {
        disks::DiskFormat::Raw => DiskFormat::Raw,
        disks::DiskFormat::VmdkFlat => DiskFormat::VmdkFlat,
        disks::DiskFormat::VhdFixed => DiskFormat::VhdFixed,
    };
    Ok(Some(match locator {
        disks::Locator::File(f) => {
            let path = plugin.resolve_guest_path(&f.path).ok_or_else(|| TransportError::Invalid {
                target: format!("plugin `{}`", plugin.name()),
                message: format!("the file locator {} is outside every directory preopened for the adapter", f.path),
            })?;
            AdapterLocator::File { path, format: format(f.format), data_offset: f.data_offset }
        }
        disks::Locator::HttpRange(h) => AdapterLocator::HttpRange {
            url: h.url.clone(),
            headers: h.headers.clone(),
            format: format(h.format),
            data_offset: h.data_offset,
        },
        disks::Locator::PageBlob(p) => AdapterLocator::PageBlob { url: p.url.clone(), format: format(p.format) },
        disks::Locator::Served => return Ok(None),
    }))
}

/// Opens what an adapter's `disks.open` returned as a transport onto exactly the disk's
/// `capacity-bytes`: a window over its locator (headers sent, data offset applied, a VHD
/// footer out of reach), or a [`ServedTransport`] for `served`. Writable when the access
/// is not read-only.
pub async fn open_disk_access(plugin: Arc<Plugin>, access: &disks::DiskAccess) -> Result<Arc<dyn Transport>, TransportError> {
    match adapter_locator(&plugin, &access.locator)? {
        Some(locator) => Ok(Arc::new(open_adapter_locator(&locator, Some(access.capacity_bytes), !access.read_only).await?)),
        None => Ok(Arc::new(ServedTransport::new(plugin, access.handle.clone(), access.capacity_bytes))),
    }
}
