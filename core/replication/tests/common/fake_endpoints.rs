//! A minimal loopback server implementing just the wire semantics the HTTP-range and
//! page-blob transports use: ranged GET, PUT with Content-Range (vSphere `/folder`), and
//! Put Page update/clear, Get Page Ranges and ranged Get Blob (Azure). It enforces the
//! service's rules (512-byte alignment, at most 4 MiB per Put Page, SAS present) so a
//! transport that breaks them fails the test. The server stops when the guard drops.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};

#[derive(Default)]
pub struct Store {
    pub files: HashMap<String, Vec<u8>>,
    /// Allocated 512-byte pages per blob.
    pub pages: HashMap<String, BTreeSet<u64>>,
    /// Largest Put Page update body seen.
    pub largest_put_page: usize,
    /// Put Page requests seen (update, clear).
    pub put_pages: (u64, u64),
    /// The query of the last Get Page Ranges.
    pub last_pagelist_query: String,
}

pub type Shared = Arc<Mutex<Store>>;

pub struct Server {
    pub addr: SocketAddr,
    pub store: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start() -> Server {
        let store: Shared = Arc::default();
        let app = Router::new().fallback(handle).layer(axum::extract::DefaultBodyLimit::max(8 << 20)).with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, store, task }
    }

    pub fn put_file(&self, path: &str, data: Vec<u8>) {
        self.store.lock().unwrap().files.insert(path.to_string(), data);
    }

    pub fn create_blob(&self, name: &str, size: u64) {
        let mut s = self.store.lock().unwrap();
        s.files.insert(format!("/blob/{name}"), vec![0; size as usize]);
        s.pages.insert(format!("/blob/{name}"), BTreeSet::new());
    }

    pub fn file(&self, path: &str) -> Vec<u8> {
        self.store.lock().unwrap().files[path].clone()
    }
}

fn status(code: StatusCode, msg: &str) -> Response {
    (code, msg.to_string()).into_response()
}

/// Parses `bytes=a-b` (Range, x-ms-range) or `bytes a-b/total` (Content-Range).
fn parse_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim_start_matches("bytes").trim_start_matches(['=', ' ']);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(State(store): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("");
    let mut s = store.lock().unwrap();
    if path.starts_with("/blob/") {
        if !query.contains("sig=secret") {
            return status(StatusCode::FORBIDDEN, "AuthenticationFailed");
        }
        if header(&headers, "x-ms-version").is_none() {
            return status(StatusCode::BAD_REQUEST, "MissingRequiredHeader x-ms-version");
        }
    }
    // Files under /auth/ behave like vSphere's /folder behind a session: every request
    // must carry the session cookie and the authorization header.
    if path.starts_with("/auth/")
        && (header(&headers, "cookie") != Some("vmware_soap_session=s3cr3t") || header(&headers, "authorization") != Some("Bearer t0ken"))
    {
        return status(StatusCode::UNAUTHORIZED, "no session");
    }
    let Some(len) = s.files.get(&path).map(|f| f.len() as u64) else {
        return status(StatusCode::NOT_FOUND, "BlobNotFound");
    };
    match method {
        Method::HEAD => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert("content-length", len.into());
            if path.starts_with("/blob/") {
                r.headers_mut().insert("x-ms-blob-content-length", len.into());
            }
            r
        }
        Method::GET if query.contains("comp=pagelist") => {
            s.last_pagelist_query = query.to_string();
            let pages = &s.pages[&path];
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for p in pages {
                match ranges.last_mut() {
                    Some((_, end)) if *end + 1 == *p => *end = *p,
                    _ => ranges.push((*p, *p)),
                }
            }
            // Two ranges per answer, to exercise NextMarker paging.
            let skip: usize = query.split('&').find_map(|kv| kv.strip_prefix("marker=")).and_then(|m| m.parse().ok()).unwrap_or(0);
            let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><PageList>"#);
            for (a, b) in ranges.iter().skip(skip).take(2) {
                xml += &format!("<PageRange><Start>{}</Start><End>{}</End></PageRange>", a * 512, (b + 1) * 512 - 1);
            }
            if skip + 2 < ranges.len() {
                xml += &format!("<NextMarker>{}</NextMarker>", skip + 2);
            }
            xml += "</PageList>";
            (StatusCode::OK, xml).into_response()
        }
        Method::GET => {
            let range = header(&headers, "x-ms-range").or_else(|| header(&headers, "range")).and_then(parse_range);
            let Some((a, b)) = range else { return (StatusCode::OK, s.files[&path].clone()).into_response() };
            if b >= len || a > b {
                return status(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange");
            }
            (StatusCode::PARTIAL_CONTENT, s.files[&path][a as usize..=b as usize].to_vec()).into_response()
        }
        Method::PUT if path.starts_with("/blob/") => {
            if !query.contains("comp=page") {
                return status(StatusCode::BAD_REQUEST, "only Put Page is implemented");
            }
            let Some((a, b)) = header(&headers, "x-ms-range").and_then(parse_range) else {
                return status(StatusCode::BAD_REQUEST, "missing x-ms-range");
            };
            if a % 512 != 0 || (b + 1) % 512 != 0 || b >= len {
                return status(StatusCode::BAD_REQUEST, "InvalidPageRange");
            }
            match header(&headers, "x-ms-page-write") {
                Some("update") => {
                    if body.len() as u64 != b - a + 1 || body.len() > 4 << 20 {
                        return status(StatusCode::BAD_REQUEST, "InvalidHeaderValue: body length");
                    }
                    s.largest_put_page = s.largest_put_page.max(body.len());
                    s.put_pages.0 += 1;
                    s.files.get_mut(&path).unwrap()[a as usize..=b as usize].copy_from_slice(&body);
                    let set = s.pages.get_mut(&path).unwrap();
                    set.extend(a / 512..=b / 512);
                }
                Some("clear") => {
                    if !body.is_empty() {
                        return status(StatusCode::BAD_REQUEST, "clear with a body");
                    }
                    s.put_pages.1 += 1;
                    s.files.get_mut(&path).unwrap()[a as usize..=b as usize].fill(0);
                    let set = s.pages.get_mut(&path).unwrap();
                    for p in a / 512..=b / 512 {
                        set.remove(&p);
                    }
                }
                _ => return status(StatusCode::BAD_REQUEST, "bad x-ms-page-write"),
            }
            StatusCode::CREATED.into_response()
        }
        Method::PUT => {
            let Some((a, b)) = header(&headers, "content-range").and_then(parse_range) else {
                return status(StatusCode::BAD_REQUEST, "missing Content-Range");
            };
            if b >= len || body.len() as u64 != b - a + 1 {
                return status(StatusCode::BAD_REQUEST, "bad Content-Range");
            }
            s.files.get_mut(&path).unwrap()[a as usize..=b as usize].copy_from_slice(&body);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "method"),
    }
}
