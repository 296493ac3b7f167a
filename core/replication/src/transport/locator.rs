//! Locators: how an adapter names a disk for the native data movers.

use std::{path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{FileTransport, HttpRangeTransport, PageBlobTransport, Transport};
use crate::error::TransportError;

/// Where a disk's bytes are, as returned by an adapter's `disks.open`.
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
