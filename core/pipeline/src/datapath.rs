//! From an adapter's `disks.open` answer to a native transport the replication engine
//! moves blocks through.

use std::sync::Arc;

use bytes::Bytes;
use homeward_plugin_host::{
    Plugin,
    bindings::disks::{DiskAccess, DiskFormat, Locator as WitLocator},
};
use homeward_replication::transport::{PageBlobTransport, Transport};

use crate::error::PipelineError;

/// An open disk: its transport and the adapter handle to close.
#[derive(Debug, Clone)]
pub struct OpenDisk {
    /// The disk's bytes, exactly `capacity` long.
    pub transport: Arc<dyn Transport>,
    /// Whole-blob access for VHD page blobs (footer included), for writing the footer.
    pub whole: Option<Arc<dyn Transport>>,
    /// The adapter's handle.
    pub handle: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// A standalone replica open for upload: closing it would end the upload (Azure),
    /// so it stays open between cycles until a failover finishes it.
    pub keep_open: bool,
}

/// Builds the transport for `access`, which the adapter `plugin` returned for `object`:
/// a window onto exactly the disk's bytes through its locator, or the adapter's own
/// `read`/`write` for a served disk.
pub async fn transport_for(plugin: &Arc<Plugin>, object: &str, access: &DiskAccess) -> Result<OpenDisk, PipelineError> {
    let fail = |e: homeward_replication::TransportError| PipelineError::Replication { object: object.to_string(), error: e.into() };
    let transport = homeward_plugin_host::open_disk_access(plugin.clone(), access).await.map_err(fail)?;
    // A new fixed VHD needs its footer written past the data window.
    let whole: Option<Arc<dyn Transport>> = match &access.locator {
        WitLocator::PageBlob(l) if matches!(l.format, DiskFormat::VhdFixed) && !access.read_only => {
            let url = reqwest::Url::parse(&l.url).map_err(|e| PipelineError::Refused {
                object: object.to_string(),
                message: format!("the adapter returned a page-blob locator that is not a URL: {e}"),
                fix: "report this adapter's locator to its vendor".into(),
            })?;
            Some(Arc::new(PageBlobTransport::new(reqwest::Client::new(), url)))
        }
        _ => None,
    };
    Ok(OpenDisk { transport, whole, handle: access.handle.clone(), capacity: access.capacity_bytes, keep_open: false })
}

/// Writes the 512-byte fixed-VHD footer after the data of a new page-blob disk, as Azure
/// requires of an uploaded disk.
pub async fn write_vhd_footer(disk: &OpenDisk, object: &str) -> Result<(), PipelineError> {
    let Some(whole) = &disk.whole else { return Ok(()) };
    let footer = homeward_replication::transport::fixed_vhd_footer(disk.capacity);
    whole.write_at(disk.capacity, Bytes::from(footer.to_vec())).await.map_err(|e| PipelineError::Replication { object: object.to_string(), error: e.into() })?;
    whole.flush().await.map_err(|e| PipelineError::Replication { object: object.to_string(), error: e.into() })
}

/// The BLAKE3 digest of a whole disk read through its transport, in 4 MiB reads.
pub async fn disk_digest(t: &dyn Transport) -> Result<blake3::Hash, homeward_replication::TransportError> {
    let size = t.size().await?;
    let mut h = blake3::Hasher::new();
    let mut off = 0;
    while off < size {
        let n = (size - off).min(4 << 20);
        h.update(&t.read_at(off, n as usize).await?);
        off += n;
    }
    Ok(h.finalize())
}
