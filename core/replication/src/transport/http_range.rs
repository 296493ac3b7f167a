//! A disk behind HTTP range requests, such as the vSphere datastore `/folder` file API:
//! ranged `GET` to read, `PUT` with `Content-Range` to write.

use bytes::Bytes;
use reqwest::{Client, StatusCode, Url, header};

use super::{Transport, TransportFuture, check_range};
use crate::{error::TransportError, extent::Extent};

/// Writes larger than this are split, to bound request size and memory.
const MAX_PUT: u64 = 4 << 20;

/// A disk file served over HTTP(S) with range support.
#[derive(Clone)]
pub struct HttpRangeTransport {
    client: Client,
    url: Url,
    // A disk file's size does not change while it is replicated; asking once saves a
    // HEAD per write.
    size: std::sync::Arc<tokio::sync::OnceCell<u64>>,
}

impl std::fmt::Debug for HttpRangeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's default headers and the URL's query may hold session tickets.
        f.debug_struct("HttpRangeTransport").field("url", &redact(&self.url)).finish_non_exhaustive()
    }
}

impl HttpRangeTransport {
    /// A transport for the file at `url`, using `client` (which carries any credentials or
    /// cookies the endpoint needs).
    pub fn new(client: Client, url: Url) -> Self {
        Self { client, url, size: Default::default() }
    }

    /// A transport for the file at `url` that sends `headers` with every request: the
    /// `headers` of an adapter's `http-locator` (a vSphere session cookie, an
    /// authorization). Header values are credentials: they are marked sensitive and never
    /// appear in logs, errors or `Debug` output.
    pub fn with_headers(url: Url, headers: &[(String, String)]) -> Result<Self, TransportError> {
        let client = Client::builder()
            .default_headers(header_map(&url, headers)?)
            .build()
            .map_err(|e| unreachable("building the HTTP client for", &url, e))?;
        Ok(Self::new(client, url))
    }

    fn target(&self) -> String {
        redact(&self.url)
    }

    async fn cached_size(&self) -> Result<u64, TransportError> {
        self.size.get_or_try_init(|| self.size_impl()).await.copied()
    }

    async fn size_impl(&self) -> Result<u64, TransportError> {
        let resp = self.client.head(self.url.clone()).send().await.map_err(|e| unreachable("HEAD", &self.url, e))?;
        let resp = expect(resp, "HEAD", &self.url, &[StatusCode::OK]).await?;
        content_length(&resp, &self.url)
    }

    async fn put(&self, offset: u64, data: Bytes, size: u64) -> Result<(), TransportError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64 - 1;
        let resp = self
            .client
            .put(self.url.clone())
            .header(header::CONTENT_RANGE, format!("bytes {offset}-{end}/{size}"))
            .header(header::CONTENT_LENGTH, data.len())
            .body(data)
            .send()
            .await
            .map_err(|e| unreachable("PUT", &self.url, e))?;
        expect(resp, "PUT", &self.url, &[StatusCode::OK, StatusCode::CREATED, StatusCode::NO_CONTENT]).await?;
        Ok(())
    }
}

/// Turns `(name, value)` pairs into a header map with every value marked sensitive.
/// Errors name the offending header but never show its value.
pub(crate) fn header_map(url: &Url, headers: &[(String, String)]) -> Result<header::HeaderMap, TransportError> {
    let mut map = header::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let invalid = |what: &str| TransportError::Invalid {
            target: redact(url),
            message: format!("the locator's header `{name}` has an invalid {what}"),
        };
        let name = header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("name"))?;
        let mut value = header::HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// The URL without its query string, which may hold a SAS token or session ticket.
pub(crate) fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

pub(crate) fn unreachable(op: &'static str, url: &Url, e: reqwest::Error) -> TransportError {
    // reqwest's message repeats the full URL, query (SAS token) included.
    TransportError::Unreachable { op, target: redact(url), message: e.without_url().to_string() }
}

pub(crate) async fn expect(
    resp: reqwest::Response,
    op: &'static str,
    url: &Url,
    ok: &[StatusCode],
) -> Result<reqwest::Response, TransportError> {
    if ok.contains(&resp.status()) {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    Err(TransportError::Http { op, target: redact(url), status, body: body.chars().take(300).collect() })
}

pub(crate) fn content_length(resp: &reqwest::Response, url: &Url) -> Result<u64, TransportError> {
    resp.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| TransportError::Malformed { target: redact(url), message: "no Content-Length".into() })
}

/// Reads a ranged GET's body and checks it has exactly `len` bytes.
pub(crate) async fn ranged_body(resp: reqwest::Response, url: &Url, len: usize) -> Result<Bytes, TransportError> {
    let body = resp.bytes().await.map_err(|e| unreachable("GET body", url, e))?;
    if body.len() != len {
        return Err(TransportError::Malformed {
            target: redact(url),
            message: format!("asked for {len} bytes, got {}", body.len()),
        });
    }
    Ok(body)
}

impl Transport for HttpRangeTransport {
    fn describe(&self) -> String {
        format!("http-range:{}", self.target())
    }

    fn size(&self) -> TransportFuture<'_, u64> {
        Box::pin(self.cached_size())
    }

    fn allocated_extents(&self) -> TransportFuture<'_, Vec<Extent>> {
        // The /folder API has no allocation map: everything may hold data.
        Box::pin(async move {
            let size = self.cached_size().await?;
            Ok(if size == 0 { Vec::new() } else { vec![Extent::new(0, size)] })
        })
    }

    fn read_at(&self, offset: u64, len: usize) -> TransportFuture<'_, Bytes> {
        Box::pin(async move {
            if len == 0 {
                return Ok(Bytes::new());
            }
            let end = offset + len as u64 - 1;
            let resp = self
                .client
                .get(self.url.clone())
                .header(header::RANGE, format!("bytes={offset}-{end}"))
                .send()
                .await
                .map_err(|e| unreachable("GET", &self.url, e))?;
            if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                return Err(TransportError::Invalid {
                    target: self.target(),
                    message: format!("range {offset}+{len} is past the end of the file"),
                });
            }
            let resp = expect(resp, "GET", &self.url, &[StatusCode::PARTIAL_CONTENT]).await?;
            ranged_body(resp, &self.url, len).await
        })
    }

    fn write_at(&self, offset: u64, data: Bytes) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            let size = self.cached_size().await?;
            check_range(&self.target(), offset, data.len() as u64, size)?;
            let mut at = 0usize;
            while at < data.len() {
                let n = (data.len() - at).min(MAX_PUT as usize);
                self.put(offset + at as u64, data.slice(at..at + n), size).await?;
                at += n;
            }
            Ok(())
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            let size = self.cached_size().await?;
            check_range(&self.target(), offset, len, size)?;
            let zeros = Bytes::from(vec![0u8; len.min(MAX_PUT) as usize]);
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(MAX_PUT) as usize;
                self.put(at, zeros.slice(..n), size).await?;
                at += n as u64;
            }
            Ok(())
        })
    }

    fn flush(&self) -> TransportFuture<'_, ()> {
        // Each PUT is acknowledged only once the server has stored it.
        Box::pin(async { Ok(()) })
    }
}
