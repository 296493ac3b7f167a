//! An Azure page blob addressed by a SAS URL: Put Page (update/clear), Get Page Ranges and
//! ranged Get Blob.

use bytes::{Bytes, BytesMut};
use quick_xml::{Reader, events::Event};
use reqwest::{Client, StatusCode, Url};

use super::{
    Transport, TransportFuture,
    http_range::{content_length, expect, ranged_body, redact, unreachable},
};
use crate::{error::TransportError, extent::{Extent, normalize}};

/// Page blobs are written in whole 512-byte pages.
pub const PAGE_SIZE: u64 = 512;
/// The largest range one Put Page `update` may carry.
pub const MAX_PUT_PAGE: u64 = 4 << 20;
const API_VERSION: &str = "2021-08-06";

/// A page blob. The SAS token in the URL is the only credential; it is never logged.
#[derive(Clone)]
pub struct PageBlobTransport {
    client: Client,
    url: Url,
}

/// The answer to a Get Page Ranges diff against an earlier snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRangeDiff {
    /// Ranges written since the snapshot.
    pub changed: Vec<Extent>,
    /// Ranges cleared since the snapshot.
    pub cleared: Vec<Extent>,
}

impl std::fmt::Debug for PageBlobTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The query string is the SAS token.
        f.debug_struct("PageBlobTransport").field("url", &redact(&self.url)).finish_non_exhaustive()
    }
}

impl PageRangeDiff {
    /// The diff as seen through a window of `capacity` bytes at `data_offset` of the blob
    /// (see [`super::Window`]): ranges clipped to the window and shifted to its
    /// coordinates. A fixed VHD's footer, for one, never shows up as a change.
    pub fn windowed(&self, data_offset: u64, capacity: u64) -> PageRangeDiff {
        PageRangeDiff {
            changed: super::window::clip_shift(&self.changed, data_offset, capacity),
            cleared: super::window::clip_shift(&self.cleared, data_offset, capacity),
        }
    }
}

impl PageBlobTransport {
    /// A transport for the blob at `url` (including its SAS query).
    pub fn new(client: Client, url: Url) -> Self {
        Self { client, url }
    }

    fn with_query(&self, pairs: &[(&str, &str)]) -> Url {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        url
    }

    async fn size_impl(&self) -> Result<u64, TransportError> {
        let resp = self
            .client
            .head(self.url.clone())
            .header("x-ms-version", API_VERSION)
            .send()
            .await
            .map_err(|e| unreachable("Get Blob Properties", &self.url, e))?;
        let resp = expect(resp, "Get Blob Properties", &self.url, &[StatusCode::OK]).await?;
        match resp.headers().get("x-ms-blob-content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
            Some(len) => Ok(len),
            None => content_length(&resp, &self.url),
        }
    }

    /// Get Page Ranges, optionally as a diff against `prev_snapshot` (the change-tracking
    /// form), following `NextMarker` pages.
    pub async fn page_ranges(&self, prev_snapshot: Option<&str>) -> Result<PageRangeDiff, TransportError> {
        let mut diff = PageRangeDiff::default();
        let mut marker: Option<String> = None;
        loop {
            let mut pairs = vec![("comp", "pagelist")];
            if let Some(snap) = prev_snapshot {
                pairs.push(("prevsnapshot", snap));
            }
            if let Some(m) = marker.as_deref() {
                pairs.push(("marker", m));
            }
            let url = self.with_query(&pairs);
            let resp = self
                .client
                .get(url.clone())
                .header("x-ms-version", API_VERSION)
                .send()
                .await
                .map_err(|e| unreachable("Get Page Ranges", &url, e))?;
            let resp = expect(resp, "Get Page Ranges", &url, &[StatusCode::OK]).await?;
            let body = resp.text().await.map_err(|e| unreachable("Get Page Ranges body", &url, e))?;
            let page = parse_page_list(&body).map_err(|message| TransportError::Malformed { target: redact(&url), message })?;
            diff.changed.extend(page.changed);
            diff.cleared.extend(page.cleared);
            match page.next_marker {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        diff.changed = normalize(diff.changed);
        diff.cleared = normalize(diff.cleared);
        Ok(diff)
    }

    async fn put_page(&self, offset: u64, data: Option<Bytes>, len: u64) -> Result<(), TransportError> {
        let url = self.with_query(&[("comp", "page")]);
        let end = offset + len - 1;
        let req = self
            .client
            .put(url.clone())
            .header("x-ms-version", API_VERSION)
            .header("x-ms-range", format!("bytes={offset}-{end}"));
        let req = match data {
            Some(body) => req.header("x-ms-page-write", "update").header("content-length", body.len()).body(body),
            None => req.header("x-ms-page-write", "clear").header("content-length", 0),
        };
        let resp = req.send().await.map_err(|e| unreachable("Put Page", &url, e))?;
        expect(resp, "Put Page", &url, &[StatusCode::CREATED]).await?;
        Ok(())
    }

    async fn read_impl(&self, offset: u64, len: usize) -> Result<Bytes, TransportError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset + len as u64 - 1;
        let resp = self
            .client
            .get(self.url.clone())
            .header("x-ms-version", API_VERSION)
            .header("x-ms-range", format!("bytes={offset}-{end}"))
            .send()
            .await
            .map_err(|e| unreachable("Get Blob", &self.url, e))?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(TransportError::Invalid {
                target: redact(&self.url),
                message: format!("range {offset}+{len} is past the end of the blob"),
            });
        }
        let resp = expect(resp, "Get Blob", &self.url, &[StatusCode::PARTIAL_CONTENT, StatusCode::OK]).await?;
        ranged_body(resp, &self.url, len).await
    }

