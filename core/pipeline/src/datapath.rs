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
    let footer = vhd_footer(disk.capacity);
    whole.write_at(disk.capacity, Bytes::from(footer.to_vec())).await.map_err(|e| PipelineError::Replication { object: object.to_string(), error: e.into() })?;
    whole.flush().await.map_err(|e| PipelineError::Replication { object: object.to_string(), error: e.into() })
}

/// A fixed-VHD footer for a disk of `capacity` bytes (big-endian fields, one's-complement
/// checksum, CHS geometry as the VHD specification computes it).
pub fn vhd_footer(capacity: u64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // format version
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none for fixed
    f[28..32].copy_from_slice(b"hwrd"); // creator application
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&capacity.to_be_bytes());
    f[48..56].copy_from_slice(&capacity.to_be_bytes());
    let (c, h, s) = chs(capacity / 512);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // disk type: fixed
    let id = blake3::hash(&capacity.to_le_bytes());
    f[68..84].copy_from_slice(&id.as_bytes()[..16]);
    let sum: u32 = f.iter().map(|&b| b as u32).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

fn chs(sectors: u64) -> (u16, u8, u8) {
    let total = sectors.min(65535 * 16 * 255);
    let (spt, heads, cyl_heads);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cyl_heads = total / spt;
    } else {
        let mut s = 17;
        let mut ch = total / s;
        let mut h = ch.div_ceil(1024).max(4);
        if ch >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            ch = total / s;
        }
        if ch >= h * 1024 {
            s = 63;
            h = 16;
            ch = total / s;
        }
        spt = s;
        heads = h;
        cyl_heads = ch;
    }
    ((cyl_heads / heads) as u16, heads as u8, spt as u8)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_checksums_and_describes_a_fixed_disk() {
        let f = vhd_footer(64 << 20);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 64 << 20);
        let mut g = f;
        g[64..68].fill(0);
        let sum: u32 = g.iter().map(|&b| b as u32).sum();
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
    }
}
