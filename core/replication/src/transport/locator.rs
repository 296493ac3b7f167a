//! Locators: how an adapter names a disk for the native data movers.

use std::{path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{FileTransport, HttpRangeTransport, PageBlobTransport, Transport, Window};
use crate::error::TransportError;

/// Where a disk's bytes are, as returned by an adapter's `disks.open`, without the
/// contract's headers, format and data offset: see [`AdapterLocator`] for the full form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Locator {
    /// A file on a datastore the host can reach.
    File {
        /// The file's path.
        path: PathBuf,
    },
    /// An HTTP URL with range support (vSphere `/folder`).
    HttpRange {
        /// The file's URL.
        url: String,
    },
    /// An Azure page blob URL including its SAS token.
    PageBlob {
        /// The blob's SAS URL.
        url: String,
    },
}

/// Opens the transport a locator names. Served-by-adapter and native-plugin locators are
/// opened by the plugin host, which implements [`Transport`] for them.
pub fn open_locator(locator: &Locator, writable: bool) -> Result<Arc<dyn Transport>, TransportError> {
    let parse = |url: &str| {
        reqwest::Url::parse(url).map_err(|e| TransportError::Invalid {
            target: url.split('?').next().unwrap_or_default().to_string(),
            message: format!("not a URL: {e}"),
        })
    };
    Ok(match locator {
        Locator::File { path } => Arc::new(FileTransport::open(path, writable)?),
        Locator::HttpRange { url } => Arc::new(HttpRangeTransport::new(reqwest::Client::new(), parse(url)?)),
        Locator::PageBlob { url } => Arc::new(PageBlobTransport::new(reqwest::Client::new(), parse(url)?)),
    })
}

/// The layout of the bytes a locator reaches (the adapter contract's `disk-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFormat {
    /// Raw disk bytes.
    #[default]
    Raw,
    /// A VMDK flat extent: raw bytes, described by a separate descriptor.
    VmdkFlat,
    /// A fixed VHD: the disk's bytes followed by a 512-byte footer that the data path
    /// must never touch.
    VhdFixed,
}

impl DiskFormat {
    /// Bytes after the disk's data that belong to the container (the VHD footer).
    pub fn trailer_len(self) -> u64 {
        match self {
            DiskFormat::Raw | DiskFormat::VmdkFlat => 0,
            DiskFormat::VhdFixed => 512,
        }
    }
}

/// A locator with everything an adapter's `disks.open` says about it: request headers,
/// the container format and where disk byte 0 is. [`open_adapter_locator`] opens it as a
/// [`Window`] onto exactly the disk's bytes.
///
/// Its `Debug` output leaves out header values and URL queries (session cookies, SAS
/// tokens).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AdapterLocator {
    /// A file the host can reach (the adapter's guest path already mapped to the host's).
    File {
        /// The file's path on the host.
        path: PathBuf,
        /// The container format.
        format: DiskFormat,
        /// Where disk byte 0 is in the file.
        data_offset: u64,
    },
    /// A file served over HTTP with byte ranges (vSphere `/folder`).
    HttpRange {
        /// The file's URL.
        url: String,
        /// Headers to send with every request (session cookie, authorization).
        headers: Vec<(String, String)>,
        /// The container format.
        format: DiskFormat,
        /// Where disk byte 0 is in the file.
        data_offset: u64,
    },
    /// An Azure page blob.
    PageBlob {
        /// The blob URL including its SAS query string.
        url: String,
        /// The container format (a managed disk is a fixed VHD).
        format: DiskFormat,
    },
}

impl AdapterLocator {
    /// The container format.
    pub fn format(&self) -> DiskFormat {
        match self {
            AdapterLocator::File { format, .. } | AdapterLocator::HttpRange { format, .. } | AdapterLocator::PageBlob { format, .. } => *format,
        }
    }

    /// Where disk byte 0 is in the container.
    pub fn data_offset(&self) -> u64 {
        match self {
            AdapterLocator::File { data_offset, .. } | AdapterLocator::HttpRange { data_offset, .. } => *data_offset,
            AdapterLocator::PageBlob { .. } => 0,
        }
    }
}

impl std::fmt::Debug for AdapterLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let no_query = |url: &str| url.split('?').next().unwrap_or_default().to_string();
        match self {
            AdapterLocator::File { path, format, data_offset } => {
                f.debug_struct("File").field("path", path).field("format", format).field("data_offset", data_offset).finish()
            }
            AdapterLocator::HttpRange { url, headers, format, data_offset } => f
                .debug_struct("HttpRange")
                .field("url", &no_query(url))
                .field("headers", &headers.iter().map(|(name, _)| format!("{name}: <redacted>")).collect::<Vec<_>>())
                .field("format", format)
                .field("data_offset", data_offset)
                .finish(),
            AdapterLocator::PageBlob { url, format } => {
                f.debug_struct("PageBlob").field("url", &no_query(url)).field("format", format).finish()
            }
        }
    }
}

/// Opens an adapter's locator as a [`Window`] onto the disk's bytes: `capacity` bytes
/// (the `capacity-bytes` of the disk access) from the locator's data offset. Without a
/// capacity, the window runs from the data offset to the container's trailer (the VHD
/// footer). Either way the container must hold the window and its trailer, or this fails
/// with [`TransportError::Invalid`], so a footer can never be read or written as disk
/// data. A page blob's window also answers [`Window::page_ranges`].
pub async fn open_adapter_locator(
    locator: &AdapterLocator,
    capacity: Option<u64>,
    writable: bool,
) -> Result<Window, TransportError> {
    let parse = |url: &str| {
        reqwest::Url::parse(url).map_err(|e| TransportError::Invalid {
            target: url.split('?').next().unwrap_or_default().to_string(),
            message: format!("not a URL: {e}"),
        })
    };
    let data_offset = locator.data_offset();
    let trailer = locator.format().trailer_len();
    let (inner, blob): (Arc<dyn Transport>, Option<PageBlobTransport>) = match locator {
        AdapterLocator::File { path, .. } => (Arc::new(FileTransport::open(path, writable)?), None),
        AdapterLocator::HttpRange { url, headers, .. } => (Arc::new(HttpRangeTransport::with_headers(parse(url)?, headers)?), None),
        AdapterLocator::PageBlob { url, .. } => {
            let blob = PageBlobTransport::new(reqwest::Client::new(), parse(url)?);
            (Arc::new(blob.clone()), Some(blob))
        }
    };
    let size = inner.size().await?;
    let room = size.checked_sub(data_offset).and_then(|n| n.checked_sub(trailer));
    let capacity = match (capacity, room) {
        (Some(c), Some(room)) if c <= room => c,
        (None, Some(room)) => room,
        _ => {
            return Err(TransportError::Invalid {
                target: inner.describe(),
                message: format!(
                    "a {size}-byte {:?} container cannot hold {} bytes of disk at offset {data_offset} and a {trailer}-byte trailer",
                    locator.format(),
                    capacity.map_or("any".to_string(), |c| c.to_string()),
                ),
            });
        }
    };
    Ok(match blob {
        Some(blob) => Window::over_page_blob(blob, data_offset, capacity),
        None => Window::new(inner, data_offset, capacity),
    })
}