    /// Widens an unaligned write to whole pages by reading the partial edge pages.
    async fn align_write(&self, offset: u64, data: Bytes) -> Result<(u64, Bytes), TransportError> {
        let start = offset / PAGE_SIZE * PAGE_SIZE;
        let end = (offset + data.len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if start == offset && end == offset + data.len() as u64 {
            return Ok((offset, data));
        }
        let mut buf = BytesMut::from(&self.read_impl(start, (end - start) as usize).await?[..]);
        let at = (offset - start) as usize;
        buf[at..at + data.len()].copy_from_slice(&data);
        Ok((start, buf.freeze()))
    }
}

struct PageList {
    changed: Vec<Extent>,
    cleared: Vec<Extent>,
    next_marker: Option<String>,
}

/// Parses the `PageList` XML of Get Page Ranges (`End` is inclusive).
fn parse_page_list(xml: &str) -> Result<PageList, String> {
    let mut reader = Reader::from_str(xml);
    let mut list = PageList { changed: Vec::new(), cleared: Vec::new(), next_marker: None };
    let mut path: Vec<String> = Vec::new();
    let (mut start, mut end): (Option<u64>, Option<u64>) = (None, None);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned()),
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "PageRange" || name == "ClearRange" {
                    let (s, e) = start.take().zip(end.take()).ok_or(format!("{name} without Start/End"))?;
                    if e < s {
                        return Err(format!("{name} ends before it starts"));
                    }
                    let extent = Extent::new(s, e - s + 1);
                    if name == "PageRange" { list.changed.push(extent) } else { list.cleared.push(extent) }
                }
                path.pop();
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| e.to_string())?.trim().to_string();
                match path.last().map(String::as_str) {
                    Some("Start") => start = Some(text.parse().map_err(|_| format!("bad Start {text}"))?),
                    Some("End") => end = Some(text.parse().map_err(|_| format!("bad End {text}"))?),
                    Some("NextMarker") => list.next_marker = Some(text),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(list)
}

impl Transport for PageBlobTransport {
    fn describe(&self) -> String {
        format!("page-blob:{}", redact(&self.url))
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        Box::pin(self.size_impl())
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        Box::pin(async move { Ok(self.page_ranges(None).await?.changed) })
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        Box::pin(self.read_impl(offset, len))
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            if data.is_empty() {
                return Ok(());
            }
            let (offset, data) = self.align_write(offset, data).await?;
            let mut at = 0usize;
            while at < data.len() {
                let n = (data.len() - at).min(MAX_PUT_PAGE as usize);
                self.put_page(offset + at as u64, Some(data.slice(at..at + n)), n as u64).await?;
                at += n;
            }
            Ok(())
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            if len == 0 {
                return Ok(());
            }
            let end = offset + len;
            let inner_start = offset.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let inner_end = end / PAGE_SIZE * PAGE_SIZE;
            if inner_start >= inner_end {
                return self.write_at(offset, Bytes::from(vec![0u8; len as usize])).await;
            }
            // Partial edge pages are rewritten with zeros; whole pages are cleared, which
            // deallocates them on the service.
            if offset < inner_start {
                self.write_at(offset, Bytes::from(vec![0u8; (inner_start - offset) as usize])).await?;
            }
            self.put_page(inner_start, None, inner_end - inner_start).await?;
            if inner_end < end {
                self.write_at(inner_end, Bytes::from(vec![0u8; (end - inner_end) as usize])).await?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        // Put Page answers 201 only once the pages are durable.
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_page_list_with_clear_ranges_and_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<PageList><PageRange><Start>0</Start><End>511</End></PageRange>
<ClearRange><Start>512</Start><End>1023</End></ClearRange>
<PageRange><Start>4096</Start><End>8191</End></PageRange><NextMarker>abc</NextMarker></PageList>"#;
        let list = parse_page_list(xml).unwrap();
        assert_eq!(list.changed, vec![Extent::new(0, 512), Extent::new(4096, 4096)]);
        assert_eq!(list.cleared, vec![Extent::new(512, 512)]);
        assert_eq!(list.next_marker.as_deref(), Some("abc"));
    }

    #[test]
    fn rejects_range_without_end() {
        assert!(parse_page_list("<PageList><PageRange><Start>0</Start></PageRange></PageList>").is_err());
    }
}
