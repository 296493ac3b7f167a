//! Reading and writing disk bytes through a locator, the way the host's native data movers
//! do: a file inside a preopen, a ranged HTTP GET/PUT, a page blob through its SAS URL, or
//! the adapter's own `disks.read`/`disks.write` for `served`.

use std::io::{Read, Seek, SeekFrom, Write};

use homeward_plugin_host::Plugin;
use homeward_plugin_host::bindings::disks::{DiskAccess, Locator};

/// The locator's kind, for messages.
pub(crate) fn kind(l: &Locator) -> &'static str {
    match l {
        Locator::File(_) => "file",
        Locator::HttpRange(_) => "http-range",
        Locator::PageBlob(_) => "page-blob",
        Locator::Served => "served",
    }
}

fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') { format!("{url}&{q}") } else { format!("{url}?{q}") }
}

/// Reads `len` disk bytes at `offset` through the access's locator.
pub(crate) async fn read(p: &Plugin, access: &DiskAccess, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    match &access.locator {
        Locator::File(f) => {
            let host = p
                .resolve_guest_path(&f.path)
                .ok_or_else(|| format!("the file locator's path {} is not inside any directory the operator preopened: return a path under a preopen", f.path))?;
            let mut file = std::fs::File::open(&host).map_err(|e| format!("cannot open {} (locator path {}): {e}", host.display(), f.path))?;
            file.seek(SeekFrom::Start(f.data_offset + offset)).map_err(|e| e.to_string())?;
            let mut buf = vec![0; len as usize];
            file.read_exact(&mut buf).map_err(|e| format!("reading {len} bytes at {offset} of {}: {e}", host.display()))?;
            Ok(buf)
        }
        Locator::HttpRange(h) => {
            let start = h.data_offset + offset;
            let mut req = reqwest::Client::new().get(&h.url).header("Range", format!("bytes={start}-{}", start + len - 1));
            for (k, v) in &h.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let resp = req.send().await.map_err(|e| format!("ranged GET of {}: {e}", h.url))?;
            let status = resp.status().as_u16();
            if status != 206 {
                return Err(format!("ranged GET of {} answered HTTP {status}, not 206: the locator's URL or headers do not grant ranged reads", h.url));
            }
            Ok(resp.bytes().await.map_err(|e| e.to_string())?.to_vec())
        }
        Locator::PageBlob(b) => {
            let resp = reqwest::Client::new()
                .get(&b.url)
                .header("x-ms-version", "2021-08-06")
                .header("x-ms-range", format!("bytes={offset}-{}", offset + len - 1))
                .send()
                .await
                .map_err(|e| format!("ranged Get Blob: {e}"))?;
            let status = resp.status().as_u16();
            if status != 206 {
                return Err(format!("ranged Get Blob through the SAS URL answered HTTP {status}, not 206: the SAS does not grant read"));
            }
            Ok(resp.bytes().await.map_err(|e| e.to_string())?.to_vec())
        }
        Locator::Served => {
            let mut out = Vec::with_capacity(len as usize);
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(4 << 20) as u32;
                out.extend(p.read(&access.handle, at, n).await.map_err(|e| format!("disks.read: {e}"))?);
                at += u64::from(n);
            }
            Ok(out)
        }
    }
}

/// Writes disk bytes at `offset` through the access's locator.
pub(crate) async fn write(p: &Plugin, access: &DiskAccess, offset: u64, data: &[u8]) -> Result<(), String> {
    match &access.locator {
        Locator::File(f) => {
            let host = p.resolve_guest_path(&f.path).ok_or_else(|| format!("the file locator's path {} is not inside any preopen", f.path))?;
            let mut file = std::fs::OpenOptions::new().write(true).open(&host).map_err(|e| format!("cannot open {} for writing: {e}", host.display()))?;
            file.seek(SeekFrom::Start(f.data_offset + offset)).map_err(|e| e.to_string())?;
            file.write_all(data).and_then(|_| file.sync_all()).map_err(|e| format!("writing {}: {e}", host.display()))
        }
        Locator::HttpRange(h) => {
            let start = h.data_offset + offset;
            let total = h.data_offset + access.capacity_bytes;
            let mut req = reqwest::Client::new()
                .put(&h.url)
                .header("Content-Range", format!("bytes {start}-{}/{total}", start + data.len() as u64 - 1))
                .body(data.to_vec());
            for (k, v) in &h.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let status = req.send().await.map_err(|e| format!("ranged PUT of {}: {e}", h.url))?.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(format!("ranged PUT of {} answered HTTP {status}: a read-write locator must accept writes", h.url));
            }
            Ok(())
        }
        Locator::PageBlob(b) => {
            let status = reqwest::Client::new()
                .put(with_query(&b.url, "comp=page"))
                .header("x-ms-version", "2021-08-06")
                .header("x-ms-page-write", "update")
                .header("x-ms-range", format!("bytes={offset}-{}", offset + data.len() as u64 - 1))
                .body(data.to_vec())
                .send()
                .await
                .map_err(|e| format!("Put Page: {e}"))?
                .status()
                .as_u16();
            if status != 201 {
                return Err(format!("Put Page through the SAS URL answered HTTP {status}, not 201: a read-write locator's SAS must grant write"));
            }
            Ok(())
        }
        Locator::Served => p.write(&access.handle, offset, data.to_vec()).await.map_err(|e| format!("disks.write: {e}")),
    }
}
