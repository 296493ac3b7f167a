//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! Adapters run one call at a time, so blocking on the response keeps their code plain;
//! the host still runs every request asynchronously and enforces its sandbox grants.

use std::fmt;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

use crate::error;
use crate::types::AdapterError;

/// An HTTP request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self { method: method.to_string(), url: url.into(), headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        send(self)
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Retry-After` in milliseconds, when the server sent one in seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(|s| s * 1000)
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host's sandbox refused the destination (not declared or not granted).
    Denied(String),
    /// The connection could not be made or broke (refused, reset, DNS).
    Connect(String),
    /// A connect or read deadline passed.
    Timeout(String),
    /// The URL could not be parsed.
    InvalidUrl(String),
    /// Anything else the transport reported.
    Protocol(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "outbound request denied by the host sandbox: {m}"),
            HttpError::Connect(m) => write!(f, "connection failed: {m}"),
            HttpError::Timeout(m) => write!(f, "timed out: {m}"),
            HttpError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            HttpError::Protocol(m) => write!(f, "HTTP error: {m}"),
        }
    }
}

impl From<HttpError> for AdapterError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(_) => error::denied(e.to_string()),
            HttpError::InvalidUrl(_) => error::invalid(e.to_string()),
            HttpError::Connect(_) | HttpError::Timeout(_) | HttpError::Protocol(_) => error::unavailable(e.to_string(), None),
        }
    }
}

/// The parts of an absolute URL that `wasi:http` wants separately.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path_with_query: &'a str,
}

/// Splits `scheme://authority/path?query`.
pub fn split_url(url: &str) -> Result<UrlParts<'_>, HttpError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| HttpError::InvalidUrl(format!("`{url}` has no scheme")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::InvalidUrl(format!("`{url}` has no host")));
    }
    Ok(UrlParts { scheme, authority, path_with_query: if path.starts_with('?') { "/" } else { path } })
}

const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;
const TIMEOUT_NS: u64 = 60_000_000_000;

fn send(req: &Request) -> Result<Response, HttpError> {
    let url = split_url(&req.url)?;
    let fields = Fields::new();
    for (k, v) in &req.headers {
        fields.append(k, v.as_bytes()).map_err(|e| HttpError::Protocol(format!("header `{k}`: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let method = match req.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    let scheme = match url.scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    outgoing.set_method(&method).map_err(|_| HttpError::Protocol("bad method".into()))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|_| HttpError::InvalidUrl(req.url.clone()))?;
    outgoing.set_authority(Some(url.authority)).map_err(|_| HttpError::InvalidUrl(req.url.clone()))?;
    outgoing.set_path_with_query(Some(url.path_with_query)).map_err(|_| HttpError::InvalidUrl(req.url.clone()))?;
    let body = outgoing.body().map_err(|_| HttpError::Protocol("request body taken twice".into()))?;

    let options = RequestOptions::new();
    // Best effort: a host may not support every timeout.
    let _ = options.set_connect_timeout(Some(TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(TIMEOUT_NS));
    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(|e| map_error(&req.url, e))?;

    {
        let stream = body.write().map_err(|_| HttpError::Protocol("request body stream taken twice".into()))?;
        for chunk in req.body.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| stream_error(&req.url, e))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| map_error(&req.url, e))?;

    future.subscribe().block();
    let incoming = match future.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(e))) => return Err(map_error(&req.url, e)),
        Some(Err(())) => return Err(HttpError::Protocol("response taken twice".into())),
        None => return Err(HttpError::Protocol("response not ready after waiting".into())),
    };
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let in_body = incoming.consume().map_err(|_| HttpError::Protocol("response body taken twice".into()))?;
    let mut data = Vec::new();
    {
        let stream = in_body.stream().map_err(|_| HttpError::Protocol("response stream taken twice".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(&req.url, e)),
            }
        }
    }
    Ok(Response { status, headers, body: data })
}

fn stream_error(url: &str, e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Connect(format!("{url}: connection closed")),
        StreamError::LastOperationFailed(err) => {
            let detail = err.to_debug_string();
            match wasip2::http::types::http_error_code(&err) {
                Some(code) => map_error(url, code),
                None => HttpError::Connect(format!("{url}: {detail}")),
            }
        }
    }
}

fn map_error(url: &str, e: ErrorCode) -> HttpError {
    match e {
        ErrorCode::HttpRequestDenied => HttpError::Denied(format!("{url} is not an allowed destination for this adapter")),
        ErrorCode::DnsTimeout | ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout | ErrorCode::HttpResponseTimeout => {
            HttpError::Timeout(format!("{url}: {e:?}"))
        }
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound | ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpProhibited | ErrorCode::DestinationIpUnroutable | ErrorCode::ConnectionRefused | ErrorCode::ConnectionTerminated | ErrorCode::ConnectionLimitReached => {
            HttpError::Connect(format!("{url}: {e:?}"))
        }
        other => HttpError::Protocol(format!("{url}: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("https://vc.example:443/sdk?x=1").unwrap(),
            UrlParts { scheme: "https", authority: "vc.example:443", path_with_query: "/sdk?x=1" }
        );
        assert_eq!(split_url("http://h").unwrap().path_with_query, "/");
        assert!(matches!(split_url("nohost"), Err(HttpError::InvalidUrl(_))));
        assert!(matches!(split_url("http:///x"), Err(HttpError::InvalidUrl(_))));
    }
}
